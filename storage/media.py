"""Morphs and style mixes of stored items, kept as edit runs: `edits/<run>` holds the codes a picture was rendered
from and says how they were made, like a batch-edit run (storage/edits.py), with a layout of its own kind.

    edits/<run>/zarr.json  attributes: created, ganinv_version, store_manifest_hash (LatentStore.result_group),
                           made_by = {flow, kind ('morph' | 'style-mix'), items, frames or layers, generator,
                           grids}, spec_sha256 (what identifies the content: the codes and their items)
    morph:      pair_index [pair, end] int64 (the store rows of a and b), pair_id [pair, end] image ids,
                ws [pair, frame, layer, channel] float32 (ganinv.edit.interpolate)
    style-mix:  content_index [content] int64, style_index [style] int64, content_id / style_id image ids,
                ws [content, style, layer, channel] float32 (ganinv.edit.style_mix: content rows, style layers)
    Image ids are fixed-width UTF-8 (storage/text.py: one more axis for the bytes); every array is checksummed.

The coordinator computes the codes (cheap) and writes them when it creates the run, under the lease; a worker renders
them into the pictures beside the store (`grids_url(store, run)`), whose `index.json` is written last. A rerun with
the same content reuses the run; other content needs another name or `overwrite`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from storage import arrays, results, text
from storage.edits import EditRequestError, EditRunExistsError
from storage.errors import NotInStoreError
from storage.latent_store import LatentStore

KIND = "edits"
MEDIA_KINDS = ("morph", "style-mix")


def item_rows(store: LatentStore, image_ids: Sequence[str]) -> np.ndarray:
    """The store rows of `image_ids`, in their order (repeats allowed); each must be a done item."""
    where = {str(image_id): i for i, image_id in enumerate(store.image_ids())}
    unknown = [i for i in image_ids if i not in where]
    if unknown:
        raise NotInStoreError(f"image ids {unknown[:5]} are not in {store.url}")
    rows = np.array([where[i] for i in image_ids], np.int64)
    done = store.done()
    not_done = [i for i, row in zip(image_ids, rows) if not done[row]]
    if not_done:
        raise EditRequestError(f"items {not_done[:5]} are not inverted yet (status pending or failed): use done "
                               "items only")
    return rows


def spec_sha256(kind: str, ws: np.ndarray, indices: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256(f"ganinv.media-run.v1\0{kind}\0".encode())
    for name in sorted(indices):
        digest.update(name.encode() + np.asarray(indices[name], "<i8").tobytes())
    digest.update(np.asarray(ws, "<f4").tobytes())
    return digest.hexdigest()


def create(store: LatentStore, name: str, *, kind: str, ws: np.ndarray, dims: tuple[str, str],
           indices: Mapping[str, tuple[np.ndarray, tuple[str, ...]]], made_by: Mapping[str, Any],
           overwrite: bool = False) -> bool:
    """Writes `edits/<name>` of `kind` holding `ws` (`[A, B, num_ws, w_dim]`, its first two dims named `dims`) and
    the store rows in `indices` ({name: (rows, dims)}; each also gets its image ids, `<name>` -> `..._id`).
    Coordinator only. Returns False when a run of that name already holds this content (nothing written)."""
    if kind not in MEDIA_KINDS:
        raise ValueError(f"kind {kind!r} is not one of {MEDIA_KINDS}")
    spec = spec_sha256(kind, ws, {key: rows for key, (rows, _) in indices.items()})
    existing = results.find(store, KIND, name)
    if existing is not None and not overwrite:
        if existing.get("spec_sha256") == spec:
            return False
        raise EditRunExistsError(f"edit run {name!r} in {store.url} holds other content; pick another run name or "
                                 "pass --overwrite to replace it")
    group = store.result_group(KIND, name, made_by={**made_by, "kind": kind}, overwrite=existing is not None)
    group.attrs.update({"spec_sha256": spec})
    for key, (rows, row_dims) in indices.items():
        rows = np.asarray(rows, np.int64)
        index = group.create_array(key, shape=rows.shape, dtype="int64", dimension_names=row_dims,
                                   compressors=arrays.with_checksum(),
                                   attributes={"long_name": "row of the item in the store"})
        index[...] = rows
        _write_ids(group, key.replace("_index", "_id"), store.image_ids(rows.ravel()), rows.shape, row_dims)
    codes = group.create_array("ws", shape=ws.shape, dtype="float32", dimension_names=(*dims, "layer", "channel"),
                               compressors=arrays.with_checksum(),
                               attributes={"long_name": f"W+ codes of the {kind}"})
    codes[...] = np.asarray(ws, np.float32)
    store.consolidate()
    return True


def _write_ids(group: Any, name: str, ids: Sequence[str], shape: tuple[int, ...], dims: tuple[str, ...]) -> None:
    """The image ids of index rows `shape` as fixed-width UTF-8 (storage/text.py), one more axis for the bytes."""
    width = arrays.TEXT_WIDTHS[arrays.IMAGE_ID]
    value = text.encode(list(ids), width, what="image id").reshape(*shape, width)
    array = group.create_array(name, shape=value.shape, dtype="uint8", dimension_names=(*dims, text.dimension(name)),
                               compressors=arrays.with_checksum(),
                               attributes={"long_name": "image id", **text.attributes(width)})
    array[...] = value


def read_ws(store: LatentStore, name: str) -> np.ndarray:
    """The codes of media run `name`: `[A, B, num_ws, w_dim]`."""
    attrs = results.find(store, KIND, name)
    if attrs is None or (attrs.get("made_by") or {}).get("kind") not in MEDIA_KINDS:
        raise NotInStoreError(f"no morph or style-mix run {name!r} in {store.url}")
    return np.asarray(store.array(f"{KIND}/{name}/ws")[...], np.float32)
