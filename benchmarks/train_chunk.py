"""One resumable chunk of the embedded world's GAN training on a lent GPU, with what must come back from it.

GPU time comes in slots of about 30 minutes and the machine may not come back, so the run's state lives in the
repository: `--run-dir` (e.g. `training/faces64/`) holds the compact checkpoint (<= 25 MB, replaced chunk after
chunk), `log.jsonl` and `config.json`. This script resumes it, trains for `--minutes`, and copies into `--out` the
files to commit (checkpoint shards, checkpoint.json, log, config) plus a sample grid of G_ema (64 seeds, psi 1).

Usage (on the device): python3 -m benchmarks.train_chunk --run-dir training/faces64 --minutes 7 --compile --out $OUT
Back here: copy $OUT/checkpoint-* into training/faces64/checkpoint/, $OUT/log.jsonl and config.json beside it
(`--install FROM` does exactly that), then commit.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import time
from pathlib import Path

import torch

import ganinv.generators.layers as layers
from benchmarks.common import export_run, install_run
from ganinv.training.train_gan import GANTrainConfig, train_gan
from ganinv.utils.images import save_image_grid

RUN_FILES = ("log.jsonl", "config.json")


@torch.no_grad()
def sample_grid(G: torch.nn.Module, path: Path, *, n: int = 64, seed: int = 0) -> None:
    """An 8x8 grid of G_ema samples (z from `seed`, psi 1, const noise) as PNG."""
    device = next(G.parameters()).device
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
    save_image_grid(G.synthesis(G.mapping(z, None), noise_mode="const").cpu(), path)


def new_run_config(settings: list[str]) -> GANTrainConfig:
    """`GANTrainConfig` with `KEY=VALUE` overrides, each value a Python literal (`2`, `0.002`, `False`, `None`,
    `(0, 0.99)`) or else a string (`procedural:100000:0`); used only when the run is created (a resumed run keeps its
    checkpoint's config)."""
    fields = {f.name for f in dataclasses.fields(GANTrainConfig)}
    changes = {}
    for item in settings:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--set {item}: {key!r} is not a GANTrainConfig field")
        try:
            changes[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            changes[key] = value
    return dataclasses.replace(GANTrainConfig(), **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config of a new run (e.g. mapping_layers=2); ignored when resuming")
    parser.add_argument("--resample-impl", default="composite")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--install", type=Path, help="copy a chunk's returned files into --run-dir and exit")
    args = parser.parse_args()
    if args.install:
        install_run(args.install, args.run_dir, files=RUN_FILES)
        return
    start = time.time()
    with layers.resample_impl(args.resample_impl):
        try:
            trainer = train_gan(args.run_dir, minutes=args.minutes, batch_size=args.batch_size, compile=args.compile,
                                config=new_run_config(args.set))
        except Exception as err:  # noqa: BLE001 - a compiler failure must not cost the chunk: train eagerly
            if not args.compile:
                raise
            print(f"compiled training failed ({type(err).__name__}: {err}); continuing eagerly", flush=True)
            left = max(1.0, args.minutes - (time.time() - start) / 60)
            trainer = train_gan(args.run_dir, minutes=left, batch_size=args.batch_size, config=new_run_config(args.set))
    print(f"chunk: {trainer.images_seen / 1000:.1f} kimg, {trainer.train_seconds / 60:.1f} train min in all, "
          f"{time.time() - start:.0f} s wall", flush=True)
    if args.out:
        files = export_run(args.run_dir, args.out, files=RUN_FILES)
        sample_grid(trainer.G_ema.eval(), args.out / "samples.png")  # what the checkpoint holds (training continues
        # from the rounded state it saved), without reading it back
        print("exported", [f.name for f in files], flush=True)


if __name__ == "__main__":
    main()
