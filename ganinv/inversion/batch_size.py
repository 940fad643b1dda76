"""How many images to invert at once: probe the engine's peak GPU memory at two small batches, fit a line
(`peak = fixed + per_image * batch`: every tensor of the step is per image, except the networks and workspaces) and
take the largest batch whose predicted peak fits a fraction of the free memory.

Throughput grows with the batch until the GPU is full (`BENCHMARKS.md`), and an out-of-memory error halfway through a
shard wastes it, so workers ask `auto_batch_size` once per (generator, config) and keep the answer.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import nn

from ganinv.inversion.optimize import InversionConfig, build_problem, projector_w_stats
from ganinv.losses.base import ImageLoss
from ganinv.losses.registry import build_loss

PROBE_BATCHES = (4, 8)
PROBE_STEPS = 2  # the second step allocates Adam's moments


def fit_batch_size(peaks: dict[int, int], available_bytes: float, *, max_batch: int, multiple_of: int = 8) -> int:
    """The largest batch (at most `max_batch`, rounded down to a multiple of `multiple_of` when at least that) whose
    peak, extrapolated linearly from `peaks` ({batch: peak bytes}, two or more batches), fits `available_bytes`."""
    assert len(peaks) >= 2, "need peaks at two batch sizes to fit a line"
    (b0, p0), (b1, p1) = sorted(peaks.items())[0], sorted(peaks.items())[-1]
    per_image = (p1 - p0) / (b1 - b0)
    if per_image <= 0:  # nothing grew with the batch: memory is not what limits it
        return max_batch
    fixed = max(p0 - b0 * per_image, 0.0)
    batch = int((available_bytes - fixed) // per_image)
    if batch >= multiple_of:
        batch -= batch % multiple_of
    return max(1, min(batch, max_batch))


def _probe_peak(G: nn.Module, config: InversionConfig, loss_fn: ImageLoss | None, batch: int) -> int:
    """Peak bytes allocated above the current level during `PROBE_STEPS` steps on `batch` random targets, run as the
    inversion will run them (compiled regionally with `config.compile`: its graphs take any batch size, so the probes
    cost no extra compilation and see the compiled step's memory, about half the eager one's), CUDA graphs aside."""
    device = next(G.parameters()).device
    res = G.img_resolution
    target = torch.rand([batch, G.img_channels, res, res], generator=torch.Generator().manual_seed(0)) * 2 - 1
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    problem = build_problem(G, target, config, loss_fn=loss_fn, num_steps=PROBE_STEPS, history_every=1,
                            cuda_graph=False)
    try:
        for step in range(PROBE_STEPS):
            problem.step(step)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    finally:
        problem.close()


def _available_bytes(device: torch.device) -> int:
    """Free device memory plus what this process's caching allocator holds but does not use."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def auto_batch_size(G: nn.Module, config: InversionConfig | None = None, *, loss_fn: ImageLoss | None = None,
                    max_batch: int = 256, memory_fraction: float = 0.8, cpu_default: int = 16,
                    probe_batches: Sequence[int] = PROBE_BATCHES, **overrides) -> int:
    """The batch size to invert with on `G`'s device under `config` (+ `overrides`, as for `invert`).

    CUDA: probes two steps at `probe_batches` in the inversion's own execution (eager, or regionally compiled; a
    captured step uses about as much memory; the margin `1 - memory_fraction` covers that and cuDNN workspaces),
    extrapolates to `memory_fraction` of the free memory,
    then runs the same two steps at the answer and shrinks it by a quarter until they fit: the line is only a model
    (on an H100, config-f 256 px fp32 extrapolated from batches 4 and 8 to 256, which ran out of memory at 128, as
    cuDNN's large-batch algorithms take workspaces that small probes never see). Other devices: `cpu_default`.
    Always between 1 and `max_batch`.
    """
    config = dataclasses.replace(config or InversionConfig(), **overrides)
    device = next(G.parameters()).device
    if device.type != "cuda":
        return max(1, min(cpu_default, max_batch))
    probes = sorted(set(probe_batches))
    if len(probes) < 2 or probes[0] < 1:
        raise ValueError(f"probe_batches must hold two or more batch sizes >= 1, got {list(probe_batches)}")
    # Build what is cached per process first, so that only per-image memory differs between the probes.
    loss_fn = loss_fn if loss_fn is not None else build_loss(config.loss, device=device)
    projector_w_stats(G, config.w_avg_samples)
    while True:
        try:
            peaks = {b: _probe_peak(G, config, loss_fn, b) for b in probes}
            break
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if probes[0] == 1:
                raise
            probes = sorted({max(1, b // 2) for b in probes}) if probes[-1] > 2 else [1, 2]
    torch.cuda.empty_cache()
    batch = fit_batch_size(peaks, _available_bytes(device) * memory_fraction, max_batch=max_batch)
    return _largest_that_runs(G, config, loss_fn, batch, floor=probes[-1])


def _largest_that_runs(G: nn.Module, config: InversionConfig, loss_fn: ImageLoss, batch: int, *, floor: int) -> int:
    """`batch`, or the first of `batch * 3/4`, `batch * 9/16`, ... (not below `floor`, which already ran) whose probe
    steps fit."""
    while batch > floor:
        try:
            _probe_peak(G, config, loss_fn, batch)
            return batch
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            batch = max(floor, batch * 3 // 4)
        finally:
            torch.cuda.empty_cache()
    return batch
