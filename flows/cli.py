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



def _open_store_or_exit(store: str, mode: str = "r"):
    """Opens a latent store, turning 'not found / not a store' into a one-line error and exit code 2."""
    from storage import LatentStore, StoreMismatchError, StoreNotFoundError

    try:
        return LatentStore.open(store, mode)
    except (StoreNotFoundError, StoreMismatchError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err


@app.command("store-info")
def store_info(store: str = typer.Argument(..., help="Store path or fsspec URL (s3://bucket/corpus.zarr)."),
               as_json: bool = typer.Option(False, "--json", help="Print the root attributes and counts as JSON.")
               ) -> None:
    """Summary of a latent store: items done/failed/pending, generator identity, inversion config, lease."""
    import json

    s = _open_store_or_exit(store)
    attrs, counts, holder = s.attributes, s.status_counts(), s.lease_holder()
    if as_json:
        typer.echo(json.dumps({"attributes": attrs.to_json(), "counts": counts,
                               "lease": holder.to_json() if holder else None}, indent=2))
        return
    layout, gen, ds = attrs.layout, attrs.generator, attrs.dataset
    optional = [name for name, on in (("z", layout.z_dim), ("thumbnails", layout.thumbnail_size)) if on]
    lines = [
        f"store       {store}",
        f"schema      {attrs.schema} v{attrs.schema_version}, created {attrs.created} by ganinv {attrs.ganinv_version}",
        f"items       {len(s)}: done {counts['done']}, failed {counts['failed']}, pending {counts['pending']} "
        f"({len(s.shards())} shards of {s.chunk_items})",
        f"generator   sha256 {gen.sha256}  source {gen.source or '-'}",
        f"            config {json.dumps(gen.config, sort_keys=True)}",
        f"inversion   {json.dumps(attrs.inversion, sort_keys=True)}",
        f"dataset     root {ds.root or '-'}  manifest {ds.manifest_hash[:16]}  appends {len(ds.history)}",
        f"layout      ws [{layout.num_ws}, {layout.w_dim}] ({attrs.chunking.ws_compressor})"
        + (f" + {', '.join(optional)}" if optional else ""),
        f"metrics     {', '.join(layout.metrics)}",
        f"labels      {', '.join(layout.labels) or '-'}",
        f"lease       {'held by ' + holder.describe() if holder else 'free'}",
    ]
    typer.echo("\n".join(lines))


@app.command("store-verify")
def store_verify(store: str = typer.Argument(..., help="Store path or fsspec URL."),
                 repair: bool = typer.Option(False, "--repair",
                                             help="Mark bad items pending so the next run redoes them.")) -> None:
    """Checks that every item marked done has finite data; exit code 1 if not."""
    s = _open_store_or_exit(store, "r+" if repair else "r")
    report = s.verify(repair=repair)
    typer.echo(f"{report.num_items} items: " + ", ".join(f"{k} {v}" for k, v in report.counts.items()))
    for problem in report.problems:
        typer.echo(f"problem: {problem}")
    for index, reason in list(zip(report.bad_items, report.reasons))[:20]:
        typer.echo(f"bad item {index}: {reason}")
    if len(report.bad_items) > 20:
        typer.echo(f"... and {len(report.bad_items) - 20} more bad items")
    if report.repaired:
        typer.echo(f"marked {len(report.bad_items)} items pending again")
    typer.echo("ok" if report.ok else "NOT OK")
    if not report.ok and not report.repaired:
        raise typer.Exit(1)


@app.command("store-break-lease")
def store_break_lease(store: str = typer.Argument(..., help="Store path or fsspec URL.")) -> None:
    """Ends the run lease on a store whose run is dead (a live holder loses it at its next renewal)."""
    s = _open_store_or_exit(store, "r+")
    broken = s.break_lease()
    typer.echo(f"broke lease of {broken.describe()}" if broken else "no lease was held")


_INVERT_HELP = "\n\n".join(" ".join(paragraph.split()) for paragraph in (
    "Invert a dataset of images into a latent store with a Prefect flow on Dask workers.",
    """IMAGES is a folder (searched recursively), a list file (one path per line), a glob ('photos/*.jpg') or a
    bucket prefix (s3://bucket/faces/). Re-running resumes: only images the store has not inverted yet are inverted,
    and new images are appended. Without PREFECT_API_URL a temporary local Prefect server runs for the command.""",
    """Exit codes: 0 every image is in the store; 1 the run completed but some inputs could not be inverted
    (undecodable or unreadable files, listed in the summary and in the store's `error` array; duplicates do not
    count); 2 usage or configuration error (bad generator or settings, a store made with other settings, a store
    leased by another run); 3 the flow crashed or shards failed beyond their retries (run again to resume).""",
))


@app.command("invert", help=_INVERT_HELP)
def invert_cmd(
    images: str = typer.Argument(..., help="Folder, list file, glob or bucket prefix of images."),
    store: str = typer.Option(..., "--store", help="Latent store to create or resume (path or s3://... URL)."),
    generator: str = typer.Option("faces64", "--generator",
                                  help="Built-in name, .safetensors or official .pkl (same path on every worker)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="optimize | encoder | hybrid (default: hybrid when the "
                                                             "generator has a built-in encoder, else optimize)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder .safetensors (for encoder/hybrid)."),
    space: Optional[str] = typer.Option(None, "--space", help="w, w+ or z (default: the mode's)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimisation steps (default: the mode's)."),
    loss: Optional[str] = typer.Option(None, "--loss", help="Loss spec, e.g. lpips-vgg, 'clf-perceptual+0.1*mse'."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Initial learning rate (default: the mode's)."),
    seed: int = typer.Option(0, "--seed", help="Base of the per-image seeds (each image's seed comes from its id)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="CSV of numeric labels (first column: image id)."),
    shard_size: Optional[int] = typer.Option(None, "--shard-size", help="Images per shard (= task), fixed when the "
                                             "store is created; default: the store's, 256 for a new store."),
    cluster: str = typer.Option("local", "--cluster",
                                help="local | local-cuda | tcp://scheduler:8786 (see infra/dask/README.md)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Local workers (local-cuda: GPUs to use)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per inversion call per worker."),
    device: str = typer.Option("auto", "--device", help="Worker device: auto, cpu, cuda."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also retry items that failed before."),
    force: bool = typer.Option(False, "--force", help="Take the store's lease from another (dead) run."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the run summary as JSON here."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect and Dask logs (INFO)."),
) -> None:
    from flows.console import format_invert_summary, invert_exit_code
    from flows.prefect_api import quiet_logging

    quiet_logging(verbose=verbose)  # before prefect and distributed are imported
    overrides = {key: value for key, value in dict(mode=mode, encoder=encoder, space=space, num_steps=steps,
                                                   loss=loss, initial_learning_rate=lr, seed=seed or None).items()
                 if value is not None}
    kwargs = dict(inversion=overrides, labels=labels, shard_size=shard_size, cluster=cluster, workers=workers,
                  batch_size=batch_size, device=device, retry_failed=retry_failed, force=force)
    summary = _run_invert_flow(images, store, generator, kwargs)
    if report:
        report.write_text(json.dumps(summary, indent=2))
    typer.echo(format_invert_summary(summary))
    code = invert_exit_code(summary)
    if code:
        raise typer.Exit(code)


def _run_invert_flow(images: str, store: str, generator: str, kwargs: dict) -> dict:
    """Runs the flow with a progress bar; configuration errors exit 2, crashes exit 3, each with a one-line message."""
    from flows.clusters import ClusterError
    from flows.console import progress_bar
    from flows.prefect_api import prefect_api
    from storage import StoreMismatchError
    from tasks.inversion import PERMANENT_ERRORS

    try:
        with prefect_api(), progress_bar():
            from flows.invert_dataset import invert_dataset

            return invert_dataset(images, store, generator, **kwargs)
    except (*PERMANENT_ERRORS, ClusterError, StoreMismatchError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except Exception as err:  # noqa: BLE001 - the flow crashed: say so in one line, exit 3
        typer.echo(f"error: the flow did not complete: {type(err).__name__}: {err}", err=True)
        raise typer.Exit(3) from None


if __name__ == "__main__":
    app()
