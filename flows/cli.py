"""The `ganinv` command."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Iterator, Optional

import click
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
def _exit_on_error(code: int, *errors: type[BaseException], crash_code: int | None = None) -> Iterator[None]:
    """The one way commands turn exceptions into exit codes: one of `errors` (the mistakes a user can fix: a missing
    store, a bad generator file, a held lease...) ends the command with `code` and a one-line `error: <message>` on
    stderr, no traceback. With `crash_code`, any other exception ends it with that code and says the flow did not
    complete; without it, other exceptions propagate (a bug keeps its traceback)."""
    try:
        yield
    except errors as err:
        _exit(code, str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err))  # KeyError quotes
    except Exception as err:  # noqa: BLE001 - only with crash_code, below
        if crash_code is None or isinstance(err, (typer.Exit, click.ClickException)):
            raise
        _exit(crash_code, f"the flow did not complete: {type(err).__name__}: {err}")


def _exit(code: int, message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code) from None


@app.command()
def info(
    model: str = typer.Argument(..., help="A generator file (.pkl or .safetensors) or a built-in name."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
) -> None:
    """Show a generator's config, num_ws, parameter count and identity."""
    from ganinv.generators import GeneratorLoadError, load_generator_and_identity

    with _exit_on_error(1, GeneratorLoadError):
        G, identity = load_generator_and_identity(model)
    summary = dict(model=model, config=G.init_kwargs, img_resolution=G.img_resolution, z_dim=G.z_dim,
                   w_dim=G.w_dim, c_dim=G.c_dim, num_ws=G.num_ws,
                   num_parameters=sum(p.numel() for p in G.parameters()), identity=identity)
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

    from ganinv.generators import GeneratorLoadError, load_generator
    from ganinv.utils.images import save_image_grid
    from tasks.models import WorkerSetupError, resolve_device

    seed_list = parse_seeds(seeds)
    with _exit_on_error(1, GeneratorLoadError, WorkerSetupError):  # WorkerSetupError: --device cuda without CUDA
        G = load_generator(model, device=resolve_device(device))
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

    from ganinv.generators import GeneratorLoadError, load_generator, read_generator_metadata, save_generator

    with _exit_on_error(1, GeneratorLoadError):
        G = load_generator(pkl)
    with open(pkl, "rb") as f:
        pkl_sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    save_generator(G, out, source=pkl.name, extra_metadata={"source_sha256": pkl_sha256})
    identity = read_generator_metadata(out)["identity"]  # hashed once, by save_generator
    typer.echo(f"wrote {out} (identity {identity})")


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



def _open_store(store: str, mode: str = "r"):
    """Opens a latent store; 'not found / not a store' ends the command with a one-line error and exit code 2."""
    from storage import LatentStore, StoreMismatchError, StoreNotFoundError

    with _exit_on_error(2, StoreNotFoundError, StoreMismatchError):
        return LatentStore.open(store, mode)


@app.command("store-info")
def store_info(store: str = typer.Argument(..., help="Store path or fsspec URL (s3://bucket/corpus.zarr)."),
               as_json: bool = typer.Option(False, "--json", help="Print the root attributes and counts as JSON.")
               ) -> None:
    """Summary of a latent store: items done/failed/pending, generator identity, inversion config, lease."""
    import json

    s = _open_store(store)
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
    s = _open_store(store, "r+" if repair else "r")
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


@app.command("store-rebuild-root")
def store_rebuild_root(store: str = typer.Argument(..., help="Store path or fsspec URL.")) -> None:
    """Writes a store's lost, unreadable or stale root metadata (zarr.json) again from the copy the store keeps of it;
    no array is touched."""
    from storage import LatentStore, StoreDamagedError, StoreExistsError, StoreNotFoundError

    with _exit_on_error(2, StoreDamagedError, StoreExistsError, StoreNotFoundError):
        rebuilt = LatentStore.rebuild_root(store)
    counts = rebuilt.status_counts()
    typer.echo(f"rebuilt the root of {store}: {len(rebuilt)} items: done {counts['done']}, failed {counts['failed']}, "
               f"pending {counts['pending']}; check it with `ganinv store-verify {store}`")


@app.command("store-break-lease")
def store_break_lease(store: str = typer.Argument(..., help="Store path or fsspec URL.")) -> None:
    """Ends the run lease on a store whose run is dead (a live holder loses it at its next renewal)."""
    s = _open_store(store, "r+")
    broken = s.break_lease()
    typer.echo(f"broke lease of {broken.describe()}" if broken else "no lease was held")


@app.command("train-gan")
def train_gan_cmd(
    run_dir: str = typer.Option(..., "--run-dir", help="Run folder: created, or resumed from its checkpoint."),
    minutes: float = typer.Option(..., "--minutes", help="Wall time for this chunk; a checkpoint is written at the end."),
    data: str = typer.Option("procedural:60000:0", "--data", help="procedural:N:SEED, an .npy array or an image folder."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Default 64 for a new run; a resumed run may change it."),
    resample_impl: str = typer.Option("composite", "--resample-impl",
                                      help="fir | separable | composite | subpixel (speed only)."),
    export: Optional[str] = typer.Option(None, "--export", help="Also write G_ema in native format here (.safetensors)."),
) -> None:
    """Train (or resume) the embedded world's StyleGAN2 for MINUTES (faces64 was made with this; see its model card)."""
    import ganinv.generators.layers as layers
    from ganinv.training.train_gan import GANTrainConfig, generator_from_checkpoint, train_gan

    try:
        layers.check_resample_impl(resample_impl, source="--resample-impl")
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    config = GANTrainConfig(data=data, batch_size=batch_size or GANTrainConfig.batch_size)
    with layers.resample_impl(resample_impl):
        trainer = train_gan(run_dir, minutes=minutes, config=config, batch_size=batch_size)
    typer.echo(f"{trainer.images_seen / 1000:.1f} kimg after {trainer.train_seconds / 60:.1f} min; checkpoint in {run_dir}")
    if export:
        from ganinv.generators import save_generator
        save_generator(generator_from_checkpoint(run_dir), export, source=f"ganinv train-gan {run_dir}",
                       extra_metadata=dict(kimg=round(trainer.images_seen / 1000, 1)))
        typer.echo(f"exported G_ema to {export}")


@app.command("train-encoder")
def train_encoder_cmd(
    gan_run: str = typer.Option(..., "--gan-run", help="GAN run folder whose G_ema the encoder inverts."),
    run_dir: str = typer.Option(..., "--run-dir", help="Encoder run folder (created or resumed)."),
    minutes: float = typer.Option(..., "--minutes"),
    steps: Optional[int] = typer.Option(None, "--steps", help="Length of the one-cycle learning-rate schedule "
                                        "(new run: default 20000; a resumed run keeps its own)."),
    data: Optional[str] = typer.Option(None, "--data", help="Real images: procedural:N:SEED, an .npy array or an "
                                       "image folder (new run: default procedural:30000:1)."),
    perceptual: Optional[str] = typer.Option(None, "--perceptual", help="classifier | none (new run: classifier)."),
    out: Optional[str] = typer.Option(None, "--out", help="Export the encoder here (.safetensors)."),
) -> None:
    """Train (or resume) the pSp/e4e-style encoder of a trained generator (faces64's was made with this)."""
    from ganinv.models.encoder import save_encoder
    from ganinv.training.train_encoder import PERCEPTUAL_TERMS, RunConfigMismatch, train_encoder

    if perceptual is not None and perceptual not in PERCEPTUAL_TERMS:
        raise typer.BadParameter(f"{perceptual!r}: expected one of {', '.join(PERCEPTUAL_TERMS)}",
                                 param_hint="--perceptual")
    with _exit_on_error(1, FileNotFoundError), _exit_on_error(2, RunConfigMismatch):
        trainer = train_encoder(run_dir, gan_run=gan_run, minutes=minutes, steps=steps, data=data,
                                perceptual=perceptual)
    typer.echo(f"{trainer.step} steps after {trainer.train_seconds / 60:.1f} min; checkpoint in {run_dir}")
    if out:
        save_encoder(trainer.E.eval(), out, metadata=trainer.metadata())
        typer.echo(f"exported the encoder to {out}")


REGRESSION_EXIT_CODE = 3  # distinct from errors (1) and bad usage (2), so a cron job can tell them apart


@app.command("report")
def report_cmd(
    store: str = typer.Argument(..., help="Store path or fsspec URL."),
    reports_root: Path = typer.Option(Path("reports"), "--reports-root", help="Folder holding one folder per run."),
    run: Optional[str] = typer.Option(None, "--run", help="Run name (default: UTC time, e.g. 20261125-020000)."),
    fid: Optional[bool] = typer.Option(None, "--fid/--no-fid",
                                       help="Require FID (error if Inception weights are missing) or skip it; "
                                            "default: FID when available."),
    threshold: list[str] = typer.Option([], "--threshold",
                                        help="NAME=VALUE regression threshold, repeatable (e.g. psnr_drop_db=0.3)."),
    edit_rows: Optional[Path] = typer.Option(None, "--edit-rows", help="JSON file of edit-evaluation rows."),
    gallery: list[str] = typer.Option([], "--gallery", help="TITLE=PNG direction gallery, repeatable."),
    wall_seconds: Optional[float] = typer.Option(None, "--wall-seconds", help="Wall time of the inversion run."),
    fail_on_regression: bool = typer.Option(True, "--fail-on-regression/--no-fail-on-regression",
                                            help=f"Exit with code {REGRESSION_EXIT_CODE} when a metric regressed."),
) -> None:
    """Write the evaluation report of STORE (HTML, metrics.json, plots) and flag regressions against the last run."""
    from flows.report import Thresholds, build_report
    from ganinv.metrics import InceptionWeightsMissing
    from storage import StoreMismatchError, StoreNotFoundError

    try:
        thresholds = Thresholds.parse(threshold)
        galleries = [_parse_gallery(g) for g in gallery]
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    with _exit_on_error(1, StoreNotFoundError, StoreMismatchError, InceptionWeightsMissing, FileNotFoundError):
        result = build_report(store, reports_root, run=run, thresholds=thresholds, fid=fid, edit_rows=edit_rows,
                              galleries=galleries, wall_seconds=wall_seconds)
    for regression in result.regressions:
        typer.echo(f"REGRESSION: {regression.message}", err=True)
    typer.echo(result.url)
    if result.regressions and fail_on_regression:
        raise typer.Exit(REGRESSION_EXIT_CODE)


def _parse_gallery(text: str) -> tuple[str, str]:
    title, sep, path = text.rpartition("=")
    if not sep or not title or not path:
        raise ValueError(f"--gallery {text!r}: write TITLE=PATH_TO_PNG")
    return title, path

# ----------------------------------------------------------------------------------------- directions and edits
def _csv(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in _csv(text) or []]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of numbers, e.g. -3,-1.5,0,1.5,3") from None


def _conditions(items: list[str]) -> dict[str, list[str]]:
    """['eyeglasses=blond_hair,hat'] -> {'eyeglasses': ['blond_hair', 'hat']}."""
    conditions = {}
    for item in items:
        name, _, held = item.partition("=")
        if not name or not held:
            raise typer.BadParameter(f"--condition {item!r}: write ATTRIBUTE=HELD[,HELD...], "
                                     "e.g. eyeglasses=blond_hair")
        conditions[name.strip()] = _csv(held)
    return conditions


def _layers(text: Optional[str]):
    if text is None or text in ("all", "coarse", "middle", "fine"):
        return text
    try:
        return [int(i) for i in _csv(text)]
    except ValueError:
        raise typer.BadParameter(f"--layers {text!r}: use all, coarse, middle, fine or ws indices like 0,1,2") from None


def _run_flow(flow_path: str, *args, verbose: bool = False, progress: bool = False, **kwargs):
    """Runs the flow `module:name` with quiet console logs (unless `verbose`) inside `prefect_api()` (the configured
    Prefect API, else a temporary local server that the Dask workers share), with a progress bar if `progress`."""
    import importlib

    from flows.console import progress_bar
    from flows.prefect_api import prefect_api, quiet_logging

    quiet_logging(verbose=verbose)  # before prefect and distributed are imported
    module, name = flow_path.split(":")
    with prefect_api(), (progress_bar() if progress else contextlib.nullcontext()):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


def _flow_user_errors() -> tuple[type[Exception], ...]:
    """What users cause in the direction and edit flows (a missing store, direction or label, an existing name, a held
    lease, another generator, a bad cluster or device): each ends the command with one line and exit code 2."""
    from ganinv.generators import GeneratorLoadError
    from storage import LeaseHeldError, StoreMismatchError, StoreNotFoundError
    from tasks.models import WorkerSetupError

    return (StoreNotFoundError, StoreMismatchError, LeaseHeldError, FileExistsError, KeyError, ValueError,
            GeneratorLoadError, WorkerSetupError)


_VERBOSE = typer.Option(False, "--verbose", "-v", help="Show Prefect and Dask logs (INFO).")


@app.command("fit-boundaries")
def fit_boundaries_cmd(
    store: str = typer.Argument(..., help="Store path or fsspec URL."),
    attributes: Optional[str] = typer.Option(None, help="Comma-separated attributes (default: every label of the "
                                             "store, or every classifier attribute with --source samples)."),
    condition: list[str] = typer.Option([], "--condition", help="Conditional boundary ATTRIBUTE=HELD[,HELD...], "
                                        "e.g. eyeglasses=blond_hair (repeatable)."),
    space: str = typer.Option("w", help="w or w+."),
    source: str = typer.Option("store", help="store (done items + their labels) or samples (sample, render, "
                               "score with the classifier)."),
    generator: Optional[str] = typer.Option(None, help="Generator for --source samples (default: the store's)."),
    classifier: str = typer.Option("builtin", help="Attribute classifier for --source samples."),
    num_samples: int = typer.Option(20000, help="Samples for --source samples (paper: 500000)."),
    truncation: float = typer.Option(0.7, help="Truncation psi of the samples (paper: 0.7)."),
    chosen: Optional[float] = typer.Option(None, help="Codes per side: a ratio in (0, 1] or a count (default: "
                                           "0.02 for samples; for store labels the smaller class of 0/1 labels)."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace directions of the same name."),
    verbose: bool = _VERBOSE,
) -> None:
    """InterFaceGAN boundaries (+ conditional ones) written to the store's directions/."""
    with _exit_on_error(2, *_flow_user_errors()):
        names = _run_flow("flows.fit_boundaries:fit_boundaries", store, verbose=verbose, attributes=_csv(attributes),
                          conditions=_conditions(condition), space=space, source=source, generator=generator,
                          classifier=classifier, num_samples=num_samples, truncation_psi=truncation,
                          chosen_num_or_ratio=chosen, seed=seed, device=device, overwrite=overwrite)
    typer.echo(f"wrote {len(names)} directions: {', '.join(names)}")


@app.command("discover-directions")
def discover_directions_cmd(
    store: str = typer.Argument(..., help="Store path or fsspec URL."),
    methods: str = typer.Option("sefa,ganspace", help="sefa and/or ganspace."),
    num_directions: int = typer.Option(5, help="Directions per method (and per GANSpace source)."),
    sefa_layers: str = typer.Option("all", help="Conv layers SeFa factorises: all or indices (coarse: 0,1)."),
    ganspace_source: str = typer.Option("samples", help="samples (w from the mapping network), store (the "
                                        "inverted corpus) or both."),
    num_samples: int = typer.Option(100000, help="w samples for GANSpace (paper: 1000000)."),
    generator: Optional[str] = typer.Option(None, help="Generator (default: the store's)."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace directions of the same name."),
    verbose: bool = _VERBOSE,
) -> None:
    """SeFa and GANSpace directions written to the store's directions/."""
    layers = sefa_layers if sefa_layers == "all" else _layers(sefa_layers)
    with _exit_on_error(2, *_flow_user_errors()):
        names = _run_flow("flows.discover_directions:discover_directions", store, verbose=verbose,
                          methods=_csv(methods), num_directions=num_directions, sefa_layers=layers,
                          ganspace_source=ganspace_source, num_samples=num_samples, generator=generator, seed=seed,
                          device=device, overwrite=overwrite)
    typer.echo(f"wrote {len(names)} directions: {', '.join(names)}")


@app.command("render-edits")
def render_edits_cmd(
    store: str = typer.Argument(..., help="Store path or fsspec URL."),
    directions: str = typer.Option(..., help="Comma-separated direction names (see list-directions)."),
    query: Optional[str] = typer.Option(None, help="Label query, e.g. 'smiling == 0 and eyeglasses == 1'."),
    ids: Optional[str] = typer.Option(None, help="Comma-separated image ids (instead of --query)."),
    strengths: str = typer.Option("-3,-2,-1,0,1,2,3", help="Comma-separated strengths; write --strengths=-3,0,3."),
    run: str = typer.Option("edits", help="Run name: edits/<run> in the store, grids in <store>.edits/<run>/."),
    limit: Optional[int] = typer.Option(None, help="Edit at most this many of the chosen items."),
    layers: Optional[str] = typer.Option(None, help="ws rows to edit: coarse, middle, fine, all or indices "
                                         "(default: each direction's own)."),
    batch_size: int = typer.Option(16, help="Items per render task (and per chunk of edits/<run>)."),
    cluster: str = typer.Option("local", "--cluster",
                                help="local | local-cuda | tcp://scheduler:8786 (see infra/dask/README.md)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Local workers (local-cuda: GPUs to use)."),
    generator: Optional[str] = typer.Option(None, help="Generator (default: the store's)."),
    evaluate_with: Optional[str] = typer.Option(None, help="Attribute classifier (e.g. builtin): store the edits' "
                                                "flip rates and interference as the run's evaluation."),
    device: str = typer.Option("auto"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run of that name with other content."),
    verbose: bool = _VERBOSE,
) -> None:
    """Edit chosen items along stored directions: edited ws in edits/<run>, PNG grids beside the store."""
    if query is not None and ids is not None:
        raise typer.BadParameter("pass --query or --ids, not both")
    with _exit_on_error(2, *_flow_user_errors()):
        summary = _run_flow("flows.render_edits:render_edits", store, verbose=verbose, directions=_csv(directions),
                            items=_csv(ids) if ids else query, strengths=_floats(strengths), run=run, limit=limit,
                            layers=_layers(layers), batch_size=batch_size, cluster=cluster, workers=workers,
                            generator=generator, device=device, evaluate_with=evaluate_with, overwrite=overwrite)
    typer.echo(f"edited {summary['items']} items x {len(summary['directions'])} directions x "
               f"{len(summary['strengths'])} strengths in {summary['seconds']} s; grids in {summary['grids']}/")


@app.command("list-directions")
def list_directions_cmd(
    store: str = typer.Argument(..., help="Store path or fsspec URL."),
    as_json: bool = typer.Option(False, "--json", help="Print every direction's attributes as JSON."),
) -> None:
    """The directions stored in directions/: name, method, space, layers, scale, source and headline metric."""
    from storage.directions import list_directions

    found = list_directions(_open_store(store))
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if not found:
        typer.echo("no directions (write some with fit-boundaries or discover-directions)")
    for name, attrs in found.items():
        d, p = attrs["direction"], attrs["direction"]["provenance"]
        metric = next((f"{k} {p[k]:.3g}" for k in ("val_accuracy", "eigenvalue", "explained_variance_ratio")
                       if isinstance(p.get(k), (int, float))), "")
        layers = "all" if d["layers"] is None else ",".join(map(str, d["layers"]))
        typer.echo(f"{name:40s} {d['method']:12s} {d['space']:3s} layers {layers:12s} scale {d['scale']:<8.3g} "
                   f"source {p.get('source', '-'):9s} {metric}")
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
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 (default) or bf16 autocast (GPU: "
                                            "~1.4x; within 1 % of fp32's quality, BENCHMARKS.md)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="NHWC memory layout (GPU, with bf16)."),
    compile_step: bool = typer.Option(False, "--compile", help="torch.compile the step (GPU: ~2.8x more over "
                                      "bf16 after a few minutes of compiling per worker)."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="Replay each step as one CUDA graph."),
    labels: Optional[str] = typer.Option(None, "--labels", help="CSV of numeric labels (first column: image id)."),
    shard_size: Optional[int] = typer.Option(None, "--shard-size", help="Images per shard (= task), fixed when the "
                                             "store is created; default: the store's, 256 for a new store."),
    cluster: str = typer.Option("local", "--cluster",
                                help="local | local-cuda | tcp://scheduler:8786 (see infra/dask/README.md)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Local workers (local-cuda: GPUs to use)."),
    batch_size: Optional[str] = typer.Option(None, "--batch-size", help="Images per inversion call per worker, or "
                                             "'auto': as many as fit each GPU (default 16 on CPU, 32 on CUDA)."),
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
                                                   loss=loss, initial_learning_rate=lr, seed=seed or None,
                                                   precision=precision, channels_last=channels_last or None,
                                                   compile=compile_step or None, cuda_graph=cuda_graph or None).items()
                 if value is not None}
    kwargs = dict(inversion=overrides, labels=labels, shard_size=shard_size, cluster=cluster, workers=workers,
                  batch_size=_parse_batch_size(batch_size), device=device, retry_failed=retry_failed, force=force)
    from flows.clusters import ClusterError
    from storage import StoreMismatchError
    from tasks.inversion import PERMANENT_ERRORS  # imports prefect: after quiet_logging

    # configuration errors exit 2; anything else means the flow crashed (or shards failed beyond retries): exit 3
    with _exit_on_error(2, *PERMANENT_ERRORS, ClusterError, StoreMismatchError, crash_code=3):
        summary = _run_flow("flows.invert_dataset:invert_dataset", images, store, generator, verbose=verbose,
                            progress=True, **kwargs)
    if report:
        report.write_text(json.dumps(summary, indent=2))
    typer.echo(format_invert_summary(summary))
    code = invert_exit_code(summary)
    if code:
        raise typer.Exit(code)


def _parse_batch_size(text: str | None) -> int | None:
    """`--batch-size`: a positive integer or 'auto' (0 for the worker: probe the GPU's memory)."""
    if text is None:
        return None
    if text.strip().lower() == "auto":
        return 0
    if text.strip().isdigit() and int(text) >= 1:
        return int(text)
    raise typer.BadParameter(f"{text!r}: give a positive number of images or 'auto'", param_hint="--batch-size")


if __name__ == "__main__":
    app()
