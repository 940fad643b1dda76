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
(`--install FROM` does exactly that), then commit. What gpu/chunk.sh returns (the run folder as `run.tar.*`, its
log and evaluations) is installed by `--install-chunk FILES_AT`: the run's state replaced, the evaluations copied to
benchmarks/results/<run name>_<kimg>kimg_<kind>.json, a row added to the run's chunks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import ganinv.generators.layers as layers
from benchmarks.common import export_run, install_run, install_run_folder
from ganinv.training.checkpoint import load_checkpoint_entry
from ganinv.training.train_gan import GANTrainConfig, check_chunk_length, parse_settings, run_config, train_gan
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
        raise SystemExit(f"--set: {err}") from None


EVALUATIONS = ("quality", "sep", "edit")  # gpu/chunk.sh's <kind>_<kimg>kimg.json files


def install_chunk(files_at: str | Path, run_dir: str | Path, *, results: str | Path = "benchmarks/results",
                  settings: str = "", encoder_run: str | Path | None = None) -> str:
    """Install what one gpu/chunk.sh call returned (`files_at`: run.tar.*, chunk.log, <kind>_<kimg>kimg.json, and
    with ENC enc.tar.*): `run_dir`'s checkpoint, log and config replaced by the chunk's (its other files, e.g. the
    classifier and chunks.md, stay as committed), the encoder run trained beside it into `encoder_run` (required
    when enc.tar.* came back), the evaluations copied to `results`, and a row appended to `run_dir/chunks.md`
    (returned). A FileNotFoundError / ValueError names what is missing before anything is replaced."""
    files_at, run_dir = Path(files_at), Path(run_dir)
    if not any(files_at.glob("run.tar.*")):
        raise FileNotFoundError(f"{files_at} holds no run.tar.* parts: the chunk returned no state (read its chunk.log)")
    if any(files_at.glob("enc.tar.*")) and encoder_run is None:
        raise ValueError(f"{files_at} holds an encoder run (enc.tar.*): pass --encoder-run (e.g. "
                         "training/encoder_faces64v2) to install it with the GAN's state")
    with tempfile.TemporaryDirectory() as tmp:
        staged = _untar_parts(files_at, "run", Path(tmp))
        if not (staged / "checkpoint" / "checkpoint.json").exists():
            raise FileNotFoundError(f"{files_at}'s run.tar.* hold no checkpoint/checkpoint.json")
        encoder = _untar_parts(files_at, "enc", Path(tmp)) if encoder_run is not None else None
        if encoder is not None and not (encoder / "checkpoint-checkpoint.json").exists():
            raise FileNotFoundError(f"{files_at} holds no encoder run (enc.tar.* with checkpoint-checkpoint.json): "
                                    "was the chunk run with ENC? (read its chunk.log)")
        install_run_folder(staged, run_dir, files=RUN_FILES)
        if encoder is not None:
            install_run(encoder, encoder_run)
    log = (files_at / "chunk.log").read_text(errors="replace") if (files_at / "chunk.log").exists() else ""
    kimg = round(int(load_checkpoint_entry(run_dir / "checkpoint", "images_seen")) / 1000)
    copied = {}
    for kind in EVALUATIONS:
        for found in files_at.glob(f"{kind}_*kimg.json"):
            target = Path(results) / f"{run_dir.name}_{found.stem.removeprefix(kind + '_')}_{kind}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            copied[kind] = json.loads(shutil.copyfile(found, target).read_text())
    row = _chunk_row(run_dir, log, kimg, copied, settings)
    with (run_dir / "chunks.md").open("a") as f:
        f.write(row + "\n")
    return row


def _untar_parts(files_at: Path, name: str, tmp: Path) -> Path:
    """`files_at/<name>.tar.*` joined and unpacked into `tmp/<name>` (returned; empty when there are no parts)."""
    joined, staged = tmp / f"{name}.tar", tmp / name
    staged.mkdir()
    parts = sorted(files_at.glob(f"{name}.tar.*"))
    if parts:
        with joined.open("wb") as out:
            for part in parts:
                out.write(part.read_bytes())
        with tarfile.open(joined) as archive:
            archive.extractall(staged, filter="data")
    return staged


def _chunk_row(run_dir: Path, log: str, kimg: int, evaluations: dict[str, Any], settings: str) -> str:
    """`| # | date | device | settings | minutes | kimg after | FD-clf | notes |` for chunks.md."""
    chunks = run_dir / "chunks.md"
    number = sum(1 for line in chunks.read_text().splitlines() if re.match(r"\| \d+ \|", line)) + 1 \
        if chunks.exists() else 1
    device = next((line.split(",")[0] for line in log.splitlines() if re.match(r"NVIDIA |.*H[12]00", line)), "?")
    wall = re.search(r"chunk: ([\d.]+) kimg, ([\d.]+) train min in all, (\d+) s wall", log)
    minutes = f"{int(wall.group(3)) / 60:.1f}" if wall else "?"  # the training script's wall time, set-up included
    quality = evaluations.get("quality", {})
    fd = f"{quality['fd_clf_generated_vs_dataset']:.2f}" if "fd_clf_generated_vs_dataset" in quality else ""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    return f"| {number} | {date} | {device} | {settings or '-'} | {minutes} | {kimg:,} | {fd} | |"


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
    parser.add_argument("--install-chunk", type=Path, metavar="FILES_AT", help="install what gpu/chunk.sh returned "
                        "(run.tar.*, chunk.log, evaluations) into --run-dir, benchmarks/results and chunks.md; exit")
    parser.add_argument("--settings", default="", help="with --install-chunk: the chunk's SET, for chunks.md")
    parser.add_argument("--encoder-run", type=Path, help="with --install-chunk: where the encoder run trained beside "
                        "the GAN (gpu/chunk.sh's ENC, enc.tar.*) goes, e.g. training/encoder_faces64v2")
    args = parser.parse_args()
    if args.install_chunk:
        try:
            print(install_chunk(args.install_chunk, args.run_dir, settings=args.settings,
                                encoder_run=args.encoder_run))
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(str(err)) from None
        return
    if args.install:
        install_run(args.install, args.run_dir, files=RUN_FILES)
        return
    try:
        check_chunk_length(args.minutes, args.until)
    except ValueError:
        raise SystemExit("give --minutes or --until (one of them)") from None
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
