"""The scan's hash cache, kept in the store between runs: input path -> (fingerprint, sha256), so that a rescan of an
unchanged corpus reads its listing instead of every file (`storage.scan.scan_images(previous=...)` decides what a
fingerprint is and when an entry is trusted; this module only keeps the entries).

How it is stored: `<store>/scan_cache/hashes`, a Zarr uint8 array of one chunk holding gzip-compressed JSON
(`{"format": "ganinv-scan-cache", "version": 1, "entries": {path: [fingerprint, sha256]}}`). A Zarr array rather
than a plain file, because zarr and xarray warn about objects that are not part of the hierarchy when they list the
store; one chunk, because the cache is read and replaced whole. Only the coordinator writes it, under the store's
lease (`LatentStore.write_scan_cache`), and re-consolidates the metadata. The array's shape changes with every write,
so a reader that meets a half-written cache (new shape, old or missing chunk) fails the gzip/JSON check and gets
no cache: a cache that cannot be read costs one full hash, never a wrong one (gzip's CRC covers the payload).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from storage._zarr import zarr
from storage.arrays import SCAN_CACHE as SCAN_CACHE_GROUP
from storage.arrays import with_checksum
SCAN_CACHE_ARRAY = f"{SCAN_CACHE_GROUP}/hashes"
_FORMAT, _VERSION = "ganinv-scan-cache", 1

HashCache = Mapping[str, tuple[str, str]]  # input path -> (fingerprint, sha256)


def encode(entries: HashCache) -> bytes:
    doc = {"format": _FORMAT, "version": _VERSION, "entries": {p: [fp, sha] for p, (fp, sha) in entries.items()}}
    return gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), compresslevel=6, mtime=0)


def decode(payload: bytes) -> dict[str, tuple[str, str]]:
    """Entries of an encoded cache; ValueError (or OSError from gzip) if it is not one."""
    doc = json.loads(gzip.decompress(payload))
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("version") != _VERSION:
        raise ValueError(f"not a {_FORMAT} v{_VERSION} document")
    entries = {}
    for path, entry in doc["entries"].items():
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, str) for v in entry)):
            raise ValueError(f"bad entry for {path!r}: {entry!r}")
        entries[path] = (entry[0], entry[1])
    return entries


def read_scan_cache(zstore: zarr.abc.store.Store) -> tuple[dict[str, tuple[str, str]], str]:
    """(entries, note): the cache of the store, or no entries and why (no cache yet, or unreadable). Never raises
    for a missing or damaged cache: the caller then hashes every file."""
    try:
        array = zarr.open_array(zstore, path=SCAN_CACHE_ARRAY, mode="r")
    except (FileNotFoundError, KeyError, zarr.errors.NodeNotFoundError):
        return {}, "no scan cache yet"
    except Exception as err:  # noqa: BLE001 - a damaged cache only costs a full hash
        return {}, f"scan cache unreadable ({type(err).__name__}: {err}); hashing every file"
    try:
        entries = decode(np.asarray(array[:], dtype=np.uint8).tobytes())
    except Exception as err:  # noqa: BLE001 - torn or foreign payload
        return {}, f"scan cache unreadable ({type(err).__name__}: {err}); hashing every file"
    return entries, f"scan cache of {len(entries)} files"


def write_scan_cache(group: zarr.Group, entries: HashCache) -> int:
    """Replaces the cache under `group` (the store's root group, opened for writing); returns its size in bytes.
    The caller holds the lease and consolidates the metadata afterwards."""
    payload = np.frombuffer(encode(entries), dtype=np.uint8)
    parent = group.require_group(SCAN_CACHE_GROUP)
    parent.attrs.put({"long_name": "hash cache of the dataset scan (storage/scan_cache.py)"})
    array = parent.create_array("hashes", shape=payload.shape, chunks=payload.shape, dtype=np.uint8,
                                compressors=with_checksum([]), fill_value=0, dimension_names=["byte"],
                                overwrite=True, attributes=_attributes())
    array[:] = payload
    return int(payload.size)


def _attributes() -> dict[str, Any]:
    return {"long_name": "gzip-compressed JSON: input path -> [fingerprint, sha256]", "format": _FORMAT,
            "version": _VERSION}
