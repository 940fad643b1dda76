"""Batch edits in the latent store: `edits/<run>` holds the edited codes of chosen items along chosen directions.

Layout (every array has `dimension_names`; `EditRun.to_xarray()` gives `ws` indexed by image_id, direction name and
strength; `xarray.open_zarr(url, group="edits/<run>")` the raw arrays)::

    edits/<run>/zarr.json  attributes: created, ganinv_version, store_manifest_hash (LatentStore.result_group),
                           made_by = {flow, items: {query | ids, num_items}, directions: {name: Direction.attrs()},
                           strengths, layers, generator identity, grids (where the PNG grids are), ...},
                           spec_sha256 (what identifies the run's content: items, deltas, strengths), batch_size
    item_index  [edit_item] int64                    the row of each edited item in the store
    image_id    [edit_item, image_id_utf8] uint8     its image id (fixed-width UTF-8, storage/text.py)
    direction   [direction, direction_utf8] uint8    direction names
    strength    [strength] float32                   edit strengths (index coordinate)
    delta       [direction, layer, channel] float32  the change of ws per unit strength, exactly what
                                                     `ganinv.edit.apply` adds: vector * scale on the direction's
                                                     layers (or the run's `layers`)
    ws          [edit_item, direction, strength, layer, channel] float32
                                                     store ws[item_index] + strength * delta; NaN until written
    status      [edit_item] uint8                    0 pending / 1 done; written after ws

The run has its own item axis, `edit_item` (runs made before schema v2 used the store's `item`, which
`xarray.open_datatree` refuses: `ganinv store-migrate` renames it). Every array is checksummed.

Chunks run along the item axis, `batch_size` items each: one batch is one render task and owns its chunk (disjoint,
chunk-aligned writes from many workers, docs/store.md). A task writes `ws` first and `status` last, so done
items always have their codes; rerunning a batch writes the same bytes (deterministic), and `pending_batches()` makes
a rerun of the flow resume. Creating the group is a coordinator operation (`EditRun.create`, in the flow process).

PNG grids live outside the store, beside it: `grids_url(store_url, run)` = `<store url>.edits/<run>/`
(e.g. `/data/corpus.zarr` -> `/data/corpus.zarr.edits/<run>/`), written with fsspec, so S3 stores get S3 grids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ganinv import edit
from ganinv.directions.direction import Direction
from ganinv.errors import UserError
from storage import arrays, results, text
from storage.errors import NotInStoreError
from storage.latent_store import LatentStore
from storage.schema import STATUS_NAMES

KIND = "edits"
PENDING, DONE = 0, 1
# A run's own item axis: a run holds some of the store's items, so sharing the store's `item` dimension would make
# `xarray.open_datatree` refuse the group as "not aligned with its parents". Runs made before v2 used `item`.
ITEM_DIM = "edit_item"
DIRECTION_NAME_WIDTH = 256


class EditRunExistsError(UserError, FileExistsError):
    """An edit run of that name exists with other content (items, directions or strengths)."""


class EditRequestError(UserError, ValueError):
    """The items, directions or strengths asked for cannot be edited (no done item matches, a query pandas cannot
    read, a Z direction, ...); the message says which."""


def grids_url(store_url: str, run: str) -> str:
    """Where a run's PNG grids go: `<store url>.edits/<run>` (a folder beside the store)."""
    return f"{str(store_url).rstrip('/')}.edits/{run}"


def select_items(store: LatentStore, items: str | Sequence[str] | None = None, *,
                 limit: int | None = None) -> np.ndarray:
    """Store rows of the items to edit, ascending, done items only.

    items: None (every done item), a list of image ids (each must be done), or a label query on the store's
           `labels/` as pandas `DataFrame.query` reads it, e.g. `'smiling == 0 and eyeglasses == 1'`
           (items whose label is missing never match). `limit`: keep the first that many.
    """
    n = store.num_items
    done = store.done()
    if items is None:
        rows = np.flatnonzero(done)
    elif isinstance(items, str):
        rows = _query_rows(store, items, done)
    else:
        rows = _id_rows(store, list(items), done)
    if limit is not None:
        rows = rows[:limit]
    if len(rows) == 0:
        raise EditRequestError(f"no items to edit in {store.url}: the selection {items!r} matches no done item "
                                 f"({int(done.sum())} of {n} items are done)")
    return rows


def _query_rows(store: LatentStore, query: str, done: np.ndarray) -> np.ndarray:
    import pandas as pd

    frame = pd.DataFrame(store.labels(), index=np.arange(store.num_items))
    try:
        matched = frame.query(query, engine="python").index.to_numpy()
    except Exception as err:  # pandas raises UndefinedVariableError, SyntaxError, TypeError, ...
        raise EditRequestError(f"label query {query!r} failed ({type(err).__name__}: {err}); the store's labels "
                                 f"are {list(store.layout.labels) or 'none'}, e.g. 'smiling == 0 and eyeglasses == 1'"
                                 ) from err
    return np.sort(matched[done[matched]]).astype(np.int64)


def _id_rows(store: LatentStore, ids: list[str], done: np.ndarray) -> np.ndarray:
    where = {str(image_id): i for i, image_id in enumerate(store.image_ids())}
    unknown = [i for i in ids if i not in where]
    if unknown:
        raise NotInStoreError(f"image ids {unknown[:5]} are not in {store.url}")
    not_done = [i for i in ids if not done[where[i]]]
    if not_done:
        raise EditRequestError(f"items {not_done[:5]} are not inverted yet (status pending or failed): edit done "
                                 "items only")
    return np.array(sorted({where[i] for i in ids}), dtype=np.int64)


def unit_deltas(directions: Sequence[Direction], num_ws: int, w_dim: int, layers: edit.LayerSpec = None,
                resolutions: Sequence[int] | None = None) -> np.ndarray:
    """`[D, num_ws, w_dim]`: what `ganinv.edit.apply` adds to one code per unit strength, per direction.
    `resolutions`: the generator's `ws_resolutions`, for named layer ranges (StyleGAN3's differ from StyleGAN2's)."""
    bad = [d.name for d in directions if d.space == "z"]
    if bad:
        raise EditRequestError(f"directions {bad} live in Z; edits move ws: use W or W+ directions")
    zeros = np.zeros((1, num_ws, w_dim), np.float32)
    return np.stack([edit.apply(zeros, d, 1.0, layers=layers, resolutions=resolutions)[0]
                     for d in directions]).astype(np.float32)


def apply_deltas(ws: np.ndarray, deltas: np.ndarray, strengths: np.ndarray) -> np.ndarray:
    """`ws [N, num_ws, w_dim]`, `deltas [D, num_ws, w_dim]`, `strengths [S]` -> `[N, D, S, num_ws, w_dim]`:
    `ganinv.edit.apply` of each direction's delta."""
    assert ws.ndim == 3 and deltas.ndim == 3 and ws.shape[1:] == deltas.shape[1:], (ws.shape, deltas.shape)
    ws, strengths = np.asarray(ws, np.float32), np.asarray(strengths, np.float32)
    return np.stack([edit.apply(ws, np.asarray(delta, np.float32), strengths) for delta in deltas], axis=1)


class EditRun:
    """The `edits/<run>` group of a store. Build with `EditRun.create` (flow process) or `EditRun.open` (workers)."""

    def __init__(self, store: LatentStore, name: str) -> None:
        try:
            attrs = store.result_attrs(KIND, name)  # workers open a run per batch: no listing of every run
        except KeyError:
            raise NotInStoreError(f"no edit run {name!r} in {store.url}; it has "
                                  f"{sorted(store.result_groups(KIND)) or 'none'}") from None
        self.store, self.name, self.attrs = store, name, attrs
        self.prefix = f"{KIND}/{name}"

    @classmethod
    def open(cls, store: LatentStore, name: str) -> EditRun:
        return cls(store, name)

    @classmethod
    def create(cls, store: LatentStore, name: str, *, item_indices: np.ndarray, directions: Sequence[Direction],
               strengths: Sequence[float], made_by: Mapping[str, Any], layers: edit.LayerSpec = None,
               batch_size: int = 64, overwrite: bool = False, resolutions: Sequence[int] | None = None) -> EditRun:
        """Creates the run's group and arrays (ws all NaN, status pending). If a run of that name exists with the
        same items, deltas and strengths it is returned as is (the flow resumes its pending batches); with other
        content it is replaced if `overwrite`, else EditRunExistsError. `resolutions`: see `unit_deltas`."""
        layout = store.layout
        rows = np.asarray(item_indices, np.int64)
        deltas = unit_deltas(directions, layout.num_ws, layout.w_dim, layers, resolutions)
        s = np.asarray(strengths, np.float32)
        _check_run_args(rows, s, directions, batch_size, store.num_items)
        spec = _spec_sha256(rows, [d.name for d in directions], deltas, s)
        existing = results.find(store, KIND, name)
        if existing is not None and not overwrite:
            if existing.get("spec_sha256") == spec:
                return cls(store, name)
            raise EditRunExistsError(f"edit run {name!r} in {store.url} holds other items, directions or strengths; "
                                     "pick another run name or pass overwrite=True (--overwrite) to replace it")
        group = store.result_group(KIND, name, made_by=made_by, overwrite=overwrite or existing is not None)
        group.attrs.update({"spec_sha256": spec, "batch_size": int(batch_size)})
        _create_run_arrays(group, store, rows, directions, deltas, s, batch_size)
        store.consolidate()
        return cls(store, name)

    # ------------------------------------------------------------------ description
    def array(self, name: str):
        return self.store.array(f"{self.prefix}/{name}")

    @property
    def item_indices(self) -> np.ndarray:
        return np.asarray(self.array("item_index")[...], np.int64)

    @property
    def image_ids(self) -> list[str]:
        return list(text.decode(self.array("image_id")[...]))

    @property
    def direction_names(self) -> list[str]:
        return list(text.decode(self.array("direction")[...]))

    @property
    def strengths(self) -> np.ndarray:
        return np.asarray(self.array("strength")[...], np.float32)

    @property
    def batch_size(self) -> int:
        return int(self.attrs["batch_size"])

    def __len__(self) -> int:
        return int(self.array("item_index").shape[0])

    def batches(self) -> list[tuple[int, int]]:
        """Item ranges [start, stop) along the run's item axis, one per chunk = one render task."""
        b, n = self.batch_size, len(self)
        return [(start, min(n, start + b)) for start in range(0, n, b)]

    def pending_batches(self) -> list[tuple[int, int]]:
        status = np.asarray(self.array("status")[...])
        return [(a, b) for a, b in self.batches() if (status[a:b] != DONE).any()]

    def set_attrs(self, **values: Any) -> None:
        """Adds attributes to the run's group (coordinator only, e.g. `evaluation` rows after rendering)."""
        self.attrs = self.store.update_result_attrs(KIND, self.name, **values)

    # ------------------------------------------------------------------ worker side
    def edit(self, start: int, stop: int) -> np.ndarray:
        """`[stop - start, D, S, num_ws, w_dim]` edited codes of the run's items [start, stop) from the store's ws."""
        rows = self.item_indices[start:stop]
        return apply_deltas(self.store.ws(rows), np.asarray(self.array("delta")[...]), self.strengths)

    def write(self, start: int, stop: int, ws: np.ndarray) -> None:
        """Writes the batch's edited codes, then marks it done. [start, stop) must be one of `batches()`."""
        if (start, stop) not in self.batches():
            raise ValueError(f"[{start}, {stop}) is not a batch of edit run {self.name!r}: take it from batches()")
        self.array("ws")[start:stop] = np.asarray(ws, np.float32)
        self.array("status")[start:stop] = np.full(stop - start, DONE, np.uint8)  # last: it vouches for ws

    # ------------------------------------------------------------------ reading
    def to_xarray(self) -> "xarray.Dataset":  # noqa: F821
        """`ws`, `delta`, `status`, `item_index` along the run's item axis (`edit_item`; `item` in runs made before
        schema v2), with coordinates image_id (indexed), direction (indexed) and strength."""
        ds = self.store.open_xarray_group(self.prefix).drop_vars(["image_id", "direction"])
        item_dim = ds["item_index"].dims[0]
        return ds.assign_coords(image_id=(item_dim, np.asarray(self.image_ids, dtype=object)),
                                direction=("direction", np.asarray(self.direction_names, dtype=object))
                                ).set_xindex("image_id")


def _check_run_args(rows: np.ndarray, strengths: np.ndarray, directions: Sequence[Direction], batch_size: int,
                    num_items: int) -> None:
    if rows.ndim != 1 or len(rows) == 0 or rows.min() < 0 or rows.max() >= num_items:
        raise EditRequestError(f"item_indices must be a non-empty list of store rows in [0, {num_items})")
    if strengths.ndim != 1 or len(strengths) == 0 or not np.all(np.isfinite(strengths)):
        raise EditRequestError(f"strengths must be a non-empty list of finite numbers, got {strengths.tolist()}")
    names = [d.name for d in directions]
    if not names or len(set(names)) != len(names):
        raise EditRequestError(f"directions must be a non-empty list of distinct directions, got {names}")
    if batch_size < 1:
        raise EditRequestError(f"batch_size must be >= 1, got {batch_size}")


def _spec_sha256(rows: np.ndarray, names: list[str], deltas: np.ndarray, strengths: np.ndarray) -> str:
    digest = hashlib.sha256(b"ganinv.edit-run.v1\0")
    for part in (rows.astype("<i8").tobytes(), "\0".join(names).encode(), deltas.astype("<f4").tobytes(),
                 strengths.astype("<f4").tobytes()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _create_run_arrays(group, store: LatentStore, rows: np.ndarray, directions: Sequence[Direction],
                       deltas: np.ndarray, strengths: np.ndarray, batch_size: int) -> None:
    n, d, s = len(rows), len(directions), len(strengths)
    num_ws, w_dim = store.layout.num_ws, store.layout.w_dim
    chunk = min(batch_size, n)
    small = {
        "item_index": (rows, (ITEM_DIM,), {"long_name": "row of the item in the store"}),
        "strength": (strengths, ("strength",), {"long_name": "edit strength (units of the direction's scale)"}),
        "delta": (deltas, ("direction", "layer", "channel"), {"long_name": "change of ws per unit strength"}),
    }
    for name, (value, dims, attrs) in small.items():
        array = group.create_array(name, shape=value.shape, dtype=value.dtype, dimension_names=dims,
                                   compressors=arrays.with_checksum(), attributes=attrs)
        array[...] = value
    for name, values, dim, width, long_name in (
            ("image_id", store.image_ids(rows), ITEM_DIM, arrays.TEXT_WIDTHS[arrays.IMAGE_ID], "image id"),
            ("direction", [x.name for x in directions], "direction", DIRECTION_NAME_WIDTH,
             "edit direction (directions/<name>)")):
        array = arrays.create_text_array(group, name, n=len(values), chunk_items=max(1, len(values)), dim=dim,
                                         width=width, attrs={"long_name": long_name})
        array[...] = arrays.text_column(array, name, values)
    group.create_array("ws", shape=(n, d, s, num_ws, w_dim), chunks=(chunk, d, s, num_ws, w_dim), dtype="float32",
                       fill_value=np.nan, dimension_names=(ITEM_DIM, "direction", "strength", "layer", "channel"),
                       compressors=arrays.with_checksum(), attributes={"long_name": "edited W+ codes"})
    group.create_array("status", shape=(n,), chunks=(chunk,), dtype="uint8", fill_value=PENDING,
                       dimension_names=(ITEM_DIM,), compressors=arrays.with_checksum(),
                       attributes={"long_name": "edit status", "flag_values": [PENDING, DONE],
                                   "flag_meanings": f"{STATUS_NAMES[0]} {STATUS_NAMES[1]}"})
