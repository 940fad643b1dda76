"""Checking a store: chunks that fail their checksum, done items whose data is missing, not finite or corrupt,
arrays of the wrong length; repairing them (requeue exactly the affected items, rebuild a corrupt `status` from the
data's checksums); and rebuilding a lost, unreadable or stale root from the store's own copy of it (docs/store.md,
"Damage and repair")."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np

from ganinv import __version__ as ganinv_version
from storage import arrays, shards, text
from storage._zarr import zarr
from storage.errors import StoreDamagedError, StoreExistsError
from storage.growth import now_iso, write_root_copy
from storage.schema import Status, StoreAttributes

if TYPE_CHECKING:
    from storage.latent_store import LatentStore


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of verify(): counts per status; done items whose data is missing, not finite or in a corrupt chunk
    (`bad_items`, each with its reason); corrupt chunks; store-level problems; notes (e.g. no checksums); and, after
    a repair, the items marked pending again (`requeued`)."""

    num_items: int
    counts: Mapping[str, int]
    bad_items: tuple[int, ...] = ()
    reasons: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    repaired: bool = False
    corrupt_chunks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    requeued: tuple[int, ...] = ()
    checksums: bool = True

    @property
    def ok(self) -> bool:
        return not self.bad_items and not self.problems and not self.corrupt_chunks


@dataclass
class _ShardCheck:
    """What one shard's chunks hold: the arrays whose chunk could not be read (name -> why), its status (None if
    that chunk is corrupt), and the done items whose data is bad."""

    shard: shards.Shard
    corrupt: dict[str, str] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)
    bad: dict[int, str] = field(default_factory=dict)  # absolute index -> reason


def verify(store: LatentStore, *, repair: bool = False, shard_indices: Sequence[int] | None = None) -> VerifyReport:
    """Reads every chunk of every item array (zarr checks each chunk's CRC-32C as it reads it) and finds: chunks
    that fail their checksum or cannot be decoded; items marked done whose ws (or z) is missing or not finite, or
    whose data sits in a corrupt chunk, or whose image_id is empty; arrays whose length differs from num_items.
    `shard_indices`: check only those shards.

    repair=True (the caller is the coordinator): corrupt data chunks are reset to their fill value and exactly the
    done items they held are marked pending; a corrupt `status` chunk is rebuilt from the data (an item whose data
    chunks verify and whose ws is finite stays done, one with an error message stays failed, the rest become
    pending); corrupt `error` and `attempts` chunks are rebuilt (failed items whose message was lost are retried).
    Identity chunks (image_id, path, source_sha256) cannot be rebuilt from the store: they stay a problem."""
    problems = _length_problems(store)  # also opens every array in this thread
    todo = store.shards() if shard_indices is None else [store.shard(i) for i in shard_indices]
    checks = list(shards.thread_pool().map(lambda s: _check_shard(store, s), todo))  # threads hide bucket latency
    requeued = []
    if repair:
        requeued = [i for check in checks for i in _repair_shard(store, check)]
    bad = sorted((i, reason) for check in checks for i, reason in check.bad.items())
    corrupt = [f"{name} chunk {c.shard.index} (items {c.shard.start}-{c.shard.stop - 1}): {why}"
               for c in checks for name, why in c.corrupt.items()]
    problems += [p for c in checks for p in _unrepairable(c)]
    unchecked = [name for name in arrays.item_array_names(store.layout) if not arrays.has_checksum(store.array(name))]
    notes = _checksum_notes(store, unchecked)
    return VerifyReport(num_items=store.num_items, counts=_counts(store), bad_items=tuple(i for i, _ in bad),
                        reasons=tuple(r for _, r in bad), problems=tuple(problems), repaired=repair and bool(
                            requeued or corrupt), corrupt_chunks=tuple(corrupt), notes=tuple(notes),
                        requeued=tuple(sorted(requeued)), checksums=not unchecked)


def corrupt_status_shards(store: LatentStore) -> list[int]:
    """The shards whose `status` chunk cannot be read (cheap: one byte per item)."""
    status = store.array(arrays.STATUS)
    found = []
    for shard in store.shards():
        try:
            status[shard.start:shard.stop]
        except (ValueError, RuntimeError):
            found.append(shard.index)
    return found


def _check_shard(store: LatentStore, shard: shards.Shard) -> _ShardCheck:
    check, rows = _ShardCheck(shard), slice(shard.start, shard.stop)
    for name in arrays.item_array_names(store.layout):
        try:
            check.values[name] = np.asarray(store.array(name)[rows])
        except (ValueError, RuntimeError) as err:  # a checksum mismatch, or bytes a codec cannot decode
            check.corrupt[name] = f"{type(err).__name__}: {err}"
    status = check.values.get(arrays.STATUS)
    if status is None:
        return check  # which items are done is unknown until the chunk is rebuilt (repair)
    done = np.flatnonzero(status == Status.DONE)
    for name in arrays.data_array_names(store.layout):
        if name in check.corrupt:
            for i in done:
                check.bad.setdefault(shard.start + int(i), f"{name} chunk {shard.index} corrupt")
    for name in (arrays.WS, arrays.Z):
        if name in check.values:
            finite = _finite_rows(check.values[name][done])
            for i in done[~finite]:
                check.bad.setdefault(shard.start + int(i), f"{name} missing or not finite")
    if arrays.IMAGE_ID in check.values:
        ids = text.decode(check.values[arrays.IMAGE_ID])
        for i in done[ids[done] == ""]:
            check.bad.setdefault(shard.start + int(i), "image_id empty")
    return check


def _repair_shard(store: LatentStore, check: _ShardCheck) -> list[int]:
    """Writes the repairs of one shard (data resets first, status last); returns the items marked pending."""
    shard, rows, n = check.shard, slice(check.shard.start, check.shard.stop), len(check.shard)
    for name in [*arrays.data_array_names(store.layout), *(a for a in check.corrupt if a.startswith(arrays.LABELS))]:
        if name in check.corrupt:  # the whole chunk, so zarr writes it without reading the corrupt bytes
            array = store.array(name)
            array[rows] = np.full((n,) + array.shape[1:], array.fill_value, dtype=array.dtype)
    old = check.values.get(arrays.STATUS)
    status = _rebuilt_status(store, check) if old is None else old.copy()
    status[[i - shard.start for i in check.bad]] = Status.PENDING
    if arrays.ERROR in check.corrupt:  # failed items whose reason was lost are tried again
        status[status == Status.FAILED] = Status.PENDING
        shards.write_region(store, arrays.ERROR, rows, arrays.text_column(store.array(arrays.ERROR), arrays.ERROR,
                                                                          [""] * n))
    if arrays.ATTEMPTS in check.corrupt:  # at least one execution wrote every finished item
        shards.write_region(store, arrays.ATTEMPTS, rows, (status != Status.PENDING).astype(np.uint8))
    requeued = np.flatnonzero((status == Status.PENDING) & (old != Status.PENDING if old is not None else True))
    if old is None or not np.array_equal(old, status):
        shards.write_region(store, arrays.STATUS, rows, status)  # last: it vouches for the rest
    return [shard.start + int(i) for i in requeued]


def _rebuilt_status(store: LatentStore, check: _ShardCheck) -> np.ndarray:
    """Status from the data: done if every data chunk verified and ws (z) is finite; failed if ws is NaN and the
    item has an error message; else pending (it is inverted again)."""
    n = len(check.shard)
    status = np.full(n, Status.PENDING, np.uint8)
    if any(name in check.corrupt for name in arrays.data_array_names(store.layout)):
        return status
    finite = np.ones(n, bool)
    for name in (arrays.WS, arrays.Z):
        if name in check.values:
            finite &= _finite_rows(check.values[name])
    status[finite] = Status.DONE
    if arrays.ERROR in check.values:
        has_error = text.decode(check.values[arrays.ERROR]) != ""
        status[~finite & has_error] = Status.FAILED
    return status


def _finite_rows(values: np.ndarray) -> np.ndarray:
    """bool per row: every entry finite."""
    if values.shape[0] == 0:
        return np.ones(0, bool)
    return np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)


def _unrepairable(check: _ShardCheck) -> list[str]:
    lost = [name for name in (arrays.IMAGE_ID, arrays.PATH, arrays.SOURCE_SHA256) if name in check.corrupt]
    if not lost:
        return []
    return [f"{', '.join(lost)} of items {check.shard.start}-{check.shard.stop - 1} unreadable: the store cannot "
            "rebuild which inputs they are; their codes are intact. Invert the dataset into a new store (or restore "
            "the chunk from a backup)"]


def _counts(store: LatentStore) -> dict[str, int]:
    try:
        return store.status_counts()
    except StoreDamagedError:  # a corrupt status chunk, reported as such
        return {name: -1 for name in ("pending", "done", "failed")}


def _checksum_notes(store: LatentStore, unchecked: list[str]) -> list[str]:
    if not unchecked:
        return []
    return [f"{len(unchecked)} arrays have no checksums (schema v{store.attributes.schema_version} store; e.g. "
            f"{', '.join(unchecked[:3])}): flipped bytes in them go unnoticed unless a codec fails. Migrate: "
            f"`ganinv store-migrate {store.url} NEW_URL` copies the store into the checksummed layout"]


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
