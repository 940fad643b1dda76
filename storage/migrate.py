"""`migrate(src, dst)`: a copy of a store in the current layout (schema v2: every chunk checksummed, text as
fixed-width UTF-8, edit runs on their own item axis), item for item, leaving the source untouched.

The copy is made under the leases of both locations (no run writes either meanwhile), shard by shard, and its
root is written last with the item count (the commit point, as for an append): an interrupted copy is a folder
without a valid root, which is never adopted; delete it and migrate again. The lease records are not copied;
the history gains an entry naming the source. Swap the folders afterwards (docs/store.md, "Schema versions").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np

from ganinv import __version__ as ganinv_version
from storage import arrays, creation, growth, scan_cache, text
from storage._zarr import zarr
from storage.lease import LeaseFiles, acquire
from storage.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from storage.latent_store import LatentStore

EDIT_ITEM_DIM = "edit_item"  # storage/edits.py: ITEM_DIM (not imported: edits imports the store)
NAME_WIDTH = 256


def migrate(store_class: type[LatentStore], src_url: str, dst_url: str, *,
            storage_options: Mapping[str, Any] | None = None) -> LatentStore:
    """Copies the store at `src_url` into a new store at `dst_url` (which must not hold anything) in the current
    layout; returns the copy opened 'r+'. Both locations take `storage_options`."""
    options = dict(storage_options or {})
    src = store_class(src_url, mode="r", storage_options=options)
    fs, root = fsspec.core.url_to_fs(dst_url, **options)
    creation.check_vacant(fs, root, dst_url, exists=f"{dst_url} already holds a store: migrate into a new location")
    run_id = f"migrate-{growth.now_iso()}"
    src_lease = acquire(src._lease_files, run_id, ttl_s=creation.CREATION_LEASE_TTL_S)
    dst_lease = acquire(LeaseFiles(fs, root, store_name=dst_url), run_id, ttl_s=creation.CREATION_LEASE_TTL_S)
    try:
        return _copy(store_class, src, dst_url, options, run_id)
    finally:
        dst_lease.release()
        src_lease.release()


def _copy(store_class: type[LatentStore], src: LatentStore, dst_url: str, options: dict, run_id: str
          ) -> LatentStore:
    entry = {"at": growth.now_iso(), "migrated_from": src.url, "from_schema_version": src.attributes.schema_version,
             "ganinv_version": ganinv_version}
    attrs = dataclasses.replace(src.attributes, schema_version=SCHEMA_VERSION, dataset=dataclasses.replace(
        src.attributes.dataset, num_items=0))
    zstore = store_class.zarr_store(dst_url, read_only=False, storage_options=options)
    group = zarr.create_group(zstore, attributes=attrs.to_json(), zarr_format=3)
    arrays.create_arrays(group, attrs, compressor=attrs.chunking.ws_compressor, n=src.num_items)
    dst = store_class(dst_url, mode="r+", run_id=run_id, storage_options=options)
    for shard in src.shards():
        rows = slice(shard.start, shard.stop)
        for name in arrays.item_array_names(src.layout):
            value = src.array(name)[rows]
            if name in arrays.TEXT_ARRAYS:
                value = arrays.text_column(dst.array(name), name, text.decode(value), truncate=name == arrays.ERROR)
            dst.array(name)[rows] = value
    for kind in arrays.RESULT_KINDS:
        _copy_results(src, dst, kind)
    entries, _ = scan_cache.read_scan_cache(src._zstore)
    if entries:
        scan_cache.write_scan_cache(dst.group, entries)
    dataset = dataclasses.replace(src.attributes.dataset, history=src.attributes.dataset.history + (entry,))
    dst.attributes = dataclasses.replace(attrs, dataset=dataset)
    dst.group.attrs.put(dst.attributes.to_json())  # the commit point: the item count, last
    growth.write_root_copy(dst)
    dst.consolidate()
    dst.run_id = None
    return dst


def _copy_results(src: LatentStore, dst: LatentStore, kind: str) -> None:
    try:
        children = dict(src.group[kind].groups())
    except KeyError:
        return
    parent = dst.group.require_group(kind)
    for name, child in children.items():
        target = parent.create_group(name, attributes=dict(child.attrs))
        for array_name, array in child.arrays():
            _copy_array(array, target, array_name, edit_run=kind == "edits")


def _copy_array(array: zarr.Array, target: zarr.Group, name: str, *, edit_run: bool) -> None:
    """One array of a result group, checksummed; text as fixed-width UTF-8; an edit run's `item` as `edit_item`."""
    value = array[...]
    dims = tuple(array.metadata.dimension_names or ())
    if edit_run:
        dims = tuple(EDIT_ITEM_DIM if d == arrays.ITEM_DIM else d for d in dims)
    attrs = {k: v for k, v in array.attrs.items() if k != "coordinates"}
    if array.dtype.kind in "OUT" or str(array.dtype).startswith("StringDType"):
        strings = text.decode(value)
        width = arrays.TEXT_WIDTHS[arrays.IMAGE_ID] if name == arrays.IMAGE_ID else NAME_WIDTH
        new = arrays.create_text_array(target, name, n=len(strings), chunk_items=max(1, len(strings)), dim=dims[0],
                                       width=width, attrs=attrs)
        new[...] = text.encode(list(strings), width, what=name)
        return
    new = target.create_array(name, shape=array.shape, chunks=array.chunks, dtype=array.dtype,
                              fill_value=array.fill_value, dimension_names=dims or None, attributes=attrs,
                              compressors=arrays.with_checksum())
    new[...] = np.asarray(value)
