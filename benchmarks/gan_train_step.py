"""Time one embedded-world GAN training step per FIR-resampling implementation and batch size (GPU).

Usage: PYTHONPATH=$PWD python -m benchmarks.gan_train_step [--batches 64 256] [--steps 24] [--impls composite]
       [--compile both] [--json out.json]
Prints a markdown table: ms per step (mean over `--steps`, lazy regularisers amortised), images/s, and for compiled
rows the seconds spent before the first timed step (compilation).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

import ganinv.generators.layers as layers
from benchmarks.common import write_json
from ganinv.training.train_gan import GANTrainConfig, GANTrainer


def time_steps(impl: str, batch: int, steps: int, device: str, compile: bool = False) -> tuple[float, float]:
    """(mean seconds per step, seconds of warm-up before the timed steps)."""
    config = GANTrainConfig(data="unused", batch_size=batch)
    images = np.random.default_rng(0).integers(0, 255, [1024, 64, 64, 3], dtype=np.uint8)
    with layers.resample_impl(impl), tempfile.TemporaryDirectory() as tmp:
        trainer = GANTrainer(config, tmp, device=device, images=images, compile=compile)
        start = time.perf_counter()
        for _ in range(17):  # past one R1 step (every 16th) and several PL steps: every graph is built
            trainer.train_step()
        torch.cuda.synchronize()
        warmup = time.perf_counter() - start
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            trainer.train_step()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    # Lazy regularisers run every 4th (PL) / 16th (R1) step: the mean includes them, the median would not.
    return statistics.fmean(times), warmup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--impls", nargs="+", default=list(layers.RESAMPLE_IMPLS), choices=layers.RESAMPLE_IMPLS)
    parser.add_argument("--compile", choices=("no", "yes", "both"), default="no")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as train_gan sets them
    compiles = {"no": [False], "yes": [True], "both": [False, True]}[args.compile]
    rows = []
    for batch in args.batches:
        for impl in args.impls:
            for compile in compiles:
                seconds, warmup = time_steps(impl, batch, args.steps, "cuda", compile)
                rows.append(dict(impl=impl, batch=batch, compile=compile, ms_per_step=round(seconds * 1e3, 2),
                                 img_per_s=round(batch / seconds, 1), warmup_s=round(warmup, 1)))
                print(rows[-1], flush=True)
    print(f"\n{torch.cuda.get_device_name()} | torch {torch.__version__}\n")
    print("| resample impl | batch | compiled | ms / step | images / s | warm-up s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['impl']} | {r['batch']} | {r['compile']} | {r['ms_per_step']} | {r['img_per_s']} | "
              f"{r['warmup_s']} |")
    write_json(args.json, rows, indent=1)


if __name__ == "__main__":
    main()
