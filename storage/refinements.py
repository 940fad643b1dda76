"""Refinements: per-item results of a stage that runs after the inversion, kept beside the codes. One kind today,
`refinements/pivotal`: each item's pivotal-tuning delta (`ganinv.inversion.pivotal`, docs/inversion.md), so that
its tuned generator G' can render the item again, bit for bit, and edit it.

    refinements/pivotal/zarr.json   attributes: created, ganinv_version, made_by, store_manifest_hash (results.py),
                                    pivotal = `pivotal.delta_attrs(G, config)`: format, dtype, values_per_item, the
                                    parts (layer, part, shape) of a row, rank, and the tuning config
    deltas            [item, delta_value] float16 (bfloat16: its uint16 bit patterns), NaN (0) until written;
                                    chunked like the items (`chunk_items` rows), Zstd level 1
    pivot_thumbnails  [item, y, x, rgb] uint8, only if the store keeps thumbnails: the untuned code's reconstruction

The coordinator creates the group (under the run lease) and grows it with the store (`resize`, after every append);
a worker writes the rows of its shard before it writes the shard (storage/shards.py writes `status` last), so an
item marked done has its delta. Rows of items not done are meaningless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from storage import arrays, results, shards
from storage._zarr import zarr
from storage.errors import NotInStoreError, StoreMismatchError
from storage.schema import canonical_json

if TYPE_CHECKING:
    from storage.latent_store import LatentStore

KIND, PIVOTAL = "refinements", "pivotal"
DELTAS, PIVOT_THUMBNAILS = "deltas", "pivot_thumbnails"
ATTRS = "pivotal"
_PREFIX = f"{KIND}/{PIVOTAL}"


def pivotal_attrs(store: LatentStore) -> dict[str, Any] | None:
    """The delta attributes (`pivotal.delta_attrs`) of the store's pivotal refinement, or None if it has none."""
    return (results.find(store, KIND, PIVOTAL) or {}).get(ATTRS)


def create_pivotal(store: LatentStore, attrs: Mapping[str, Any], *, made_by: Mapping[str, Any]) -> bool:
    """Creates `refinements/pivotal` for deltas described by `attrs` (coordinator, under the lease), or, when it
    exists with the same attributes, grows it to the store's items. Returns whether it was created now. A group of
    other deltas (another form or tuning config) is refused: the store's inversion record says how its codes and
    deltas were made, and they must not mix."""
    existing = pivotal_attrs(store)
    if existing is not None:
        if canonical_json(existing) != canonical_json(attrs):
            raise StoreMismatchError(f"store {store.url} holds pivotal deltas of another form or tuning config "
                                     f"({existing.get('config')}); write to a new store")
        resize(store)
        return False
    group = store.result_group(KIND, PIVOTAL, made_by=made_by)
    group.attrs.update({ATTRS: dict(attrs)})
    n, chunk, width = store.num_items, store.chunk_items, int(attrs["values_per_item"])
    dtype = np.dtype(attrs["numpy_dtype"])
    coords = {"coordinates": "image_id"}
    arrays.create_item_array(group, DELTAS, n=n, chunk_items=chunk, dtype=dtype,
                             fill_value=np.nan if dtype.kind == "f" else 0, inner=(width,),
                             dims=("item", "delta_value"), compressors=[zarr.codecs.ZstdCodec(level=1)],
                             attrs={"long_name": f"pivotal delta per item ({attrs['dtype']}, see the group's "
                                                 "'pivotal' attribute)", **coords})
    t = store.layout.thumbnail_size
    if t is not None:
        arrays.create_item_array(group, PIVOT_THUMBNAILS, n=n, chunk_items=chunk, dtype="uint8", fill_value=0,
                                 inner=(t, t, 3), dims=("item", "y", "x", "rgb"),
                                 attrs={"long_name": "the pivot's reconstruction, before tuning", **coords})
    store.consolidate()
    return True


def _names(store: LatentStore) -> list[str]:
    names = [DELTAS] + [PIVOT_THUMBNAILS] * (store.layout.thumbnail_size is not None)
    return [f"{_PREFIX}/{name}" for name in names]


def resize(store: LatentStore) -> None:
    """Every array of the refinement to the store's item count (coordinator, after an append)."""
    grow(store, _names(store))


def grow(store: LatentStore, paths: list[str]) -> None:
    """The item arrays at `paths` (of a result group) to the store's item count; metadata is consolidated only when
    one grew (a nightly re-plan with nothing new writes none). Coordinator only."""
    changed = False
    for path in paths:
        array = store.array(path)
        if array.shape[0] != store.num_items:
            array.resize((store.num_items,) + array.shape[1:])
            changed = True
    if changed:
        store.consolidate()


def write_rows(store: LatentStore, indices: np.ndarray, deltas: np.ndarray,
               pivot_thumbnails: np.ndarray | None) -> None:
    """Writes the deltas (`[n, values_per_item]`, `pivotal.pack`'s rows) and pivot thumbnails of the items `indices`
    (ascending, one shard's): worker side, before the shard's own write, which marks them done."""
    if len(indices) == 0:
        return
    rows = shards.region(np.asarray(indices, np.int64))
    attrs = pivotal_attrs(store)
    if attrs is None:
        raise NotInStoreError(f"{store.url} has no pivotal refinement group: the coordinator creates it first")
    shards.write_region(store, f"{_PREFIX}/{DELTAS}", rows, np.asarray(deltas, np.dtype(attrs["numpy_dtype"])))
    if store.layout.thumbnail_size is not None and pivot_thumbnails is not None:
        shards.write_region(store, f"{_PREFIX}/{PIVOT_THUMBNAILS}", rows, np.asarray(pivot_thumbnails, np.uint8))


def read_deltas(store: LatentStore, rows: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """(values `[len(rows), values_per_item]` as stored, the delta attributes) of the items `rows` (any order):
    `pivotal.unpack(*read_deltas(store, rows))` rebuilds their deltas bit for bit."""
    attrs = pivotal_attrs(store)
    if attrs is None:
        raise NotInStoreError(f"{store.url} holds no pivotal deltas (invert with --refine pivotal)")
    return np.asarray(store._read(f"{_PREFIX}/{DELTAS}", rows)), attrs


def read_pivot_thumbnails(store: LatentStore, rows: np.ndarray | None = None) -> np.ndarray:
    """uint8 `[len(rows), t, t, 3]`: the pivots' reconstructions before tuning."""
    return np.asarray(store._read(f"{_PREFIX}/{PIVOT_THUMBNAILS}", rows), np.uint8)
