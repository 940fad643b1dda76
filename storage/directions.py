"""Edit directions in the latent store: one group `directions/<name>` per `ganinv.directions.Direction`.

Layout (inside the store, next to `ws`)::

    directions/<name>/zarr.json   attributes: created, ganinv_version, store_manifest_hash, store_num_items
                                  (from LatentStore.result_group), made_by (how: flow, method, space, source,
                                  generator identity, data used, options) and direction = Direction.attrs()
                                  (name, method, space, shape, layers, scale, provenance incl. metrics)
    directions/<name>/vector      float32 [channel] (space w), [z_channel] (z) or [layer, channel] (w+); unit norm

`<name>` is the Direction's name, e.g. `interfacegan-smiling`, `interfacegan-eyeglasses|blond_hair`, `sefa-0`
(any name without '/'). `read_direction` rebuilds the exact `Direction` (vector, layers, scale, provenance).
Writing is a coordinator operation (it changes metadata): call it from the flow process, not from workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ganinv.directions.direction import Direction
from storage import arrays
from storage.errors import NotInStoreError, StoreMismatchError
from storage.latent_store import LatentStore

KIND = "directions"
DIMENSIONS = {"z": ("z_channel",), "w": ("channel",), "w+": ("layer", "channel")}


class DirectionNotFoundError(NotInStoreError):
    """No `directions/<name>` group in the store."""


class DirectionMismatchError(StoreMismatchError):
    """A direction whose space or shape does not fit the store's codes."""


def write_direction(store: LatentStore, direction: Direction, *, made_by: Mapping[str, Any],
                    overwrite: bool = False) -> None:
    """Writes `direction` to `directions/<direction.name>`. `made_by` says how it was made (flow, method, space,
    source, generator identity, data used); `overwrite=False` refuses an existing name (zarr ContainsGroupError)."""
    _check_fits_store(store, direction)
    group = store.result_group(KIND, direction.name, made_by=made_by, overwrite=overwrite)
    group.attrs.update({"direction": direction.attrs()})
    array = group.create_array("vector", shape=direction.vector.shape, dtype="float32",
                               compressors=arrays.with_checksum(),
                               dimension_names=DIMENSIONS[direction.space],
                               attributes={"long_name": f"unit {direction.space} edit direction"})
    array[...] = direction.vector


def write_directions(store: LatentStore, directions: Sequence[Direction], *, made_by: Mapping[str, Any],
                     overwrite: bool = False) -> list[str]:
    """`write_direction` for each, then one `consolidate()`; returns the names written."""
    for direction in directions:
        write_direction(store, direction, made_by=made_by, overwrite=overwrite)
    store.consolidate()
    return [d.name for d in directions]


def list_directions(store: LatentStore) -> dict[str, dict[str, Any]]:
    """Name -> the group's attributes (`direction`, `made_by`, `created`, ...), sorted by name."""
    groups = store.result_groups(KIND)
    return {name: groups[name] for name in sorted(groups) if "direction" in groups[name]}


def read_direction(store: LatentStore, name: str, *, known: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> Direction:
    """The `Direction` stored as `directions/<name>`. `known`: `list_directions(store)` when the caller has it."""
    known = list_directions(store) if known is None else known
    if name not in known:
        raise DirectionNotFoundError(f"no direction {name!r} in {store.url}; it has {sorted(known) or 'none'} "
                                     "(write some with `ganinv fit-boundaries` or `ganinv discover-directions`)")
    attrs = known[name]["direction"]
    vector = np.asarray(store.array(f"{KIND}/{name}/vector")[...], dtype=np.float32)
    return Direction(name=attrs["name"], method=attrs["method"], space=attrs["space"], vector=vector,
                     layers=None if attrs["layers"] is None else tuple(attrs["layers"]), scale=attrs["scale"],
                     provenance=attrs["provenance"])


def read_directions(store: LatentStore, names: Sequence[str] | None = None) -> list[Direction]:
    """The named directions (default: all), in the order asked."""
    known = list_directions(store)  # one read of the group attributes for all names
    return [read_direction(store, name, known=known) for name in (known if names is None else names)]


def labelled_codes(store: LatentStore, attributes: Sequence[str] | None = None, *, space: str = "w"
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The corpus as InterFaceGAN data: (rows [N] of the done items with at least one of the labels, codes, labels).

    attributes: label names (default: every label in the store). codes: see `done_codes`. labels: `{name: float64
    [N]}`, NaN where an item lacks the label.
    """
    names = list(store.layout.labels if attributes is None else attributes)
    missing = [a for a in names if a not in store.layout.labels]
    if missing or not names:
        raise NotInStoreError(f"labels {missing or names} are not in {store.url}; it has "
                              f"{list(store.layout.labels) or 'none'}")
    labels = store.labels(names)
    labelled = np.any([np.isfinite(v) for v in labels.values()], axis=0)
    parts = [(rows, codes) for rows, codes in done_codes(store, space=space, where=labelled)]
    rows = np.concatenate([r for r, _ in parts]) if parts else np.zeros(0, np.int64)
    codes = np.concatenate([c for _, c in parts]) if parts else np.zeros((0, store.layout.w_dim), np.float32)
    return rows, codes, {a: v[rows] for a, v in labels.items()}


def done_codes(store: LatentStore, *, space: str = "w", where: np.ndarray | None = None
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields `(rows, codes)` shard by shard for the done items (and `where[row]`, if given), never the whole corpus.

    space: `w` gives codes `[n, w_dim]`, the mean of each item's ws rows (the item's w when it was inverted in W,
    where all rows are equal); `w+` gives `[n, num_ws, w_dim]`.
    """
    if space not in ("w", "w+"):
        raise DirectionMismatchError(f"space must be 'w' or 'w+' for codes from the store (it keeps no z), got "
                                     f"{space!r}")
    keep = store.done()
    if where is not None:
        keep &= where
    for shard in store.shards():
        local = np.flatnonzero(keep[shard.start:shard.stop])
        if len(local):
            ws = store.ws(slice(shard.start, shard.stop))[local]
            yield shard.start + local, (ws.mean(axis=1) if space == "w" else ws)


def _check_fits_store(store: LatentStore, direction: Direction) -> None:
    layout = store.layout
    want = {"w": (layout.w_dim,), "w+": (layout.num_ws, layout.w_dim), "z": (layout.z_dim,)}[direction.space]
    if direction.space == "z" and layout.z_dim is None:
        return  # a Z direction of the generator; the store keeps no z to check it against
    if direction.vector.shape != want:
        raise DirectionMismatchError(f"direction {direction.name!r} has shape {list(direction.vector.shape)}, but "
                                     f"{store.url} holds {direction.space} codes of shape {list(want)}: it belongs to "
                                     "another generator")
