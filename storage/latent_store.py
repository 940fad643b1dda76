"""The latent store: a self-describing Zarr v3 corpus of latent codes that many workers write at once and runs resume.

Layout (schema v1; every item array is chunked along the item axis by `chunk_items`, all have `dimension_names`)::

    <store>/zarr.json            root attributes = storage.schema.StoreAttributes (schema version, created,
                                 ganinv_version, generator identity, inversion config, dataset, chunking, layout)
    image_id       [N] str       (item)                          coordinate of every item variable
    path           [N] str       (item)                          input path, relative to dataset.root
    source_sha256  [N] str       (item)                          sha256 of the input file's bytes
    ws             [N, num_ws, w_dim] float32 (item, layer, channel)   NaN until written
    z              [N, z_dim] float32 (item, z_channel)          only if created with z_dim
    thumbnails     [N, t, t, 3] uint8 (item, y, x, rgb)          only if created with thumbnail_size
    status         [N] uint8     (item)  0 pending (fill value) / 1 done / 2 failed, CF flag_values/flag_meanings
    error          [N] str       (item)  why an item failed, '' otherwise
    attempts       [N] uint8     (item)  see "attempts" below
    metrics/<name> [N] float32   (item)  mse, psnr, ssim, lpips, final_loss, steps, seconds (NaN if not given)
    labels/<attr>  [N] float32   (item)  from the manifest's attribute table, NaN where missing
    directions/<name>/, edits/<run>/     groups for downstream results, attributes say how they were made
    lease/<generation>/zarr.json         the run lease (storage/lease.py), written with fsspec, not by zarr
    scan_cache/hashes  [bytes] uint8     the dataset scan's hash cache (storage/scan_cache.py), coordinator only
    root_copy/zarr.json                  a copy of the root attributes, rewritten after them: `rebuild_root` restores
                                         a lost root from it (a folder with arrays but no root is never adopted, and
                                         no array holding finished items is ever cut shorter)

`xarray.open_zarr(url)` opens the root (image_id is a coordinate through the CF `coordinates` attribute; metadata is
consolidated after every coordinator change, and shard writes never change metadata, so it stays valid).
`store.to_xarray()` adds metrics and labels as `metric_<name>` / `label_<attr>` variables; all are dask-backed.

Write protocol. A shard is one chunk of items, `[i * chunk_items, (i + 1) * chunk_items)`, and also the task size.
A worker needs only the URL and the shard: `inputs = store.read_shard_inputs(shard)` gives the items still to do,
`store.write_shard(inputs, result)` writes every data array first and `status` last, so an item marked done always has
its data. Writers of different shards touch different chunk objects and run in different processes with no lock
(Zarr v3 is safe for disjoint chunk-aligned writes only, see /work/shared/PLATFORM_NOTES.md). Local chunk files are
replaced atomically by zarr (write to a temp file, then rename) and S3 PUTs are atomic, so a killed writer leaves
either the old or the new chunk, never a torn one. Root attributes, resizes and new arrays are changed only by the
coordinating process (create, append, verify(repair=True), result_group), which holds the run lease.

Attempts (at-least-once execution). `read_shard_inputs` snapshots `attempts` for the items it returns and
`write_shard` writes `snapshot + 1` (saturating at 255), before `status`. So `attempts` counts the executions that got
as far as writing a result for an item: a body that Dask re-runs because its worker died *before* writing does not
count; one that died *while* writing counts (it wrote attempts, not status, and the rerun reads the new value); two
executions of the same task from the same snapshot (a duplicate of a live task) write the same bytes, so duplicates
neither double-count nor otherwise change the store. Every done item has attempts >= 1.

Chunking and compression (numbers in BENCHMARKS.md, `benchmarks/store_write.py`). No sharding codec: the sharding
codec packs many inner chunks into one object, which helps when reads want pieces smaller than what one writer owns.
Here the unit a writer owns is already the unit worth one object (a 256-item ws chunk is 9.4 MB raw, within the
1-100 MB sweet spot of object stores), one writer must own a whole shard anyway, and partial shard writes are
read-modify-write of the whole object (zarr-python #3682), which would turn the append of a few items into rewriting
a large shard. The default chunk_items=256 is ~4 minutes of work at 1 s per image, had the best measured write
throughput, and keeps the object count of a million-item corpus near 4k per array; tests use small chunks.
`ws` uses Zstd level 1: inverted W codes repeat one vector over num_ws layers and compress 19.3x (Blosc-LZ4 16x),
W+ codes are full-entropy floats and compress 1.08x, and Zstd-1 encodes at 200-900 MB/s, far above need.

Growth. `append(manifest)` adds the items whose `source_sha256` is not yet in the store (and not repeated within the
manifest), resizing every item array; the new items are pending. The root attribute `dataset.num_items` is written
last and is the commit point: an interrupted append leaves the store readable with the old items and is finished by
running append again.

A typical run::

    store = LatentStore.open_or_create(url, manifest=m, num_ws=18, w_dim=512, generator=g, config=cfg)
    with store.acquire_lease(run_id, ttl_s=RENEWED_LEASE_TTL_S):  # refuses if another run holds the store
        store.append(m)                              # no-op when nothing is new
        for shard in store.pending_shards():         # on workers: LatentStore.open(url, "r+")
            inputs = store.read_shard_inputs(shard)
            if len(inputs):                          # a rerun of a finished task finds nothing to do
                store.write_shard(inputs, invert(inputs.paths))
        assert store.verify().ok
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import posixpath
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from ganinv import __version__ as ganinv_version
from storage import scan_cache
from storage.lease import DEFAULT_LEASE_TTL_S, Lease, LeaseFiles, LeaseHeldError, LeaseRecord, acquire
from storage.schema import (DEFAULT_METRICS, STATUS_NAMES, Chunking, DatasetInfo, GeneratorIdentity, Layout,
                            Manifest, Status, StoreAttributes, canonical_json, check_name, to_jsonable)

DEFAULT_CHUNK_ITEMS = 256
RESULT_KINDS = ("directions", "edits")
ROOT_COPY_GROUP, ROOT_COPY_KEY = "root_copy", "root_attributes"
MAX_ATTEMPTS_STORED = 255

# Users pick the ws compressor by name (`compressor=`); the name is recorded in chunking.ws_compressor.
WS_COMPRESSORS: dict[str, Callable[[], list]] = {
    "zstd": lambda: [ZstdCodec(level=1)],
    "blosc-lz4": lambda: [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
    "none": lambda: [],
}


_POOL: ThreadPoolExecutor | None = None


class StoreNotFoundError(FileNotFoundError):
    """No latent store at the URL."""


class StoreExistsError(FileExistsError):
    """create() found a store already at the URL."""


class StoreMismatchError(ValueError):
    """The store was made with another generator, inversion config, layout or schema version."""


class StoreDamagedError(StoreMismatchError):
    """The folder holds a store's arrays but its root metadata is missing, unreadable or stale: it is never adopted
    (written over) or shrunk; the message says how to rebuild the root or to move the folder aside."""


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


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _is_url(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _open_zarr_store(url: str, *, read_only: bool, storage_options: Mapping[str, Any] | None) -> zarr.abc.store.Store:
    """LocalStore for paths (atomic chunk replacement), FsspecStore for fsspec URLs (memory://, s3://, gs://...)."""
    if _is_url(url):
        return zarr.storage.FsspecStore.from_url(url, storage_options=dict(storage_options or {}),
                                                 read_only=read_only)
    return zarr.storage.LocalStore(url.removeprefix("file://"), read_only=read_only)


class LatentStore:
    """A latent store opened at `url`. Build one with `create`, `open` or `open_or_create`; see the module docstring
    for the layout, the write protocol and the attempts semantics."""

    def __init__(self, url: str, *, mode: str, run_id: str | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        if mode not in ("r", "r+"):
            raise ValueError(f"mode={mode!r}: open a latent store with mode 'r' (read) or 'r+' (write)")
        self.url, self.mode, self.run_id = str(url), mode, run_id
        self._storage_options = dict(storage_options or {})
        self._zstore = _open_zarr_store(self.url, read_only=mode == "r", storage_options=storage_options)
        fs, root = fsspec.core.url_to_fs(self.url, **self._storage_options)
        self._fs, self._root_path = fs, root
        self._lease_files = LeaseFiles(fs, root, store_name=self.url)
        self._lease: Lease | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self._group = self._open_group()
        self.attributes = self._read_attributes()

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, url: str, *, manifest: Manifest, num_ws: int, w_dim: int, generator: GeneratorIdentity | Mapping,
               config: Any, chunk_items: int = DEFAULT_CHUNK_ITEMS, num_items: int | None = None,
               z_dim: int | None = None, thumbnail_size: int | None = None,
               metrics: Sequence[str] = DEFAULT_METRICS, compressor: str = "zstd",
               storage_options: Mapping[str, Any] | None = None) -> LatentStore:
        """Creates a store for `manifest` (all items pending) and returns it opened 'r+'.

        generator: GeneratorIdentity (or its dict); config: the inversion config (frozen dataclass or mapping),
        saved verbatim; num_items: optional check, must equal len(manifest); chunk_items: items per chunk = shard =
        task; compressor: a name in WS_COMPRESSORS. Raises StoreExistsError if a store is already there.
        """
        _check_create_args(manifest, num_ws=num_ws, w_dim=w_dim, chunk_items=chunk_items, num_items=num_items,
                           z_dim=z_dim, thumbnail_size=thumbnail_size, compressor=compressor)
        generator = _as_generator(generator)
        fs, root = fsspec.core.url_to_fs(str(url), **dict(storage_options or {}))
        if fs.exists(f"{root.rstrip('/')}/zarr.json"):
            raise StoreExistsError(f"a store already exists at {url}: open it with LatentStore.open(url, 'r+') (or "
                                   "open_or_create), or choose a new URL")
        if _holds_files(fs, root):  # never write a root over arrays whose own root is gone
            raise StoreDamagedError(_not_empty_message(str(url)))
        layout = Layout(num_ws=num_ws, w_dim=w_dim, z_dim=z_dim, thumbnail_size=thumbnail_size,
                        metrics=tuple(check_name(m, what="metric") for m in metrics), labels=())
        attrs = StoreAttributes(created=_now_iso(), ganinv_version=ganinv_version, generator=generator,
                                inversion=to_jsonable(config), layout=layout,
                                dataset=DatasetInfo(root=manifest.root, manifest_hash="", num_items=0),
                                chunking=Chunking(chunk_items=chunk_items, ws_compressor=compressor))
        zstore = _open_zarr_store(str(url), read_only=False, storage_options=storage_options)
        group = zarr.create_group(zstore, attributes=attrs.to_json(), zarr_format=3)
        _create_arrays(group, attrs, compressor=compressor)
        store = cls(str(url), mode="r+", storage_options=storage_options)
        store.append(manifest)
        return store

    @classmethod
    def open(cls, url: str, mode: str = "r", *, generator: GeneratorIdentity | Mapping | None = None,
             config: Any = None, run_id: str | None = None,
             storage_options: Mapping[str, Any] | None = None) -> LatentStore:
        """Opens an existing store. With mode 'r+' and `generator` / `config` given, refuses (StoreMismatchError) a
        store made with another generator identity or inversion config. A store of another schema version is refused
        in any mode. `run_id`: write_shard then refuses to write while another run holds the lease (fencing)."""
        store = cls(str(url), mode=mode, run_id=run_id, storage_options=storage_options)
        if mode == "r+":
            store._check_identity(generator=generator, config=config)
        return store

    @classmethod
    def open_or_create(cls, url: str, *, manifest: Manifest, num_ws: int, w_dim: int,
                       generator: GeneratorIdentity | Mapping, config: Any, **create_kwargs: Any) -> LatentStore:
        """Opens the store at url for writing (checking generator, config and layout) or creates it from manifest.
        Opening does not append: call `append(manifest)` under the lease."""
        try:
            store = cls.open(url, "r+", generator=generator, config=config,
                             storage_options=create_kwargs.get("storage_options"))
        except StoreNotFoundError:
            return cls.create(url, manifest=manifest, num_ws=num_ws, w_dim=w_dim, generator=generator, config=config,
                              **create_kwargs)
        store._check_layout(num_ws=num_ws, w_dim=w_dim, **create_kwargs)
        return store

    def _open_group(self) -> zarr.Group:
        try:
            return zarr.open_group(self._zstore, mode="r" if self.mode == "r" else "r+", zarr_format=3,
                                   use_consolidated=False)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError) as err:
            if _holds_files(self._fs, self._root_path):
                raise StoreDamagedError(_root_missing_message(self.url, "is missing")) from err
            raise StoreNotFoundError(f"no latent store at {self.url} (no Zarr v3 group there): check the URL, or "
                                     "create one: `ganinv invert IMAGES --store URL` (LatentStore.create in Python)"
                                     ) from err
        except ValueError as err:  # json.JSONDecodeError, or metadata zarr cannot parse
            raise StoreDamagedError(_root_missing_message(self.url, f"is unreadable ({err})")) from err

    def _read_attributes(self) -> StoreAttributes:
        try:
            return StoreAttributes.from_json(dict(self._group.attrs))
        except ValueError as err:
            raise StoreMismatchError(f"{self.url}: {err}") from err
        except (KeyError, TypeError) as err:
            raise StoreMismatchError(f"{self.url}: root attributes are incomplete ({err!r}); not a readable ganinv "
                                     "store") from err

    def _check_identity(self, *, generator: GeneratorIdentity | Mapping | None, config: Any) -> None:
        attrs = self.attributes
        if generator is not None:
            generator = _as_generator(generator)
            if generator.sha256 != attrs.generator.sha256:
                raise StoreMismatchError(
                    f"store {self.url} holds codes of generator sha256 {attrs.generator.sha256[:16]}... "
                    f"({attrs.generator.source or 'unknown source'}); you are writing with generator sha256 "
                    f"{generator.sha256[:16]}... ({generator.source or 'unknown source'}). A store holds one "
                    "generator's codes: write to a new store.")
        if config is not None and canonical_json(config) != canonical_json(attrs.inversion):
            diff = _dict_diff(to_jsonable(attrs.inversion), to_jsonable(config))
            raise StoreMismatchError(f"store {self.url} was inverted with another inversion config ({diff}); codes "
                                     "made with different settings must not mix: write to a new store.")

    def _check_layout(self, **expected: Any) -> None:
        layout, chunking = self.attributes.layout, self.attributes.chunking
        have = {**dataclasses.asdict(layout), "chunk_items": chunking.chunk_items,
                "compressor": chunking.ws_compressor}
        for key in ("num_ws", "w_dim", "z_dim", "thumbnail_size", "chunk_items", "compressor"):
            if key in expected and expected[key] != have[key]:
                raise StoreMismatchError(f"store {self.url} has {key}={have[key]!r}, asked for {expected[key]!r}: "
                                         "write to a new store for another layout")
        if "metrics" in expected and tuple(expected["metrics"]) != layout.metrics:
            raise StoreMismatchError(f"store {self.url} has metrics {layout.metrics}, asked for "
                                     f"{tuple(expected['metrics'])}: write to a new store")

    # ------------------------------------------------------------------ description
    @property
    def layout(self) -> Layout:
        return self.attributes.layout

    @property
    def num_items(self) -> int:
        return self.attributes.dataset.num_items

    def __len__(self) -> int:
        return self.num_items

    @property
    def chunk_items(self) -> int:
        return self.attributes.chunking.chunk_items

    def __repr__(self) -> str:
        return f"LatentStore({self.url!r}, mode={self.mode!r}, num_items={self.num_items})"

    def refresh(self) -> None:
        """Re-reads root attributes and array metadata. A LatentStore reads them when opened: reopen or refresh a
        long-lived instance after another process appended (workers that open the store per task need not)."""
        self._arrays.clear()
        self._group = self._open_group()
        self.attributes = self._read_attributes()

    def array(self, name: str) -> zarr.Array:
        """The Zarr array at `name` (e.g. 'ws', 'metrics/psnr'), opened once and cached."""
        if name not in self._arrays:
            self._arrays[name] = self._group[name]
        return self._arrays[name]

    def _item_array_names(self) -> list[str]:
        layout = self.layout
        names = ["image_id", "path", "source_sha256", "ws", "error", "attempts", "status"]
        names += ["z"] * (layout.z_dim is not None) + ["thumbnails"] * (layout.thumbnail_size is not None)
        return names + [f"metrics/{m}" for m in layout.metrics] + [f"labels/{a}" for a in layout.labels]

    def status_counts(self) -> dict[str, int]:
        """Number of items per status name (pending / done / failed)."""
        status = self.array("status")[: self.num_items]
        return {name: int((status == code).sum()) for code, name in STATUS_NAMES.items()}

    # ------------------------------------------------------------------ shards
    def shards(self) -> list[Shard]:
        """All shards, in order."""
        c, n = self.chunk_items, self.num_items
        return [Shard(i, i * c, min(n, (i + 1) * c)) for i in range(-(-n // c))]

    def shard(self, index: int) -> Shard:
        c, n = self.chunk_items, self.num_items
        if not 0 <= index * c < n:
            raise IndexError(f"shard {index} is out of range: the store has {-(-n // c)} shards")
        return Shard(index, index * c, min(n, (index + 1) * c))

    def _todo_mask(self, status: np.ndarray, attempts: np.ndarray | None, *, retry_failed: bool,
                   max_attempts: int | None) -> np.ndarray:
        todo = status == Status.PENDING
        if retry_failed:
            failed = status == Status.FAILED
            if max_attempts is not None:
                failed &= attempts < max_attempts
            todo |= failed
        return todo

    def todo_mask(self, *, retry_failed: bool = False, max_attempts: int | None = None) -> np.ndarray:
        """`[num_items]` bool: the items still to do (pending, or failed if retry_failed and attempts remain)."""
        n = self.num_items
        status = self.array("status")[:n]
        attempts = self.array("attempts")[:n] if retry_failed and max_attempts is not None else None
        return self._todo_mask(status, attempts, retry_failed=retry_failed, max_attempts=max_attempts)

    def pending_shards(self, *, retry_failed: bool = False, max_attempts: int | None = None,
                       todo: np.ndarray | None = None) -> list[Shard]:
        """Shards with at least one item to do (see `todo_mask`; pass `todo` when you already have it)."""
        todo = self.todo_mask(retry_failed=retry_failed, max_attempts=max_attempts) if todo is None else todo
        return [s for s in self.shards() if todo[s.start:s.stop].any()]

    def read_shard_inputs(self, shard: Shard, *, retry_failed: bool = False, max_attempts: int | None = None,
                          every_item: bool = False) -> ShardInputs:
        """The items of `shard` still to do (same rule as pending_shards), or all of them with `every_item`, with their
        ids, paths and attempts."""
        self._check_shard(shard)
        region = slice(shard.start, shard.stop)
        attempts = self.array("attempts")[region]
        if every_item:
            keep = np.arange(len(attempts))
        else:
            todo = self._todo_mask(self.array("status")[region], attempts, retry_failed=retry_failed,
                                   max_attempts=max_attempts)
            keep = np.flatnonzero(todo)
        ids, paths, shas = (self.array(name)[region] for name in ("image_id", "path", "source_sha256"))
        root = self.attributes.dataset.root
        return ShardInputs(shard=shard, indices=(shard.start + keep).astype(np.int64),
                           image_ids=tuple(str(ids[i]) for i in keep),
                           paths=tuple(resolve_item_path(root, str(paths[i])) for i in keep),
                           source_sha256=tuple(str(shas[i]) for i in keep), attempts=attempts[keep].copy())

    def _check_shard(self, shard: Shard) -> None:
        if shard != self.shard(shard.index):
            raise ValueError(f"{shard} is not a shard of this store (chunk_items={self.chunk_items}, "
                             f"num_items={self.num_items}); take shards from store.shards() or pending_shards()")

    # ------------------------------------------------------------------ writing shards
    def write_shard(self, inputs: ShardInputs | Shard, result: ShardResult) -> None:
        """Writes `result` for the items of `inputs`: all data arrays, then `attempts` (= snapshot + 1), then `status`.

        Passing a Shard instead of ShardInputs writes every item of the shard, with attempts read now. Only the
        process that owns the shard may call this; it never changes metadata or root attributes.
        """
        self._require_writable()
        if isinstance(inputs, Shard):
            inputs = self.read_shard_inputs(inputs, every_item=True)
        self._check_inputs(inputs)
        self._check_result(inputs, result)
        if self.run_id is not None:
            self._check_fence()
        if len(inputs) == 0:
            return
        region = _region(inputs.indices)
        attempts = np.minimum(inputs.attempts.astype(np.int64) + 1, MAX_ATTEMPTS_STORED).astype(np.uint8)
        writes = {**self._data_writes(result), "attempts": attempts}
        for name in writes:
            self.array(name)  # open in this thread; the writes below run in a thread pool, one array each
        pool = self._thread_pool()
        for future in [pool.submit(self._write, name, region, value) for name, value in writes.items()]:
            future.result()
        self._write("status", region, np.asarray(result.status, np.uint8))  # last: it vouches for the data above

    def _data_writes(self, result: ShardResult) -> dict[str, np.ndarray]:
        n, layout = len(result), self.layout
        writes = {"ws": np.asarray(result.ws, np.float32),
                  "error": np.asarray(list(result.error) if result.error is not None else [""] * n, dtype=str)}
        if layout.z_dim is not None:
            writes["z"] = np.asarray(result.z, np.float32)
        if layout.thumbnail_size is not None:
            writes["thumbnails"] = np.asarray(result.thumbnails, np.uint8)
        for name in layout.metrics:
            value = result.metrics.get(name)
            writes[f"metrics/{name}"] = np.full(n, np.nan, np.float32) if value is None else np.asarray(value,
                                                                                                       np.float32)
        return writes

    def _check_inputs(self, inputs: ShardInputs) -> None:
        self._check_shard(inputs.shard)
        idx = inputs.indices
        if len(idx) != len(inputs.attempts) or (len(idx) and (idx[0] < inputs.shard.start
                                                               or idx[-1] >= inputs.shard.stop
                                                               or (np.diff(idx) <= 0).any())):
            raise ValueError(f"ShardInputs of shard {inputs.shard.index} are inconsistent: indices must be ascending "
                             "within the shard; take them from store.read_shard_inputs")

    def _check_result(self, inputs: ShardInputs, result: ShardResult) -> None:
        n, layout = len(inputs), self.layout
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

    def _write(self, name: str, region: slice | np.ndarray, value: np.ndarray) -> None:
        array = self.array(name)
        if isinstance(region, slice):
            array[region] = value
        else:
            array.set_orthogonal_selection((region,) + (slice(None),) * (value.ndim - 1), value)

    def _thread_pool(self) -> ThreadPoolExecutor:
        """One pool per process, shared by all stores (a worker opens a store per task)."""
        global _POOL
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="latent-store")
        return _POOL

    def __reduce__(self) -> tuple:
        """Pickles as its URL and options (e.g. when Dask ships it): the copy reopens the store."""
        return (_reopen, (self.url, self.mode, self.run_id, self._storage_options))

    def _require_writable(self) -> None:
        if self.mode != "r+":
            raise PermissionError(f"{self.url} is open read-only: open it with LatentStore.open(url, 'r+')")

    # ------------------------------------------------------------------ checking
    def verify(self, *, repair: bool = False) -> VerifyReport:
        """Finds items marked done whose ws (or z) is missing or not finite, or whose image_id is empty, and arrays
        whose length differs from num_items (an interrupted append). repair=True marks the bad items pending again
        (coordinator only), so the next run redoes them."""
        problems = self._length_problems()  # also opens every array in this thread
        bad: list[int] = []
        reasons: list[str] = []
        for found in self._thread_pool().map(self._verify_shard, self.shards()):  # threads hide bucket latency
            for index, reason in found:
                bad.append(index)
                reasons.append(reason)
        if repair and bad:
            self._coordinator_check()
            indices = np.asarray(bad, np.int64)
            self._write("status", _region(indices), np.zeros(len(indices), np.uint8))
        return VerifyReport(num_items=self.num_items, counts=self.status_counts(), bad_items=tuple(bad),
                            reasons=tuple(reasons), problems=tuple(problems), repaired=repair and bool(bad))

    def _verify_shard(self, shard: Shard) -> list[tuple[int, str]]:
        """(index, reason) for the done items of one shard whose data is bad."""
        region = slice(shard.start, shard.stop)
        done = np.flatnonzero(self.array("status")[region] == Status.DONE)
        if done.size == 0:
            return []
        found: dict[int, str] = {}
        names = ["ws"] + ["z"] * (self.layout.z_dim is not None)
        for name in names:
            try:
                values = self.array(name)[region][done]
            except Exception as err:  # a corrupt or truncated chunk: every done item of the shard is suspect
                return [(shard.start + int(i), f"{name} chunk unreadable: {err!r}") for i in done]
            finite = np.isfinite(values.reshape(len(done), -1)).all(axis=1)
            for i in done[~finite]:
                found.setdefault(shard.start + int(i), f"{name} missing or not finite")
        ids = self.array("image_id")[region][done]
        for i in done[ids == ""]:
            found.setdefault(shard.start + int(i), "image_id empty")
        return sorted(found.items())

    def _length_problems(self) -> list[str]:
        problems = []
        for name in self._item_array_names():
            length = self.array(name).shape[0]
            if length != self.num_items:
                problems.append(f"{name} has {length} items, the store {self.num_items}: an append was interrupted, "
                                "run append again")
        return problems

    # ------------------------------------------------------------------ growth (coordinator)
    def append(self, manifest: Manifest) -> int:
        """Adds the manifest's items whose source_sha256 is new to the store (pending), and returns how many.

        Items whose content is already stored (or repeated earlier in the manifest) are skipped. A new file whose
        image_id is already used by other content is refused (ValueError): the store identifies items by content,
        so a changed file needs a new image_id. New label names get new label arrays (NaN for older items).
        A non-empty manifest root replaces dataset.root, so a moved dataset is followed. Coordinator only.
        """
        self._require_writable()
        self._coordinator_check()
        n_old = self.num_items
        self._trim_to(n_old)
        new = self._new_items(manifest)
        n = n_old + len(new)
        layout = self._grow_arrays(n_old, n, new)
        self._commit_dataset(manifest, layout=layout, n=n, added=len(new))
        self.consolidate()
        return len(new)

    def _new_items(self, manifest: Manifest) -> Manifest:
        n = self.num_items
        seen = set(map(str, self.array("source_sha256")[:n])) if n else set()
        used_ids = set(map(str, self.array("image_id")[:n])) if n else set()
        keep, clashes = [], []
        for i, item in enumerate(manifest.items):
            if item.source_sha256 in seen:
                continue
            if item.image_id in used_ids:
                clashes.append(item.image_id)
            seen.add(item.source_sha256)
            keep.append(i)
        if clashes:
            raise ValueError(f"{len(clashes)} new files reuse image_ids already in {self.url} with other content "
                             f"(e.g. {clashes[:3]}): an edited image needs a new image_id, or a new store")
        return manifest.subset(keep)

    def _trim_to(self, n: int) -> None:
        """Cuts arrays an interrupted append left longer than n back to n: the one place item arrays shrink. Refuses
        (StoreDamagedError) when `status` holds finished items past n: then n, from the root, is what is wrong."""
        status = self.array("status")
        if status.shape[0] > n:
            finished = int((np.asarray(status[n:]) != Status.PENDING).sum())
            if finished:
                raise StoreDamagedError(
                    f"store {self.url}: its root attributes say {n} items, but `status` holds {finished} finished "
                    f"items past item {n}: the root metadata is stale, and nothing was cut. Rebuild it from the "
                    f"store's own copy: `ganinv store-rebuild-root {self.url}`, or move the folder aside.")
        for name in self._item_array_names():
            array = self.array(name)
            if array.shape[0] != n:
                array.resize((n,) + array.shape[1:])

    def _grow_arrays(self, n_old: int, n: int, new: Manifest) -> Layout:
        labels = tuple(sorted(set(self.layout.labels) | set(new.label_names)))
        layout = dataclasses.replace(self.layout, labels=labels)
        for name in set(labels) - set(self.layout.labels):
            _create_item_array(self._group, f"labels/{name}", n=n_old, chunk_items=self.chunk_items,
                               dtype="float32", fill_value=np.nan, attrs={"long_name": f"label {name}"})
        self.attributes = dataclasses.replace(self.attributes, layout=layout)
        if n == n_old:
            return layout
        region = slice(n_old, n)
        boundary = slice(n_old, min(n, -(-n_old // self.chunk_items) * self.chunk_items))
        columns = {"image_id": [it.image_id for it in new.items], "path": [it.path for it in new.items],
                   "source_sha256": [it.source_sha256 for it in new.items],
                   **{f"labels/{a}": new.label_column(a) for a in labels}}
        for name in self._item_array_names():
            array = self.array(name)
            array.resize((n,) + array.shape[1:])
            if name in columns:
                array[region] = np.asarray(columns[name], dtype=array.dtype if name.startswith("labels/") else str)
            elif boundary.stop > boundary.start:  # the partly filled last chunk may hold leftovers of a crashed append
                array[boundary] = np.full((boundary.stop - boundary.start,) + array.shape[1:], array.fill_value,
                                          dtype=array.dtype)
        return layout

    def _commit_dataset(self, manifest: Manifest, *, layout: Layout, n: int, added: int) -> None:
        entry = {"at": _now_iso(), "manifest_hash": manifest.manifest_hash, "manifest_items": len(manifest),
                 "added": added, "root": manifest.root, "ganinv_version": ganinv_version}
        dataset = DatasetInfo(root=manifest.root or self.attributes.dataset.root,
                              manifest_hash=manifest.manifest_hash, num_items=n,
                              history=self.attributes.dataset.history + (entry,))
        self.attributes = dataclasses.replace(self.attributes, dataset=dataset, layout=layout)
        self._group.attrs.put(self.attributes.to_json())  # the commit point of create/append
        self._write_root_copy()

    def _write_root_copy(self) -> None:
        """A copy of the root attributes in `root_copy/zarr.json`, from which `rebuild_root` restores a lost root."""
        copy = self._group.require_group(ROOT_COPY_GROUP)
        copy.attrs.put({"long_name": "copy of the root attributes, rewritten after them (LatentStore.rebuild_root)",
                        ROOT_COPY_KEY: self.attributes.to_json()})

    @classmethod
    def rebuild_root(cls, url: str, *, storage_options: Mapping[str, Any] | None = None) -> LatentStore:
        """Writes a lost, unreadable or stale root `zarr.json` again from the store's copy of its attributes
        (`root_copy`), touching no array; the item count covers every item `status` has finished. Returns the store
        opened 'r+'. Refuses a store whose root is fine, and one without a copy (made before copies were kept).
        Stale: the root counts fewer items than `status` has finished (a root written over the store)."""
        fs, root = fsspec.core.url_to_fs(str(url), **dict(storage_options or {}))
        zstore = _open_zarr_store(str(url), read_only=False, storage_options=storage_options)
        try:
            status = np.asarray(zarr.open_array(zstore, path="status", mode="r")[:])
        except (FileNotFoundError, KeyError, ValueError, zarr.errors.ArrayNotFoundError) as err:
            raise StoreDamagedError(f"{url} has no readable `status` array ({err!r}): there is no latent store root to "
                                    "rebuild there; check the URL") from err
        finished = np.flatnonzero(status != Status.PENDING)
        try:
            counted = cls(str(url), mode="r", storage_options=storage_options).num_items
        except StoreDamagedError:
            counted = None
        if counted is not None and (finished.size == 0 or finished[-1] < counted):
            raise StoreExistsError(f"{url} has a readable root: nothing to rebuild (`ganinv store-verify {url}`)")
        attrs = _read_root_copy(zstore, str(url))
        num_items = max(attrs.dataset.num_items, int(finished[-1]) + 1 if finished.size else 0)
        entry = {"at": _now_iso(), "rebuilt_root": True, "num_items": num_items, "ganinv_version": ganinv_version}
        attrs = dataclasses.replace(attrs, dataset=dataclasses.replace(
            attrs.dataset, num_items=num_items, history=attrs.dataset.history + (entry,)))
        doc = {"zarr_format": 3, "node_type": "group", "attributes": attrs.to_json()}
        fs.pipe_file(f"{root.rstrip('/')}/zarr.json", json.dumps(doc, indent=2, allow_nan=True).encode())
        store = cls(str(url), mode="r+", storage_options=storage_options)
        store._write_root_copy()
        store.consolidate()
        return store

    # ------------------------------------------------------------------ downstream results (coordinator)
    def result_group(self, kind: str, name: str, *, made_by: Any, overwrite: bool = False) -> zarr.Group:
        """Creates `<kind>/<name>` (kind: 'directions' or 'edits') whose attributes say how it was made: `made_by`
        (method, config, inputs...; a dataclass or mapping, saved verbatim), created, ganinv_version and the store's
        manifest hash. Write arrays into it with dimension_names, then call `consolidate()`."""
        self._require_writable()
        _check_result_kind(kind)
        check_name(name, what=kind)
        made_by = to_jsonable(made_by)
        if not made_by:
            raise ValueError(f"{kind}/{name}: made_by must say how the result was made (method, config, inputs)")
        self._coordinator_check()
        attrs = {"created": _now_iso(), "ganinv_version": ganinv_version, "made_by": made_by,
                 "store_manifest_hash": self.attributes.dataset.manifest_hash, "store_num_items": self.num_items}
        return self._group.require_group(kind).create_group(name, overwrite=overwrite, attributes=attrs)

    def result_groups(self, kind: str) -> dict[str, dict[str, Any]]:
        """Name -> attributes of the result groups under `kind`."""
        _check_result_kind(kind)
        parent = self._group[kind]
        return {name: dict(child.attrs) for name, child in parent.groups()}

    @property
    def storage_options(self) -> dict[str, Any]:
        """The fsspec options this store was opened with (a copy), for reading its inputs and side files alike."""
        return dict(self._storage_options)

    def result_attrs(self, kind: str, name: str) -> dict[str, Any]:
        """The attributes of the result group `<kind>/<name>` (one group read, not a listing); KeyError if absent."""
        _check_result_kind(kind)
        return dict(self._group[f"{kind}/{name}"].attrs)

    def update_result_attrs(self, kind: str, name: str, **values: Any) -> dict[str, Any]:
        """Adds or replaces attributes of the result group `<kind>/<name>` (coordinator only: refused while another
        run holds the lease), e.g. an edit run's `evaluation` after rendering; returns all its attributes."""
        self._require_writable()
        _check_result_kind(kind)
        self._coordinator_check()
        group = self._group[f"{kind}/{name}"]
        group.attrs.update(values)
        return dict(group.attrs)

    def consolidate(self) -> None:
        """Rewrites consolidated metadata so `xarray.open_zarr(url)` opens without listing (coordinator only)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            zarr.consolidate_metadata(self._zstore, zarr_format=3)

    def write_scan_cache(self, entries: scan_cache.HashCache) -> int:
        """Replaces the scan's hash cache (input path -> (fingerprint, sha256); coordinator only: refused while
        another run holds the lease) and re-consolidates; returns the cache's size in bytes."""
        self._require_writable()
        self._coordinator_check()
        size = scan_cache.write_scan_cache(self._group, entries)
        self.consolidate()
        return size

    @staticmethod
    def read_scan_cache(url: str, *, storage_options: Mapping[str, Any] | None = None
                        ) -> tuple[dict[str, tuple[str, str]], str]:
        """(entries, note): the hash cache kept in the store at `url`, or no entries and why (no store or cache
        yet, or an unreadable one). Never raises: without a cache the scan hashes every file."""
        try:
            zstore = _open_zarr_store(url, read_only=True, storage_options=storage_options)
        except Exception as err:  # noqa: BLE001 - no cache is never an error
            return {}, f"scan cache unreadable ({type(err).__name__}: {err}); hashing every file"
        return scan_cache.read_scan_cache(zstore)

    # ------------------------------------------------------------------ reading
    def to_xarray(self, *, chunks: Any = None) -> "xarray.Dataset":  # noqa: F821
        """The store as an xarray Dataset backed by dask: ws (item, layer, channel), z, thumbnails, status, error,
        attempts, path, source_sha256, metric_<name> and label_<attr> (item); image_id is an indexed coordinate
        (`ds.sel(image_id="img001")`); root attributes as attrs. `chunks`: as for xarray.open_zarr (default: the store's chunks)."""
        import xarray as xr

        parts = [self.open_xarray_group(None, chunks=chunks)]
        for group, prefix in (("metrics", "metric_"), ("labels", "label_")):
            sub = self.open_xarray_group(group, chunks=chunks)
            parts.append(sub.rename({v: prefix + str(v) for v in sub.data_vars}))
        merged = xr.merge(parts, combine_attrs="override", join="exact", compat="no_conflicts").set_coords("image_id")
        layout = self.layout
        order = [n for n in ("ws", "z", "thumbnails", "status", "error", "attempts", "path", "source_sha256")
                 if n in merged]
        order += [f"metric_{m}" for m in layout.metrics] + [f"label_{a}" for a in layout.labels]
        image_id = merged.image_id.values.astype(object)  # small; an in-memory index makes sel(image_id=...) work
        return merged[order].assign_coords(image_id=("item", image_id)).set_xindex("image_id")

    def open_xarray_group(self, group: str | None = None, *, chunks: Any = None) -> "xarray.Dataset":  # noqa: F821
        """One group of the store (None: the root's arrays) as xarray.open_zarr gives it, dask-backed, without the
        merging and indexing of `to_xarray` (result groups such as an edit run read themselves through this)."""
        import xarray as xr

        return xr.open_zarr(self._zstore, group=group, consolidated=False, chunks={} if chunks is None else chunks)

    # ------------------------------------------------------------------ lease
    def acquire_lease(self, run_id: str, *, ttl_s: float = DEFAULT_LEASE_TTL_S, force: bool = False) -> Lease:
        """Takes the run lease (storage/lease.py) or raises LeaseHeldError naming the holder. Use as a context
        manager to renew it in the background and release it at the end."""
        self._require_writable()
        self._lease = acquire(self._lease_files, run_id, ttl_s=ttl_s, force=force)
        return self._lease

    def lease_holder(self) -> LeaseRecord | None:
        """The unexpired lease on this store, or None."""
        latest = self._lease_files.latest()
        return None if latest is None or latest.expired() else latest

    def break_lease(self) -> LeaseRecord | None:
        """Ends whatever lease is held (its holder gets LeaseLostError on renew) and returns it. Only for dead runs."""
        self._require_writable()
        held = self.lease_holder()
        acquire(self._lease_files, f"break-lease-{_now_iso()}", ttl_s=1.0, force=True).release()
        return held

    def _coordinator_check(self) -> None:
        """Coordinator operations refuse while another run holds the lease."""
        held = self.lease_holder()
        if held is not None and (self._lease is None or held.generation != self._lease.record.generation):
            raise LeaseHeldError(self._lease_files.held_message(held))

    def _check_fence(self) -> None:
        held = self.lease_holder()
        if held is not None and held.run_id != self.run_id:
            raise LeaseHeldError(f"worker of run {self.run_id!r} stops: " + self._lease_files.held_message(held))


# ---------------------------------------------------------------------- helpers
def _holds_files(fs: fsspec.AbstractFileSystem, root: str) -> bool:
    """Whether the location exists and holds anything (a folder, or objects under a bucket prefix)."""
    fs.invalidate_cache(root)
    try:
        return fs.isdir(root) and bool(fs.ls(root, detail=False))
    except FileNotFoundError:
        return False


def _root_missing_message(url: str, what: str) -> str:
    return (f"{url} holds a latent store's folders but its root metadata ({url.rstrip('/')}/zarr.json) {what}; "
            "nothing was changed. Rebuild the root from the copy the store keeps: "
            f"`ganinv store-rebuild-root {url}`; or move the folder aside (e.g. mv {url} {url}.damaged) and invert "
            "into a new store. Do not delete it: its arrays hold the latent codes.")


def _not_empty_message(url: str) -> str:
    return (f"{url} is not empty but holds no latent store root (zarr.json): a new store is created only in a new or "
            f"empty folder. If it is a store whose root was lost, rebuild it: `ganinv store-rebuild-root {url}`; "
            "otherwise choose another --store.")


def _read_root_copy(zstore: zarr.abc.store.Store, url: str) -> StoreAttributes:
    try:
        copy = dict(zarr.open_group(zstore, path=ROOT_COPY_GROUP, mode="r", zarr_format=3).attrs)
        return StoreAttributes.from_json(copy[ROOT_COPY_KEY])
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.GroupNotFoundError) as err:
        raise StoreDamagedError(
            f"cannot rebuild the root of {url}: it keeps no readable copy of its root attributes ({err!r}; stores "
            f"written before ganinv kept one have none). Move the folder aside (e.g. mv {url} {url}.damaged) and "
            "invert into a new store; its arrays stay readable with zarr.") from err


def _reopen(url: str, mode: str, run_id: str | None, storage_options: Mapping[str, Any]) -> LatentStore:
    return LatentStore(url, mode=mode, run_id=run_id, storage_options=storage_options)


def _as_generator(generator: GeneratorIdentity | Mapping) -> GeneratorIdentity:
    identity = generator if isinstance(generator, GeneratorIdentity) else GeneratorIdentity(**generator)
    if not identity.sha256:
        raise ValueError("generator.sha256 is empty: give the sha256 of the generator's weights file "
                         "(storage.schema.file_sha256)")
    return dataclasses.replace(identity, config=to_jsonable(dict(identity.config)))


def _check_create_args(manifest: Manifest, *, num_ws: int, w_dim: int, chunk_items: int, num_items: int | None,
                       z_dim: int | None, thumbnail_size: int | None, compressor: str) -> None:
    if not isinstance(manifest, Manifest):
        raise TypeError(f"manifest must be a storage.schema.Manifest (use Manifest.from_records), got "
                        f"{type(manifest).__name__}")
    if num_items is not None and num_items != len(manifest):
        raise ValueError(f"num_items={num_items} but the manifest has {len(manifest)} items")
    for name, value in (("num_ws", num_ws), ("w_dim", w_dim), ("chunk_items", chunk_items)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: must be a positive integer")
    for name, value in (("z_dim", z_dim), ("thumbnail_size", thumbnail_size)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}={value!r}: must be a positive integer or None")
    if compressor not in WS_COMPRESSORS:
        raise ValueError(f"compressor={compressor!r}: choose one of {sorted(WS_COMPRESSORS)}")


def _create_arrays(group: zarr.Group, attrs: StoreAttributes, *, compressor: str) -> None:
    layout, c = attrs.layout, attrs.chunking.chunk_items
    coord = {"coordinates": "image_id"}
    for name, long_name in (("image_id", "image id"), ("path", "input path relative to dataset.root"),
                            ("source_sha256", "sha256 of the input file")):
        _create_item_array(group, name, n=0, chunk_items=c, dtype=str, fill_value="",
                           attrs={"long_name": long_name, **({} if name == "image_id" else coord)})
    _create_item_array(group, "ws", n=0, chunk_items=c, dtype="float32", fill_value=np.nan,
                       inner=(layout.num_ws, layout.w_dim), dims=("item", "layer", "channel"),
                       compressors=WS_COMPRESSORS[compressor](), attrs={"long_name": "W+ latent codes", **coord})
    if layout.z_dim is not None:
        _create_item_array(group, "z", n=0, chunk_items=c, dtype="float32", fill_value=np.nan, inner=(layout.z_dim,),
                           dims=("item", "z_channel"), attrs={"long_name": "Z latent codes", **coord})
    if layout.thumbnail_size is not None:
        t = layout.thumbnail_size
        _create_item_array(group, "thumbnails", n=0, chunk_items=c, dtype="uint8", fill_value=0, inner=(t, t, 3),
                           dims=("item", "y", "x", "rgb"), attrs={"long_name": "reconstruction thumbnails", **coord})
    codes = sorted(STATUS_NAMES)
    _create_item_array(group, "status", n=0, chunk_items=c, dtype="uint8", fill_value=int(Status.PENDING),
                       attrs={"long_name": "inversion status", "flag_values": codes,
                              "flag_meanings": " ".join(STATUS_NAMES[k] for k in codes), **coord})
    _create_item_array(group, "error", n=0, chunk_items=c, dtype=str, fill_value="",
                       attrs={"long_name": "error message of failed items", **coord})
    _create_item_array(group, "attempts", n=0, chunk_items=c, dtype="uint8", fill_value=0,
                       attrs={"long_name": "executions that wrote a result for the item", **coord})
    metrics = group.create_group("metrics", attributes={"long_name": "per-item inversion metrics"})
    for name in layout.metrics:
        _create_item_array(metrics, name, n=0, chunk_items=c, dtype="float32", fill_value=np.nan,
                           attrs={"long_name": f"metric {name}"})
    group.create_group("labels", attributes={"long_name": "per-item labels from the dataset's attribute table"})
    for kind in RESULT_KINDS:
        group.create_group(kind, attributes={"long_name": f"downstream {kind}; each child says how it was made"})
    group.create_group("lease", attributes={"long_name": "run lease records, see storage/lease.py"})


def _create_item_array(group: zarr.Group, name: str, *, n: int, chunk_items: int, dtype: Any, fill_value: Any,
                       inner: tuple[int, ...] = (), dims: tuple[str, ...] = ("item",), compressors: Any = "auto",
                       attrs: Mapping[str, Any] | None = None) -> zarr.Array:
    return group.create_array(name, shape=(n,) + inner, chunks=(chunk_items,) + inner, dtype=dtype,
                              fill_value=fill_value, dimension_names=dims, compressors=compressors,
                              attributes=dict(attrs or {}))


def _region(indices: np.ndarray) -> slice | np.ndarray:
    """A slice when the indices are contiguous (the fast path: whole chunks, no read), else the index array."""
    if len(indices) and indices[-1] - indices[0] + 1 == len(indices):
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


def _check_result_kind(kind: str) -> None:
    if kind not in RESULT_KINDS:
        raise ValueError(f"kind={kind!r}: results are under one of {RESULT_KINDS}")


def resolve_item_path(root: str, path: str) -> str:
    """An item's stored path made absolute against the dataset root (paths and URLs that already are, unchanged)."""
    if not root or path.startswith("/") or "://" in path:
        return path
    return posixpath.join(root, path)


def _dict_diff(old: Any, new: Any, prefix: str = "") -> str:
    """'key: stored -> given' for the first few differing leaves of two JSON values."""
    diffs: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        elif a != b:
            diffs.append(f"{path or 'config'}: stored {a!r}, given {b!r}")

    walk(old, new, prefix)
    return "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
