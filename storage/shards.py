"""The shard protocol: a worker reads the items of its shard still to do and writes their results, data first and
`status` last, into chunks no other writer touches (docs/store.md, "Write protocol" and "Attempts")."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from storage import arrays, text
from storage.schema import Layout, Status

if TYPE_CHECKING:
    from storage.latent_store import LatentStore

MAX_ATTEMPTS_STORED = 255
_POOL: ThreadPoolExecutor | None = None


@dataclass(frozen=True)
class Shard:
    """Items [start, stop) of chunk `index`: the unit one writer owns and one task inverts."""

    index: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class ShardInputs:
    """What a worker needs to invert the items of a shard that are still to do (absolute item `indices`, ascending).
    `paths` are resolved against the dataset root; `attempts` is the snapshot that write_shard increments."""

    shard: Shard
    indices: np.ndarray
    image_ids: tuple[str, ...]
    paths: tuple[str, ...]
    source_sha256: tuple[str, ...]
    attempts: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class ShardResult:
    """Per-item results for the n items of a ShardInputs, in the same order.

    ws: [n, num_ws, w_dim] float32; status: [n] uint8, Status.DONE or Status.FAILED; error: n strings ('' for done);
    metrics: name -> [n] float (names the store was created with; missing ones are stored as NaN);
    z: [n, z_dim] float32 iff the store has z; thumbnails: [n, t, t, 3] uint8 iff the store has thumbnails.
    """

    ws: np.ndarray
    status: np.ndarray
    error: Sequence[str] | None = None
    metrics: Mapping[str, np.ndarray] = field(default_factory=dict)
    z: np.ndarray | None = None
    thumbnails: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ws)

    @classmethod
    def failed(cls, n: int, error: str, *, layout: Layout) -> ShardResult:
        """All n items failed with `error` (e.g. the batch raised); data arrays (metrics included) are NaN / zero, and
        writable, so a worker can fill in the items that succeed."""
        z = None if layout.z_dim is None else np.full((n, layout.z_dim), np.nan, np.float32)
        t = layout.thumbnail_size
        thumbnails = None if t is None else np.zeros((n, t, t, 3), np.uint8)
        return cls(ws=np.full((n, layout.num_ws, layout.w_dim), np.nan, np.float32),
                   status=np.full(n, Status.FAILED, np.uint8), error=[error] * n, z=z, thumbnails=thumbnails,
                   metrics={name: np.full(n, np.nan, np.float32) for name in layout.metrics})


def all_shards(num_items: int, chunk_items: int) -> list[Shard]:
    c, n = chunk_items, num_items
    return [Shard(i, i * c, min(n, (i + 1) * c)) for i in range(-(-n // c))]


def shard_at(index: int, num_items: int, chunk_items: int) -> Shard:
    c, n = chunk_items, num_items
    if not 0 <= index * c < n:
        raise IndexError(f"shard {index} is out of range: the store has {-(-n // c)} shards")
    return Shard(index, index * c, min(n, (index + 1) * c))


def todo(status: np.ndarray, attempts: np.ndarray | None, *, retry_failed: bool,
         max_attempts: int | None) -> np.ndarray:
    """The items still to do: pending, or failed if retry_failed and attempts remain."""
    mask = status == Status.PENDING
    if retry_failed:
        failed = status == Status.FAILED
        if max_attempts is not None:
            failed &= attempts < max_attempts
        mask |= failed
    return mask


def read_inputs(store: LatentStore, shard: Shard, *, retry_failed: bool = False, max_attempts: int | None = None,
                every_item: bool = False) -> ShardInputs:
    """The items of `shard` still to do (or all of them with `every_item`), with ids, resolved paths and attempts."""
    check_shard(store, shard)
    rows = slice(shard.start, shard.stop)
    # store._read: a chunk that fails its checksum is a StoreCorruptError naming it and the repair (not retried; a
    # rerun would meet it again), never a codec's ValueError that the task would retry and call transient.
    attempts = store._read(arrays.ATTEMPTS, rows)
    if every_item:
        keep = np.arange(len(attempts))
    else:
        keep = np.flatnonzero(todo(store._read(arrays.STATUS, rows), attempts, retry_failed=retry_failed,
                                   max_attempts=max_attempts))
    ids, paths, shas = (text.decode(store._read(name, rows))
                        for name in (arrays.IMAGE_ID, arrays.PATH, arrays.SOURCE_SHA256))
    root = store.attributes.dataset.root
    return ShardInputs(shard=shard, indices=(shard.start + keep).astype(np.int64),
                       image_ids=tuple(str(ids[i]) for i in keep),
                       paths=tuple(resolve_item_path(root, str(paths[i])) for i in keep),
                       source_sha256=tuple(str(shas[i]) for i in keep), attempts=attempts[keep].copy())


def write(store: LatentStore, inputs: ShardInputs, result: ShardResult) -> None:
    """All data arrays, then `attempts` (= snapshot + 1), then `status`, which vouches for the rest."""
    check_inputs(store, inputs)
    check_result(store.layout, inputs, result)
    if len(inputs) == 0:
        return
    rows = region(inputs.indices)
    attempts = np.minimum(inputs.attempts.astype(np.int64) + 1, MAX_ATTEMPTS_STORED).astype(np.uint8)
    writes = {**_data_writes(store.layout, result), arrays.ATTEMPTS: attempts}
    errors = list(result.error) if result.error is not None else [""] * len(result)
    writes[arrays.ERROR] = arrays.text_column(store.array(arrays.ERROR), arrays.ERROR, errors, truncate=True)
    for name in writes:
        store.array(name)  # open in this thread; the writes below run in a thread pool, one array each
    pool = thread_pool()
    for future in [pool.submit(write_region, store, name, rows, value) for name, value in writes.items()]:
        future.result()
    write_region(store, arrays.STATUS, rows, np.asarray(result.status, np.uint8))  # last: it vouches for the data


def write_region(store: LatentStore, name: str, rows: slice | np.ndarray, value: np.ndarray) -> None:
    array = store.array(name)
    if isinstance(rows, slice):
        array[rows] = value
    else:
        array.set_orthogonal_selection((rows,) + (slice(None),) * (value.ndim - 1), value)


def thread_pool() -> ThreadPoolExecutor:
    """One pool per process, shared by all stores (a worker opens a store per task)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="latent-store")
    return _POOL


def _data_writes(layout: Layout, result: ShardResult) -> dict[str, np.ndarray]:
    n = len(result)
    writes = {arrays.WS: np.asarray(result.ws, np.float32)}
    if layout.z_dim is not None:
        writes[arrays.Z] = np.asarray(result.z, np.float32)
    if layout.thumbnail_size is not None:
        writes[arrays.THUMBNAILS] = np.asarray(result.thumbnails, np.uint8)
    for name in layout.metrics:
        value = result.metrics.get(name)
        writes[arrays.metric(name)] = np.full(n, np.nan, np.float32) if value is None else np.asarray(value,
                                                                                                     np.float32)
    return writes


def check_shard(store: LatentStore, shard: Shard) -> None:
    if shard != store.shard(shard.index):
        raise ValueError(f"{shard} is not a shard of this store (chunk_items={store.chunk_items}, "
                         f"num_items={store.num_items}); take shards from store.shards() or pending_shards()")


def check_inputs(store: LatentStore, inputs: ShardInputs) -> None:
    check_shard(store, inputs.shard)
    idx = inputs.indices
    if len(idx) != len(inputs.attempts) or (len(idx) and (idx[0] < inputs.shard.start or idx[-1] >= inputs.shard.stop
                                                           or (np.diff(idx) <= 0).any())):
        raise ValueError(f"ShardInputs of shard {inputs.shard.index} are inconsistent: indices must be ascending "
                         "within the shard; take them from store.read_shard_inputs")


def check_result(layout: Layout, inputs: ShardInputs, result: ShardResult) -> None:
    n = len(inputs)
    expect = {"ws": (n, layout.num_ws, layout.w_dim), "status": (n,)}
    if layout.z_dim is not None:
        expect["z"] = (n, layout.z_dim)
    if layout.thumbnail_size is not None:
        expect["thumbnails"] = (n, layout.thumbnail_size, layout.thumbnail_size, 3)
    for name, shape in expect.items():
        value = getattr(result, name)
        if value is None or np.shape(value) != shape:
            raise ValueError(f"ShardResult.{name} has shape {None if value is None else np.shape(value)}, "
                             f"expected {shape} for the {n} items of shard {inputs.shard.index}")
    if result.error is not None and len(result.error) != n:
        raise ValueError(f"ShardResult.error has {len(result.error)} strings, expected {n}")
    unknown = set(result.metrics) - set(layout.metrics)
    if unknown:
        raise ValueError(f"metrics {sorted(unknown)} are not in this store (it has {layout.metrics})")
    for name, value in result.metrics.items():
        if np.shape(value) != (n,):
            raise ValueError(f"metric {name!r} has shape {np.shape(value)}, expected ({n},)")
    bad = set(np.unique(result.status).tolist()) - {int(Status.DONE), int(Status.FAILED)}
    if bad:
        raise ValueError(f"ShardResult.status has codes {sorted(bad)}: use Status.DONE or Status.FAILED")


def region(indices: np.ndarray) -> slice | np.ndarray:
    """A slice when the indices are contiguous (the fast path: whole chunks, no read), else the index array."""
    if len(indices) and indices[-1] - indices[0] + 1 == len(indices):
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


def resolve_item_path(root: str, path: str) -> str:
    """An item's stored path made absolute against the dataset root (paths and URLs that already are, unchanged)."""
    if not root or path.startswith("/") or "://" in path:
        return path
    return posixpath.join(root, path)
