"""One resumable chunk of the embedded world's GAN training on a lent GPU, with what must come back from it.

GPU time comes in slots of about 30 minutes and the machine may not come back, so the run's state lives in the
repository: `--run-dir` (e.g. `training/faces64/`) holds the compact checkpoint (<= 25 MB, replaced chunk after
chunk), `log.jsonl` and `config.json`. This script resumes it, trains for `--minutes` (or until the wall-clock time
`--until`: gpu/chunk.sh's STOP), and copies into `--out` the files to commit (checkpoint shards, checkpoint.json, log,
config) plus a sample grid of G_ema (64 seeds, psi 1).

Usage (on the device): python3 -m benchmarks.train_chunk --run-dir training/faces64 --minutes 7 --compile --out $OUT
A chunk may switch the linear-attribute regulariser on (or retune it) for a resumed run, e.g.
    --set classifier=builtin --set linearity_weight=1 --set "correlated_pairs=(('eyeglasses', 'blond_hair'),)"
any other `--set` must match the checkpoint's config (RESUMABLE_FIELDS says which fields may change).
Back here: copy $OUT/checkpoint-* into training/faces64/checkpoint/, $OUT/log.jsonl and config.json beside it
(`--install FROM` does exactly that), then commit.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

import ganinv.generators.layers as layers
from benchmarks.common import export_run, install_run
from ganinv.training.train_gan import RESUMABLE_FIELDS, GANTrainConfig, parse_settings, run_config, train_gan
from ganinv.utils.images import save_image_grid

RUN_FILES = ("log.jsonl", "config.json")


@torch.no_grad()
def sample_grid(G: torch.nn.Module, path: Path, *, n: int = 64, seed: int = 0) -> None:
    """An 8x8 grid of G_ema samples (z from `seed`, psi 1, const noise) as PNG."""
    device = next(G.parameters()).device
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
    save_image_grid(G.synthesis(G.mapping(z, None), noise_mode="const").cpu(), path)


def chunk_config(run_dir: Path, changes: dict[str, Any], *, batch_size: int | None = None) -> GANTrainConfig:
    """The config this chunk trains with: a new run's `GANTrainConfig` with the `--set` changes, or a resumed run's
    checkpoint config with them, where only `RESUMABLE_FIELDS` may differ (SystemExit naming the others)."""
    try:
        return run_config(run_dir, changes=changes, batch_size=batch_size)
    except ValueError as err:
        raise SystemExit(f"--set: {err}. A resumed run may change only {', '.join(sorted(RESUMABLE_FIELDS))}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--minutes", type=float, help="training minutes (from the end of the set-up)")
    parser.add_argument("--until", type=float, help="or: stop training at this wall-clock time (seconds since the "
                        "epoch), however long the set-up took, so the chunk ends inside its call")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config of a new run (e.g. mapping_layers=2); a resumed run takes only the "
                             "RESUMABLE_FIELDS (batch size, linear-attribute regulariser) and refuses other changes")
    parser.add_argument("--resample-impl", default="composite")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--install", type=Path, help="copy a chunk's returned files into --run-dir and exit")
    args = parser.parse_args()
    if args.install:
        install_run(args.install, args.run_dir, files=RUN_FILES)
        return
    if (args.minutes is None) == (args.until is None):
        raise SystemExit("give --minutes or --until (one of them)")
    start = time.time()
    try:
        changes = parse_settings(args.set)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    print("config:", chunk_config(args.run_dir, changes, batch_size=args.batch_size), flush=True)  # refused here
    with layers.resample_impl(args.resample_impl):
        try:
            trainer = train_gan(args.run_dir, minutes=args.minutes, until=args.until, batch_size=args.batch_size,
                                changes=changes, compile=args.compile)
        except Exception as err:  # noqa: BLE001 - a compiler failure must not cost the chunk: train eagerly
            if not args.compile:
                raise
            print(f"compiled training failed ({type(err).__name__}: {err}); continuing eagerly", flush=True)
            left = None if args.until is not None else max(1.0, args.minutes - (time.time() - start) / 60)
            trainer = train_gan(args.run_dir, minutes=left, until=args.until, batch_size=args.batch_size,
                                changes=changes)
    print(f"chunk: {trainer.images_seen / 1000:.1f} kimg, {trainer.train_seconds / 60:.1f} train min in all, "
          f"{time.time() - start:.0f} s wall", flush=True)
    if args.out:
        files = export_run(args.run_dir, args.out, files=RUN_FILES)
        sample_grid(trainer.G_ema.eval(), args.out / "samples.png")  # what the checkpoint holds (training continues
        # from the rounded state it saved), without reading it back
        print("exported", [f.name for f in files], flush=True)


if __name__ == "__main__":
    main()
