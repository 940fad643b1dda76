"""Checking a store: done items whose data is missing or not finite, arrays of the wrong length, and rebuilding a
lost, unreadable or stale root from the store's own copy of it (docs/store.md, "Damage and repair")."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np
import zarr

from ganinv import __version__ as ganinv_version
from storage import arrays, shards
from storage.errors import StoreDamagedError, StoreExistsError
from storage.growth import now_iso, write_root_copy
from storage.schema import Status, StoreAttributes

if TYPE_CHECKING:
    from storage.latent_store import LatentStore


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of verify(): counts per status, done items whose data is missing or not finite, store-level problems."""

    num_items: int
    counts: Mapping[str, int]
    bad_items: tuple[int, ...] = ()
    reasons: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not self.bad_items and not self.problems


def verify(store: LatentStore, *, repair: bool = False) -> VerifyReport:
    """Finds items marked done whose ws (or z) is missing or not finite, or whose image_id is empty, and arrays whose
    length differs from num_items (an interrupted append). repair=True marks the bad items pending again (the caller
    is the coordinator), so the next run redoes them."""
    problems = _length_problems(store)  # also opens every array in this thread
    found = [item for items in shards.thread_pool().map(lambda s: _verify_shard(store, s), store.shards())
             for item in items]  # threads hide bucket latency
    bad = [index for index, _ in found]
    if repair and bad:
        indices = np.asarray(bad, np.int64)
        shards.write_region(store, arrays.STATUS, shards.region(indices), np.zeros(len(indices), np.uint8))
    return VerifyReport(num_items=store.num_items, counts=store.status_counts(), bad_items=tuple(bad),
                        reasons=tuple(reason for _, reason in found), problems=tuple(problems),
                        repaired=repair and bool(bad))


def _verify_shard(store: LatentStore, shard: shards.Shard) -> list[tuple[int, str]]:
    """(index, reason) for the done items of one shard whose data is bad."""
    rows = slice(shard.start, shard.stop)
    done = np.flatnonzero(store.array(arrays.STATUS)[rows] == Status.DONE)
    if done.size == 0:
        return []
    found: dict[int, str] = {}
    for name in [arrays.WS] + [arrays.Z] * (store.layout.z_dim is not None):
        try:
            values = store.array(name)[rows][done]
        except Exception as err:  # noqa: BLE001 - a corrupt or truncated chunk: every done item of the shard is suspect
            return [(shard.start + int(i), f"{name} chunk unreadable: {err!r}") for i in done]
        finite = np.isfinite(values.reshape(len(done), -1)).all(axis=1)
        for i in done[~finite]:
            found.setdefault(shard.start + int(i), f"{name} missing or not finite")
    ids = store.array(arrays.IMAGE_ID)[rows][done]
    for i in done[ids == ""]:
        found.setdefault(shard.start + int(i), "image_id empty")
    return sorted(found.items())


def _length_problems(store: LatentStore) -> list[str]:
    problems = []
    for name in arrays.item_array_names(store.layout):
        length = store.array(name).shape[0]
        if length != store.num_items:
            problems.append(f"{name} has {length} items, the store {store.num_items}: an append was interrupted, "
                            "run append again")
    return problems


def rebuild_root(store_class: type[LatentStore], url: str, *,
                 storage_options: Mapping[str, Any] | None = None) -> LatentStore:
    """Writes a lost, unreadable or stale root `zarr.json` again from the store's copy of its attributes
    (`root_copy`), touching no array; the item count covers every item `status` has finished. Returns the store
    opened 'r+'. Refuses a store whose root is fine, and one without a copy (made before copies were kept).
    Stale: the root counts fewer items than `status` has finished (a root written over the store)."""
    fs, root = fsspec.core.url_to_fs(str(url), **dict(storage_options or {}))
    zstore = store_class.zarr_store(str(url), read_only=False, storage_options=storage_options)
    finished = np.flatnonzero(_read_status(zstore, str(url)) != Status.PENDING)
    try:
        counted = store_class(str(url), mode="r", storage_options=storage_options).num_items
    except StoreDamagedError:
        counted = None
    if counted is not None and (finished.size == 0 or finished[-1] < counted):
        raise StoreExistsError(f"{url} has a readable root: nothing to rebuild (`ganinv store-verify {url}`)")
    attrs = _read_root_copy(zstore, str(url))
    num_items = max(attrs.dataset.num_items, int(finished[-1]) + 1 if finished.size else 0)
    entry = {"at": now_iso(), "rebuilt_root": True, "num_items": num_items, "ganinv_version": ganinv_version}
    attrs = dataclasses.replace(attrs, dataset=dataclasses.replace(
        attrs.dataset, num_items=num_items, history=attrs.dataset.history + (entry,)))
    doc = {"zarr_format": 3, "node_type": "group", "attributes": attrs.to_json()}
    fs.pipe_file(f"{root.rstrip('/')}/zarr.json", json.dumps(doc, indent=2, allow_nan=True).encode())
    store = store_class(str(url), mode="r+", storage_options=storage_options)
    write_root_copy(store)
    store.consolidate()
    return store


def _read_status(zstore: zarr.abc.store.Store, url: str) -> np.ndarray:
    try:
        return np.asarray(zarr.open_array(zstore, path=arrays.STATUS, mode="r")[:])
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.ArrayNotFoundError) as err:
        raise StoreDamagedError(f"{url} has no readable `status` array ({err!r}): there is no latent store root to "
                                "rebuild there; check the URL") from err


def _read_root_copy(zstore: zarr.abc.store.Store, url: str) -> StoreAttributes:
    try:
        copy = dict(zarr.open_group(zstore, path=arrays.ROOT_COPY, mode="r", zarr_format=3).attrs)
        return StoreAttributes.from_json(copy[arrays.ROOT_COPY_KEY])
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.GroupNotFoundError) as err:
        raise StoreDamagedError(
            f"cannot rebuild the root of {url}: it keeps no readable copy of its root attributes ({err!r}; stores "
            f"written before ganinv kept one have none). Move the folder aside (e.g. mv {url} {url}.damaged) and "
            "invert into a new store; its arrays stay readable with zarr.") from err
