"""The `ganinv` command."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Iterator, Optional

import typer

app = typer.Typer(no_args_is_help=True, help="Invert image datasets into a StyleGAN2 latent space.")

_SEEDS_HELP = "Seeds: a range '0-15', a list '1,5,9', or both '0-3,7'."


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise typer.BadParameter(f"{text!r} is not a seed list; {_SEEDS_HELP}")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise typer.BadParameter(f"seed range {part.strip()!r} is empty; write it low-high")
        seeds.extend(range(first, last + 1))
    return seeds


@contextlib.contextmanager
def _clear_errors() -> Iterator[None]:
    """A `GeneratorLoadError` ends the command with its one-line message and exit code 1, no traceback."""
    from ganinv.generators import GeneratorLoadError

    try:
        yield
    except GeneratorLoadError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(code=1) from None


def _device(name: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


@app.command()
def info(
    model: str = typer.Argument(..., help="A generator file (.pkl or .safetensors) or a built-in name."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
) -> None:
    """Show a generator's config, num_ws, parameter count and identity."""
    from ganinv.generators import generator_identity, load_generator

    with _clear_errors():
        G = load_generator(model)
    summary = dict(model=model, config=G.init_kwargs, img_resolution=G.img_resolution, z_dim=G.z_dim,
                   w_dim=G.w_dim, c_dim=G.c_dim, num_ws=G.num_ws,
                   num_parameters=sum(p.numel() for p in G.parameters()), identity=generator_identity(G))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    summary["config"] = json.dumps(summary["config"], sort_keys=True)
    summary["num_parameters"] = f"{summary['num_parameters']:,}"
    for key, value in summary.items():
        typer.echo(f"{key:15s} {value}")


@app.command()
def generate(
    model: str = typer.Argument(..., help="A generator file (.pkl or .safetensors) or a built-in name."),
    seeds: str = typer.Option("0-15", help=_SEEDS_HELP),
    trunc: float = typer.Option(1.0, help="Truncation psi (1 = none, 0 = the average face)."),
    out: Path = typer.Option(Path("grid.png"), help="Output image (PNG)."),
    class_idx: Optional[int] = typer.Option(None, help="Class label, for conditional generators."),
    noise_mode: str = typer.Option("const", help="Noise inputs: const, random or none."),
    nrow: Optional[int] = typer.Option(None, help="Images per row (default: a near-square grid)."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1, ... or auto."),
) -> None:
    """Render a grid of images, one per seed (z drawn as in the official generate.py, so seeds match it)."""
    import numpy as np
    import torch

    from ganinv.generators import load_generator
    from ganinv.utils.images import save_image_grid

    seed_list = parse_seeds(seeds)
    with _clear_errors():
        G = load_generator(model, device=_device(device))
    c = torch.zeros([len(seed_list), G.c_dim], device=G.mapping.fc0.weight.device)
    if G.c_dim > 0:
        if class_idx is None or not 0 <= class_idx < G.c_dim:
            raise typer.BadParameter(f"this generator is conditional: pass --class-idx between 0 and {G.c_dim - 1}")
        c[:, class_idx] = 1
    elif class_idx is not None:
        typer.echo("warning: --class-idx is ignored: the generator is unconditional", err=True)
    z = torch.from_numpy(np.stack([np.random.RandomState(seed).randn(G.z_dim) for seed in seed_list])).to(c)
    with torch.no_grad():
        images = torch.cat([G(z[i:i + 16], c[i:i + 16], truncation_psi=trunc, noise_mode=noise_mode)
                            for i in range(0, len(seed_list), 16)])
    save_image_grid(images, out, nrow)
    typer.echo(f"wrote {out} ({len(seed_list)} images, {G.img_resolution} px)")


@app.command("convert-pkl")
def convert_pkl(
    pkl: Path = typer.Argument(..., help="An official StyleGAN2-ADA / StyleGAN3-repo network pickle."),
    out: Path = typer.Argument(..., help="Where to write the ganinv generator (.safetensors)."),
) -> None:
    """Convert an official network pickle (G_ema) to ganinv's safetensors format, running none of its code."""
    import hashlib

    from ganinv.generators import generator_identity, load_generator, save_generator

    with _clear_errors():
        G = load_generator(pkl)
    with open(pkl, "rb") as f:
        pkl_sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    save_generator(G, out, source=pkl.name, extra_metadata={"source_sha256": pkl_sha256})
    typer.echo(f"wrote {out} (identity {generator_identity(G)})")


@app.command("make-dataset")
def make_dataset(
    out: str = typer.Argument(..., help="Output folder: writes OUT/images/NNNNNN.png and OUT/attributes.csv."),
    n: int = typer.Option(10000, "--n", help="Number of faces."),
    seed: int = typer.Option(0, "--seed", help="World seed: the same seed and index always give the same face."),
    workers: int = typer.Option(None, "--workers", help="Processes (default: all CPUs)."),
    start: int = typer.Option(0, "--start", help="First face index (to build one dataset in several runs)."),
) -> None:
    """Render the procedural-faces dataset (a small world whose attributes are all known)."""
    import time
    from ganinv.datasets.procedural_faces import write_dataset

    t0 = time.perf_counter()
    csv_path = write_dataset(out, n, seed=seed, workers=workers, start=start)
    seconds = time.perf_counter() - t0
    typer.echo(f"wrote {n} faces to {out} ({n / max(seconds, 1e-9):.0f} images/s); attributes: {csv_path}")


@app.command("train-classifier")
def train_classifier_cmd(
    out: str = typer.Option(..., "--out", help="Where to write the .safetensors classifier."),
    n_train: int = typer.Option(16000, "--n-train", help="Training faces (rendered once, reused with augmentation)."),
    steps: int = typer.Option(2400, "--steps", help="Optimiser steps."),
    batch_size: int = typer.Option(64, "--batch-size"),
    seed: int = typer.Option(0, "--seed", help="World seed of the training faces."),
    eval_seed: int = typer.Option(1, "--eval-seed", help="World seed of the held-out faces."),
    n_eval: int = typer.Option(2000, "--n-eval", help="Held-out faces."),
    dataset: str = typer.Option(None, "--dataset", help="Train on a make-dataset folder instead of rendering."),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads."),
) -> None:
    """Train the attribute classifier of the procedural-faces world and report held-out accuracy / R^2."""
    import json
    import logging
    from ganinv.training.train_classifier import TrainClassifierConfig, train_classifier

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = TrainClassifierConfig(seed=seed, n_train=n_train, eval_seed=eval_seed, n_eval=n_eval, steps=steps,
                                batch_size=batch_size, dataset_dir=dataset, threads=threads)
    record = train_classifier(cfg, out)
    typer.echo(json.dumps({"heldout": record["heldout"], "passes": record["passes"],
                           "train_seconds": record["train_seconds"]}, indent=1))


if __name__ == "__main__":
    app()
