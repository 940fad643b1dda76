"""Growth: `append` adds a manifest's new items (pending) to every item array, and commits by writing the root's
item count last (docs/store.md, "Growth"). Coordinator only, under the run lease. The one place item arrays are
resized, and never shorter than an item `status` has finished."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import TYPE_CHECKING

import numpy as np

from ganinv import __version__ as ganinv_version
from storage import arrays, text
from storage.errors import StoreDamagedError
from storage.schema import DatasetInfo, Layout, Manifest, Status, StoreAttributes

if TYPE_CHECKING:
    from storage.latent_store import LatentStore


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def append(store: LatentStore, manifest: Manifest) -> int:
    """Adds the manifest's items whose source_sha256 is new to the store (pending); returns how many.

    Items whose content is already stored (or repeated earlier in the manifest) are skipped. A new file whose image_id
    is already used by other content is refused (ValueError): the store identifies items by content, so a changed
    file needs a new image_id. New label names get new label arrays (NaN for older items). A non-empty manifest root
    replaces dataset.root, so a moved dataset is followed.
    """
    n_old = store.num_items
    if n_old == 0:  # finishes off an interrupted creation: the arrays it did not make yet
        arrays.create_arrays(store.group, store.attributes, compressor=store.attributes.chunking.ws_compressor,
                             only_missing=True)
    resize_items(store, n_old)  # finishes off an interrupted append
    new = new_items(store, manifest)
    n = n_old + len(new)
    layout = _grow(store, n_old, n, new)
    commit(store, manifest, layout=layout, n=n, added=len(new))
    return len(new)


def new_items(store: LatentStore, manifest: Manifest) -> Manifest:
    n = store.num_items
    seen = set(text.decode(store.array(arrays.SOURCE_SHA256)[:n])) if n else set()
    used_ids = set(text.decode(store.array(arrays.IMAGE_ID)[:n])) if n else set()
    keep, clashes = [], []
    for i, item in enumerate(manifest.items):
        if item.source_sha256 in seen:
            continue
        if item.image_id in used_ids:
            clashes.append(item.image_id)
        seen.add(item.source_sha256)
        keep.append(i)
    if clashes:
        raise ValueError(f"{len(clashes)} new files reuse image_ids already in {store.url} with other content "
                         f"(e.g. {clashes[:3]}): an edited image needs a new image_id, or a new store")
    return manifest.subset(keep)


def resize_items(store: LatentStore, n: int) -> None:
    """Every item array to n rows. Refuses (StoreDamagedError) to cut `status` short of an item it has finished:
    then the count n, from the root, is what is wrong."""
    status = store.array(arrays.STATUS)
    if status.shape[0] > n:
        finished = int((np.asarray(status[n:]) != Status.PENDING).sum())
        if finished:
            raise StoreDamagedError(
                f"store {store.url}: its root attributes say {n} items, but `status` holds {finished} finished "
                f"items past item {n}: the root metadata is stale, and nothing was cut. Rebuild it from the "
                f"store's own copy: `ganinv store-rebuild-root {store.url}`, or move the folder aside.")
    for name in arrays.item_array_names(store.layout):
        array = store.array(name)
        if array.shape[0] != n:
            array.resize((n,) + array.shape[1:])


def _grow(store: LatentStore, n_old: int, n: int, new: Manifest) -> Layout:
    labels = tuple(sorted(set(store.layout.labels) | set(new.label_names)))
    layout = dataclasses.replace(store.layout, labels=labels)
    for name in set(labels) - set(store.layout.labels):
        arrays.create_label_array(store.group, name, n=n_old, chunk_items=store.chunk_items)
    store.attributes = dataclasses.replace(store.attributes, layout=layout)
    if n == n_old:
        return layout
    rows = slice(n_old, n)
    boundary = slice(n_old, min(n, -(-n_old // store.chunk_items) * store.chunk_items))
    columns = {arrays.IMAGE_ID: [it.image_id for it in new.items], arrays.PATH: [it.path for it in new.items],
               arrays.SOURCE_SHA256: [it.source_sha256 for it in new.items],
               **{arrays.label(a): new.label_column(a) for a in labels}}
    resize_items(store, n)
    for name in arrays.item_array_names(layout):
        array = store.array(name)
        if name in arrays.TEXT_ARRAYS and name in columns:
            array[rows] = arrays.text_column(array, name, columns[name])
        elif name in columns:
            array[rows] = np.asarray(columns[name], dtype=array.dtype)
        elif boundary.stop > boundary.start:  # the partly filled last chunk may hold leftovers of a crashed append
            array[boundary] = np.full((boundary.stop - boundary.start,) + array.shape[1:], array.fill_value,
                                      dtype=array.dtype)
    return layout


def commit(store: LatentStore, manifest: Manifest, *, layout: Layout, n: int, added: int) -> None:
    """Writes the root attributes with the new item count (the commit point of create and append), then the copy
    the root can be rebuilt from."""
    entry = {"at": now_iso(), "manifest_hash": manifest.manifest_hash, "manifest_items": len(manifest),
             "added": added, "root": manifest.root, "ganinv_version": ganinv_version}
    dataset = DatasetInfo(root=manifest.root or store.attributes.dataset.root, manifest_hash=manifest.manifest_hash,
                          num_items=n, history=store.attributes.dataset.history + (entry,))
    put_root(store, dataclasses.replace(store.attributes, dataset=dataset, layout=layout))


def put_root(store: LatentStore, attributes: StoreAttributes) -> None:
    """Writes the root attributes whole, then the copy the root can be rebuilt from (coordinator, under the lease)."""
    store.attributes = attributes
    store.group.attrs.put(attributes.to_json())
    write_root_copy(store)


def write_root_copy(store: LatentStore) -> None:
    """A copy of the root attributes in `root_copy/zarr.json`, from which `verify.rebuild_root` restores a lost root."""
    copy = store.group.require_group(arrays.ROOT_COPY)
    copy.attrs.put({"long_name": "copy of the root attributes, rewritten after them (LatentStore.rebuild_root)",
                    arrays.ROOT_COPY_KEY: store.attributes.to_json()})
