"""Inverting one shard of a latent store on this worker, as a plain function a Dask task (or a test, or a benchmark)
calls: `run_shard(store_url, shard_index, generator=...)`.

It opens the store by URL, reads the inversion settings the store recorded (`runtime.spec.InversionSpec`) and the
items of the shard still to do, decodes their files, inverts them in batches (`ganinv.inversion.batch`) and writes
the whole shard back (data first, status last: docs/store.md). Nothing but the URL and the shard index comes in and
a small `ShardReport` goes out, so Prefect and Dask never move images or latents. Models come from the process's
cache (`runtime.models`); the flows run Dask workers with one thread each, so one shard runs per process at a time.

Determinism: every item's random stream is seeded from its image_id (`ganinv.utils.seeds.seed_from_id`), and the
numerics the store records (runtime/numerics.py) fix the thread count and, on CPU, invert every image on its own;
so an item's bytes do not depend on the worker count, the batch size or the shard it is in, and re-running a shard
(after a crash, on another worker, or twice at once) writes the same bytes (bitwise on CPU; on GPU a batch's codes
depend on the batch, and cuDNN may pick non-deterministic kernels unless `torch.use_deterministic_algorithms`).
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ganinv.datasets.folder import DecodePolicy, ImageDecodeError, decode_image
from ganinv.inversion.batch import BatchResult, invert_batch
from ganinv.item_metrics import CLOCKS
from ganinv.utils.compile_cache import use_compile_cache
from ganinv.utils.prefetch import prefetch as prefetch_batches
from ganinv.utils.seeds import seed_from_id
from runtime.config import AUTO, ExecutionOptions
from runtime.errors import ConfigError, WorkerSetupError
from runtime.models import Models, load_models, resolve_device
from runtime.numerics import BATCH_FREE, INDEPENDENT_ROWS, Numerics, for_worker
from runtime.restore import ShardRestoration, decode_policy
from runtime.spec import InversionSpec
from storage import LatentStore, Layout, ShardInputs, ShardResult, Status, refinements
from storage.scan import NotRegularFile, open_regular_file

DEFAULT_BATCH = {"cpu": 16, "cuda": 32}  # images per inversion call when batch_size is None
_AUTO_BATCHES: dict[tuple, int] = {}  # (generator, device, config) -> batch, probed once per worker process
EVENT_TOPIC = "ganinv.shard"  # Dask worker events: {'event': 'started' | 'finished', 'shard': i, 'pid': ...}
_MALLOC_TUNED = False


@dataclass(frozen=True)
class ShardReport:
    """What one shard task did: items it found to do, done and failed, timings (seconds: the whole task; load_s:
    loading models, ~0 once cached; decode_s: decoding the inversion did not hide; invert_s; write_s), the worker
    process and device. A shard that failed beyond its retries has only `shard` and `error`."""

    shard: int
    items: int = 0
    done: int = 0
    failed: int = 0
    pid: int | None = None
    seconds: float | None = None
    load_s: float | None = None
    decode_s: float | None = None
    invert_s: float | None = None
    write_s: float | None = None
    device: str | None = None
    error: str | None = None
    resumable: bool = True  # False: the error is one a rerun meets again (a UserError: settings, a damaged store)


def run_shard(store_url: str, shard_index: int, *, generator: str, run_id: str | None = None,
              retry_failed: bool = False, execution: ExecutionOptions = ExecutionOptions(),
              storage_options: Mapping[str, Any] | None = None) -> ShardReport:
    """Inverts the items of shard `shard_index` still to do (failed ones too with `retry_failed`) and writes them;
    returns counts and timings.

    `generator`: what `load_generator` accepts, reachable from this worker (its identity must be the store's).
    `run_id`: the run holding the store's lease (writes are refused if another run holds it). From `execution`:
    `batch_size` images per inversion call (None: `DEFAULT_BATCH` of the device; 'auto': as many as fit the GPU,
    probed once per worker, the CPU default elsewhere), `device`, `threads` (torch CPU threads), `prefetch` (decode,
    and on CUDA copy to the device, the next batch while this one is inverted; the results are the same either way).
    """
    t_start = time.perf_counter()
    prepare_worker(execution)
    store = LatentStore.open(store_url, "r+", run_id=run_id, storage_options=storage_options)
    numerics = for_worker(store, execution)  # sets the store's thread count; refuses a worker that computes otherwise
    spec = InversionSpec.from_record(store.attributes.inversion, thumbnail_size=store.layout.thumbnail_size)
    inputs = store.read_shard_inputs(store.shard(shard_index), retry_failed=retry_failed)
    if len(inputs) == 0:  # a re-run of a finished shard (Dask or Prefect retried it after it wrote)
        return ShardReport(shard=shard_index, pid=os.getpid(), seconds=time.perf_counter() - t_start)
    _emit({"event": "started", "shard": shard_index, "items": len(inputs), "pid": os.getpid()})
    t_models = time.perf_counter()
    models = load_models(generator, spec.encoder, resolve_device(execution.device))
    _check_identity(store, models, generator)
    t_invert = time.perf_counter()
    batch_size = worker_batch_size(models, spec, numerics, execution, generator=generator)
    stages = ShardStages(ShardRestoration.for_spec(spec, models.G.img_resolution, storage_options))
    # CPU: batches of independent rows where the store's numerics say so and the inversion is a plain one
    # (`invert_batch(independent_rows=...)`), else image by image; either way no byte depends on the batch.
    rows = numerics.batching == INDEPENDENT_ROWS and stages.restoration is None and spec.refine is None
    per_image = numerics.batching in BATCH_FREE and not rows
    chunks = decoded_chunks(inputs, decode_policy(spec, models.G.img_resolution), batch_size=batch_size,
                            device=models.device, prefetch=execution.prefetch, storage_options=storage_options,
                            precheck=stages.precheck)
    # Image by image, the decoded chunks keep the batch size (prefetch granularity).
    result, waited_s = invert_items(models, spec, inputs.image_ids, chunks, layout=store.layout,
                                    batch_size=1 if per_image else batch_size, stages=stages, independent_rows=rows)
    t_write = time.perf_counter()
    stages.write(store, inputs, result)  # the stages' per-item data first: write_shard marks the items done
    store.write_shard(inputs, result)
    t_end = time.perf_counter()
    done = int((result.status == Status.DONE).sum())
    report = ShardReport(shard=shard_index, items=len(inputs), done=done, failed=len(inputs) - done, pid=os.getpid(),
                         seconds=t_end - t_start, load_s=t_invert - t_models, decode_s=waited_s,
                         invert_s=t_write - t_invert - waited_s, write_s=t_end - t_write, device=str(models.device))
    _emit({"event": "finished", **{k: v for k, v in vars(report).items() if v is not None}})
    return report


def check_batch_size(batch_size: int | str | None) -> None:
    """None (the device's default), 'auto', or a positive number of images per inversion call."""
    if batch_size is None or batch_size == AUTO or (isinstance(batch_size, int) and batch_size >= 1):
        return
    raise ConfigError(f"batch_size must be a positive number of images, or {AUTO!r} for as many as fit each GPU, "
                      f"got {batch_size!r}")


def prepare_worker(execution: ExecutionOptions) -> None:
    """What every shard worker does first: refuse a bad batch size, tune malloc, point torch.compile at the cache."""
    check_batch_size(execution.batch_size)
    tune_malloc()
    if execution.compile_cache is not None:
        use_compile_cache(execution.compile_cache)


def worker_batch_size(models: Models, spec: InversionSpec, numerics: Numerics, execution: ExecutionOptions, *,
                      generator: str) -> int:
    """The images a worker decodes (and, unless its numerics are per image, computes) at once: the store's recorded
    batch size, or the one asked of the workers where the numerics make the codes independent of it."""
    asked = execution.batch_size if numerics.batching in BATCH_FREE else numerics.batch_size
    return resolve_batch_size(models, spec, asked, generator=generator)


def resolve_batch_size(models: Models, spec: InversionSpec, batch_size: int | str | None, *, generator: str) -> int:
    """`batch_size`, the device's default when None, or for 'auto' on CUDA the largest batch whose inversion steps
    fit 80 % of the free GPU memory (probed once per generator, device and config in this process)."""
    if batch_size is None or (batch_size == AUTO and models.device.type != "cuda"):
        return DEFAULT_BATCH[models.device.type]
    if batch_size != AUTO:
        return int(batch_size)
    key = (generator, str(models.device), json.dumps(spec.config.to_dict(), sort_keys=True))
    if key not in _AUTO_BATCHES:
        from ganinv.inversion import auto_batch_size

        _AUTO_BATCHES[key] = auto_batch_size(models.G, spec.config)
    return _AUTO_BATCHES[key]


def tune_malloc() -> bool:
    """Undo the cost of Dask's `MALLOC_TRIM_THRESHOLD_` for torch on CPU (once per process; True if applied).

    Dask nannies start workers with MALLOC_TRIM_THRESHOLD_=65536 so freed memory goes back to the OS quickly. Any
    explicit threshold also turns off glibc's dynamic mmap threshold, so every tensor above 128 KiB becomes a fresh
    mmap that page-faults on first touch: a faces64 inversion of 16 images x 20 steps took 34.9 s instead of 13.7 s
    on one CPU thread (measured, README.md). Raising the mmap threshold to glibc's maximum (32 MiB) and the trim
    threshold to 64 MiB keeps the pages in the heap; memory still returns to the OS beyond that.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to undo
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
    _MALLOC_TUNED = bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 64 << 20))
    return _MALLOC_TUNED


def _check_identity(store: LatentStore, models: Models, generator: str) -> None:
    expected = store.attributes.generator.sha256
    if models.identity != expected:
        raise WorkerSetupError(f"generator {generator!r} on this worker has identity {models.identity[:16]}..., the "
                               f"store {store.url} holds codes of {expected[:16]}...: every worker must see the same "
                               "generator file (shared storage or the same image)")


def decoded_chunks(inputs: ShardInputs, policy: DecodePolicy, *, batch_size: int, device: torch.device,
                   prefetch: bool, storage_options: Mapping[str, Any] | None = None,
                   precheck: Callable[[str], str | None] | None = None) -> Iterator[dict[str, Any]]:
    """The shard's items decoded `batch_size` at a time, in order (see `decode_chunk`). With `prefetch`, a background
    thread decodes the next chunk while the caller inverts this one (`ganinv.utils.prefetch`), and on CUDA copies it
    to the device from pinned memory on a side stream; without, each chunk is decoded when asked for."""
    chunks = [range(start, min(start + batch_size, len(inputs))) for start in range(0, len(inputs), batch_size)]
    load = functools.partial(decode_chunk, inputs, policy=policy, storage_options=storage_options, precheck=precheck)
    if not prefetch:
        return map(load, chunks)
    return prefetch_batches(chunks, load, device=device if device.type == "cuda" else None, depth=1)


def decode_chunk(inputs: ShardInputs, rows: Sequence[int], *, policy: DecodePolicy,
                 storage_options: Mapping[str, Any] | None = None,
                 precheck: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """Decodes the items `rows` of the shard: {'rows': the decodable ones, 'target': [len(rows), 3, R, R] of them or
    None, 'errors': {row: 'reason: detail'} of the others}. `precheck(image_id)`: why an item cannot be inverted
    before it is decoded (e.g. its mask is missing), or None."""
    good, targets, errors = [], [], {}
    for i in rows:
        refused = precheck(inputs.image_ids[i]) if precheck is not None else None
        if refused:
            errors[i] = refused
            continue
        try:
            targets.append(read_image(inputs.paths[i], policy, inputs.image_ids[i], storage_options))
            good.append(i)
        except ImageDecodeError as err:
            errors[i] = f"{err.reason}: {err.detail}"
    return {"rows": good, "target": torch.stack(targets) if targets else None, "errors": errors}


def read_image(path: str, policy: DecodePolicy, image_id: str, storage_options: Mapping[str, Any] | None
               ) -> torch.Tensor:
    """One input file (a path or fsspec URL) decoded by `policy`; ImageDecodeError names what is wrong."""
    if "://" not in path:  # a local file: only a regular one is opened (a FIFO put there since the scan would block)
        try:
            f = open_regular_file(path)
        except NotRegularFile as err:
            raise ImageDecodeError(image_id, "not a regular file", str(err)) from None
        except OSError as err:
            raise ImageDecodeError(image_id, "unreadable", f"{type(err).__name__}: {err.strerror or err}") from None
        with f:
            return decode_image(f, policy, name=image_id)
    import fsspec

    try:
        with fsspec.open(path, "rb", **dict(storage_options or {})) as f:
            return decode_image(f, policy, name=image_id)
    except (FileNotFoundError, PermissionError) as err:
        raise ImageDecodeError(image_id, "unreadable", f"{type(err).__name__}: {err}") from None


def invert_items(models: Models, spec: InversionSpec, image_ids: tuple[str, ...], chunks: Iterable[dict[str, Any]],
                 *, layout: Layout, batch_size: int, stages: ShardStages | None = None,
                 independent_rows: bool = False) -> tuple[ShardResult, float]:
    """Inverts the decodable items of `chunks` (from `decoded_chunks`) in consecutive batches of `batch_size`,
    whatever the chunks' sizes (1: each image on its own, so that its bytes depend on no other image;
    runtime/numerics.py; or, with `independent_rows`, any size: `invert_batch(independent_rows=True)`); items that
    failed to decode (or whose inversion is not finite) are marked failed with
    their reason. Returns (a ShardResult in the order of `image_ids`, seconds spent waiting for chunks)."""
    result = ShardResult.failed(len(image_ids), "", layout=layout)  # each batch fills in its items that succeed
    stages = stages or ShardStages()
    rows: list[int] = []
    pending: torch.Tensor | None = None  # the decoded targets of `rows`, not inverted yet
    waited = 0.0
    chunks = iter(chunks)
    while True:
        t0 = time.perf_counter()
        chunk = next(chunks, None)
        waited += time.perf_counter() - t0
        if chunk is None:
            break
        for i, reason in chunk["errors"].items():
            result.error[i] = reason
        if chunk["target"] is not None:
            rows += chunk["rows"]
            pending = chunk["target"] if pending is None else torch.cat([pending, chunk["target"]])
        while len(rows) >= batch_size:  # the batches a decode-everything-first loop would make
            _invert_rows(models, spec, image_ids, rows[:batch_size], pending[:batch_size], result, layout, stages,
                         independent_rows)
            rows, pending = rows[batch_size:], pending[batch_size:]
    if rows:
        _invert_rows(models, spec, image_ids, rows, pending, result, layout, stages, independent_rows)
    return result, waited


def _invert_rows(models: Models, spec: InversionSpec, image_ids: tuple[str, ...], rows: list[int],
                 target: torch.Tensor, result: ShardResult, layout: Layout, stages: ShardStages,
                 independent_rows: bool = False) -> None:
    """Inverts one batch (`target [len(rows), 3, R, R]`) and writes its items into the shard's `result`."""
    seeds = [seed_from_id(image_ids[i], spec.seed) for i in rows]
    batch = invert_batch(models.G, target, mode=spec.mode, config=spec.config, E=models.E, seeds=seeds,
                         thumbnail_size=layout.thumbnail_size, refine=spec.refine, independent_rows=independent_rows,
                         **stages.batch_kwargs([image_ids[i] for i in rows]))
    if independent_rows and len(rows) > 1:
        _check_rows_independent(models, spec, image_ids[rows[0]], target[:1], seeds[0], batch, layout)
    for k, i in enumerate(rows):
        if not np.isfinite(batch.ws[k]).all():
            result.error[i] = "diverged: the inverted latent is not finite"
            continue
        result.ws[i], result.status[i] = batch.ws[k], Status.DONE
        if result.thumbnails is not None:
            result.thumbnails[i] = batch.thumbnails[k]
        for name, values in result.metrics.items():
            values[i] = batch.metrics.get(name, np.full(len(rows), np.nan))[k]
        stages.keep(i, batch, k)


_ROWS_CHECKED: set[tuple[int, str, str]] = set()  # (G, mode, config) this process has checked


def _check_rows_independent(models: Models, spec: InversionSpec, image_id: str, target: torch.Tensor, seed: int,
                            batch: BatchResult, layout: Layout) -> None:
    """Once per process, generator and recipe: the batch's first image, inverted again beside a copy of itself, must
    give the bytes it got in the batch. tests/test_independent_rows.py measures that property of the CPU kernels on
    the machine the tests run on; kernels differ by instruction set and torch version, so each worker checks its
    own before a batch of rows reaches a store. WorkerSetupError when they differ: nothing of the shard is written."""
    key = (id(models.G), spec.mode, repr(spec.config))
    if key in _ROWS_CHECKED:
        return
    alone = invert_batch(models.G, target, mode=spec.mode, config=spec.config, E=models.E, seeds=[seed],
                         thumbnail_size=layout.thumbnail_size, independent_rows=True)
    same = np.array_equal(alone.ws[0], batch.ws[0]) and all(
        np.array_equal(alone.metrics[k][:1], batch.metrics[k][:1], equal_nan=True) for k in alone.metrics
        if k not in CLOCKS)
    if not same:
        raise WorkerSetupError(
            f"on this worker ({platform.machine()}, torch {torch.__version__}) image {image_id!r} inverted in a batch "
            "of independent rows got other bytes than inverted alone: this CPU's kernels do not keep a batch's rows "
            "independent, so the store's batch-free numerics (runtime/numerics.py) cannot be kept here. Invert with "
            "the machine kind that made the store, or make a new store with --threads 2 (image by image)")
    _ROWS_CHECKED.add(key)


@dataclass
class ShardStages:
    """What a shard's batches do beyond the inversion: restore through a degradation (runtime/restore.py) and keep
    each item's pivotal delta until the shard is written (`write`, before the items are marked done)."""

    restoration: ShardRestoration | None = None
    deltas: dict[int, np.ndarray] = field(default_factory=dict)
    pivot_thumbnails: dict[int, np.ndarray] = field(default_factory=dict)

    def precheck(self, image_id: str) -> str | None:
        return None if self.restoration is None else self.restoration.precheck(image_id)

    def batch_kwargs(self, image_ids: Sequence[str]) -> dict[str, Any]:
        return {} if self.restoration is None else self.restoration.batch_kwargs(image_ids)

    def keep(self, row: int, batch: BatchResult, k: int) -> None:
        if batch.deltas is not None:
            self.deltas[row] = batch.deltas[k]
            if batch.pivot_thumbnails is not None:
                self.pivot_thumbnails[row] = batch.pivot_thumbnails[k]

    def write(self, store: LatentStore, inputs: ShardInputs, result: ShardResult) -> None:
        rows = [i for i in range(len(inputs)) if result.status[i] == Status.DONE and i in self.deltas]
        if rows:
            thumbs = np.stack([self.pivot_thumbnails[i] for i in rows]) if self.pivot_thumbnails else None
            refinements.write_rows(store, inputs.indices[rows], np.stack([self.deltas[i] for i in rows]), thumbs)


def _emit(message: dict[str, Any]) -> None:
    """A Dask worker event (topic `EVENT_TOPIC`) when running inside a Dask worker; nothing otherwise."""
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(EVENT_TOPIC, {**message, "worker": worker.address})
