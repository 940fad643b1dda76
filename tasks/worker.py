"""Inverting one shard of a latent store, as a plain function a Dask worker (or a test, or a benchmark) calls.

`run_shard(store_url, shard_index, spec)` opens the store by URL, reads which items of the shard are still to do,
decodes their files, inverts them in batches, and writes the whole shard back (data first, status last, see
`storage.latent_store`). Nothing but the URL, the shard index and a small spec dict comes in, and a small dict of
counts and timings goes out, so Prefect and Dask never move images or latents.

Per worker process, the generator and the encoder are loaded once and cached (`tasks.models.load_models`, the
process's one model cache, shared with the edit tasks), keyed by their source and device, and so are the losses;
the flows run Dask workers with one thread each, so one shard runs per process at a time.

Determinism: every item's random stream is seeded from its image_id (`ganinv.utils.seeds.seed_from_id`), batches
are consecutive runs of the shard's pending items, and a shard is written in one piece; so re-running a shard
(after a crash, on another worker, or twice at once) writes the same bytes on the same device and thread count
(bitwise on CPU; on GPU up to cuDNN's non-deterministic kernels unless `torch.use_deterministic_algorithms`).
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganinv.datasets.folder import DecodePolicy, ImageDecodeError, decode_image
from ganinv.inversion import encode, hybrid, invert
from ganinv.losses.registry import PIXEL_LOSSES, build_loss, parse_loss_spec
from ganinv.metrics.reconstruction import reconstruction_metrics
from ganinv.utils.images import to_uint8
from ganinv.utils.prefetch import prefetch as prefetch_batches
from ganinv.utils.seeds import seed_from_id
from storage import LatentStore, ShardInputs, ShardResult, Status
from tasks.models import (Models, WorkerSetupError, cached_model_keys, load_models,  # noqa: F401 - the worker API
                          resolve_device)
from tasks.spec import InversionSpec

DEFAULT_BATCH = {"cpu": 16, "cuda": 32}
AUTO_BATCH = 0  # batch_size=AUTO_BATCH: as many images as fit the GPU (`ganinv.inversion.auto_batch_size`)
_AUTO_BATCHES: dict[tuple, int] = {}  # (generator, device, config) -> batch, probed once per worker process
EVENT_TOPIC = "ganinv.shard"  # Dask worker events: {'event': 'started' | 'finished', 'shard': i, 'pid': ...}
_MALLOC_TUNED = False


def metric_names(loss: str) -> tuple[str, ...]:
    """The per-item metrics a store gets: mse, psnr, ssim, the loss's perceptual terms, final_loss, steps, seconds.
    A perceptual metric is named after what it is (`clf-perceptual` is not LPIPS and is never called so)."""
    perceptual = [name for _, name in parse_loss_spec(loss) if name not in PIXEL_LOSSES]
    return ("mse", "psnr", "ssim", *dict.fromkeys(perceptual), "final_loss", "steps", "seconds")


def run_shard(store_url: str, shard_index: int, spec: Mapping[str, Any] | InversionSpec, *, generator: str,
              run_id: str | None = None, retry_failed: bool = False, batch_size: int | None = None,
              device: str = "auto", threads: int | None = None, prefetch: bool = True,
              storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Inverts the items of shard `shard_index` still to do and writes them; returns counts and timings.

    `spec`: an InversionSpec (or its `to_dict()`); `generator`: what `load_generator` accepts, reachable from this
    worker. `run_id`: the run holding the store's lease (writes are refused if another run holds it).
    `batch_size`: images per inversion call (default 16 on CPU, 32 on CUDA; `AUTO_BATCH` = 0: as many as fit the
    GPU, probed once per worker, the CPU default elsewhere); `threads`: torch CPU threads.
    `prefetch`: decode (and on CUDA, copy to the device) the next batch while this one is inverted; the results are
    the same either way. In the report, `decode_s` is the decoding time the inversion did not hide.
    """
    t_start = time.perf_counter()
    spec = spec if isinstance(spec, InversionSpec) else InversionSpec.from_dict(spec)
    tune_malloc()
    if threads:
        torch.set_num_threads(int(threads))
    store = LatentStore.open(store_url, "r+", run_id=run_id, storage_options=storage_options)
    inputs = store.read_shard_inputs(store.shard(shard_index), retry_failed=retry_failed)
    report = {"shard": shard_index, "items": len(inputs), "done": 0, "failed": 0, "pid": os.getpid()}
    if len(inputs) == 0:  # a re-run of a finished shard (Dask or Prefect retried it after it wrote)
        return {**report, "seconds": time.perf_counter() - t_start}
    _emit({"event": "started", "shard": shard_index, "items": len(inputs), "pid": os.getpid()})
    t_models = time.perf_counter()
    models = load_models(generator, spec.encoder, resolve_device(device))
    _check_identity(store, models, generator)
    t_invert = time.perf_counter()
    batch_size = resolve_batch_size(models, spec, batch_size, generator=generator)
    chunks = decoded_chunks(inputs, spec.decode_policy(models.G.img_resolution), batch_size=batch_size,
                            device=models.device, prefetch=prefetch, storage_options=storage_options)
    result, waited_s = invert_items(models, spec, inputs.image_ids, chunks, layout=store.layout, batch_size=batch_size)
    t_write = time.perf_counter()
    store.write_shard(inputs, result)
    t_end = time.perf_counter()
    done = int((result.status == Status.DONE).sum())
    report.update(done=done, failed=len(inputs) - done, seconds=t_end - t_start, load_s=t_invert - t_models,
                  decode_s=waited_s, invert_s=t_write - t_invert - waited_s, write_s=t_end - t_write,
                  device=str(models.device))
    _emit({"event": "finished", **report})
    return report


def check_batch_size(batch_size: int | None) -> None:
    """None (the device's default), `AUTO_BATCH`, or a positive number of images per inversion call."""
    if batch_size is not None and batch_size < 0:
        raise ValueError(f"batch_size must be >= 1, or {AUTO_BATCH} for as many images as fit each GPU, "
                         f"got {batch_size}")


def resolve_batch_size(models: Models, spec: InversionSpec, batch_size: int | None, *, generator: str) -> int:
    """`batch_size`, the device's default when None, or for `AUTO_BATCH` on CUDA the largest batch whose inversion
    steps fit 80 % of the free GPU memory (probed once per generator, device and config in this process)."""
    if batch_size is None or (batch_size == AUTO_BATCH and models.device.type != "cuda"):
        return DEFAULT_BATCH[models.device.type]
    check_batch_size(batch_size)
    if batch_size != AUTO_BATCH:
        return batch_size
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
                   prefetch: bool = True, storage_options: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """The shard's items decoded `batch_size` at a time, in order (see `decode_chunk`). With `prefetch`, a background
    thread decodes the next chunk while the caller inverts this one (`ganinv.utils.prefetch`), and on CUDA copies it
    to the device from pinned memory on a side stream; without, each chunk is decoded when asked for."""
    chunks = [range(start, min(start + batch_size, len(inputs))) for start in range(0, len(inputs), batch_size)]
    load = functools.partial(decode_chunk, inputs, policy=policy, storage_options=storage_options)
    if not prefetch:
        return map(load, chunks)
    return prefetch_batches(chunks, load, device=device if device.type == "cuda" else None, depth=1)


def decode_chunk(inputs: ShardInputs, rows: Sequence[int], *, policy: DecodePolicy,
                 storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Decodes the items `rows` of the shard: {'rows': the decodable ones, 'target': [len(rows), 3, R, R] of them or
    None, 'errors': {row: 'reason: detail'} of the others}."""
    good, targets, errors = [], [], {}
    for i in rows:
        try:
            targets.append(_decode_one(inputs.paths[i], policy, inputs.image_ids[i], storage_options))
            good.append(i)
        except ImageDecodeError as err:
            errors[i] = f"{err.reason}: {err.detail}"
    return {"rows": good, "target": torch.stack(targets) if targets else None, "errors": errors}


def _decode_one(path: str, policy: DecodePolicy, image_id: str, storage_options: Mapping[str, Any] | None
                ) -> torch.Tensor:
    if "://" not in path:
        return decode_image(path, policy, name=image_id)
    import fsspec

    try:
        with fsspec.open(path, "rb", **dict(storage_options or {})) as f:
            return decode_image(f, policy, name=image_id)
    except (FileNotFoundError, PermissionError) as err:
        raise ImageDecodeError(image_id, "unreadable", f"{type(err).__name__}: {err}") from None


def invert_items(models: Models, spec: InversionSpec, image_ids: tuple[str, ...], chunks: Iterable[dict[str, Any]],
                 *, layout: Any, batch_size: int) -> tuple[ShardResult, float]:
    """Inverts the decodable items of `chunks` (from `decoded_chunks`) in consecutive batches of `batch_size`,
    whatever the chunks' sizes; items that failed to decode (or whose inversion is not finite) are marked failed with
    their reason. Returns (a ShardResult in the order of `image_ids`, seconds spent waiting for chunks)."""
    result = ShardResult.failed(len(image_ids), "", layout=layout)  # each batch fills in its items that succeed
    rows: list[int] = []
    parts: list[torch.Tensor] = []
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
            rows, parts = rows + list(chunk["rows"]), parts + [chunk["target"]]
        while len(rows) >= batch_size:  # the batches a decode-everything-first loop would make
            target = torch.cat(parts)
            _invert_rows(models, spec, image_ids, rows[:batch_size], target[:batch_size], result, layout)
            rows, parts = rows[batch_size:], [target[batch_size:]]
    if rows:
        _invert_rows(models, spec, image_ids, rows, torch.cat(parts), result, layout)
    return result, waited


def _invert_rows(models: Models, spec: InversionSpec, image_ids: tuple[str, ...], rows: list[int],
                 target: torch.Tensor, result: ShardResult, layout: Any) -> None:
    """Inverts one batch (`target [len(rows), 3, R, R]`) and writes its items into the shard's `result`."""
    batch = invert_batch(models, spec, target, [seed_from_id(image_ids[i], spec.seed) for i in rows],
                         layout.thumbnail_size)
    for k, i in enumerate(rows):
        if not np.isfinite(batch["ws"][k]).all():
            result.error[i] = "diverged: the inverted latent is not finite"
            continue
        result.ws[i], result.status[i] = batch["ws"][k], Status.DONE
        if result.thumbnails is not None:
            result.thumbnails[i] = batch["thumbnails"][k]
        for name, values in result.metrics.items():
            values[i] = batch["metrics"].get(name, np.full(len(rows), np.nan))[k]


def invert_batch(models: Models, spec: InversionSpec, target: torch.Tensor, seeds: list[int],
                 thumbnail_size: int | None) -> dict[str, Any]:
    """`target [n, 3, R, R]` -> {'ws' [n, num_ws, w_dim] float32, 'metrics' {name: [n]}, 'thumbnails' [n, t, t, 3]}."""
    assert target.ndim == 4, f"target must be [n, 3, R, R], got {list(target.shape)}"
    G, device, cfg = models.G, models.device, spec.config
    target = target.to(device)
    t0 = time.perf_counter()
    if spec.mode == "encoder":
        ws, steps, result = encode(models.E, target), 0, None
    else:
        run = hybrid if spec.mode == "hybrid" else invert
        args = (G, models.E, target) if spec.mode == "hybrid" else (G, target)
        result = run(*args, cfg, seed=seeds)
        ws, steps = result.ws, cfg.num_steps
    if result is not None and not cfg.optimize_noise:
        images, final_loss, metrics = result.images, result.losses, result.metrics
    else:  # what the stored codes reproduce on their own (const noise), not the optimised noise maps they lack
        images, final_loss, metrics = _evaluate(G, ws, target, cfg.loss)
    seconds = (time.perf_counter() - t0) / len(seeds)
    out = {name: value.float().cpu().numpy() for name, value in metrics.items()}
    out.update(final_loss=final_loss.float().cpu().numpy(), steps=np.full(len(seeds), steps, np.float32),
               seconds=np.full(len(seeds), seconds, np.float32))
    batch = {"ws": ws.float().cpu().numpy(), "metrics": out}
    if thumbnail_size:
        small = F.interpolate(images.detach().clamp(-1, 1), size=(thumbnail_size, thumbnail_size), mode="area")
        batch["thumbnails"] = to_uint8(small).permute(0, 2, 3, 1).numpy()
    return batch


@torch.no_grad()
def _evaluate(G: nn.Module, ws: torch.Tensor, target: torch.Tensor, loss_spec: str
              ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(images, loss [n], metrics) of `ws` rendered with the generator's const noise, as `invert` reports them."""
    images = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    loss = build_loss(loss_spec, device=target.device)
    return images, loss(images, loss.prepare(target)), reconstruction_metrics(images, target,
                                                                              perceptual=loss.perceptual_terms())


def _emit(message: dict[str, Any]) -> None:
    """A Dask worker event (topic `EVENT_TOPIC`) when running inside a Dask worker; nothing otherwise."""
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(EVENT_TOPIC, {**message, "worker": worker.address})
