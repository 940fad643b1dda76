"""Commands that make the embedded world and train its models: `make-dataset`, `train-classifier`, `train-gan`,
`train-encoder`. Defaults live in the training configs (ganinv/training/); a flag left out keeps them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from cli.common import given
from cli.errors import InputNotFound
from ganinv.errors import UserError

app = typer.Typer()


@app.command("make-dataset")
def make_dataset(
    out: str = typer.Argument(..., help="Output folder: writes OUT/images/NNNNNN.png and OUT/attributes.csv."),
    count: int = typer.Option(10000, "--count", "--n", min=1, help="Number of faces."),
    seed: int = typer.Option(0, "--seed", help="World seed: the same seed and index always give the same face."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes (default: all CPUs)."),
    start: int = typer.Option(0, "--start", help="First face index (to build one dataset in several runs)."),
    world_version: Optional[int] = typer.Option(None, "--world-version", help="procedural-faces version (default: "
                                                "the shipped world's)."),
) -> None:
    """Render the procedural-faces dataset (a small world whose attributes are all known)."""
    import time

    from ganinv.datasets.procedural_faces import write_dataset

    t0 = time.perf_counter()
    csv_path = write_dataset(out, count, seed=seed, workers=workers, start=start, version=world_version)
    seconds = time.perf_counter() - t0
    typer.echo(f"wrote {count} faces to {os.path.join(out, 'images')} ({count / max(seconds, 1e-9):.0f} images/s); "
               f"attributes: {csv_path}")


@app.command("train-classifier")
def train_classifier(
    out: str = typer.Option(..., "--out", help="Where to write the .safetensors classifier."),
    n_train: Optional[int] = typer.Option(None, "--n-train", help="Training faces (rendered once, reused with "
                                          "augmentation)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimiser steps."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    seed: Optional[int] = typer.Option(None, "--seed", help="World seed of the training faces."),
    world_version: Optional[int] = typer.Option(None, "--world-version", help="procedural-faces version to train "
                                                "on (default: the shipped world's)."),
    eval_seed: Optional[int] = typer.Option(None, "--eval-seed", help="World seed of the held-out faces."),
    n_eval: Optional[int] = typer.Option(None, "--n-eval", help="Held-out faces."),
    dataset_dir: Optional[str] = typer.Option(None, "--dataset-dir", "--dataset",
                                              help="Train on a make-dataset folder instead of rendering."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda | cuda:N | auto for the optimiser "
                                         "steps (rendering stays on the CPU; default cpu)."),
    invariance_weight: Optional[float] = typer.Option(
        None, "--invariance-weight", help="Weight of the counterfactual-invariance term (0: off): a face and its "
        "twin with one binary attribute flipped must agree on every other attribute."),
    invariance_share: Optional[float] = typer.Option(None, "--invariance-share",
                                                     help="Share of the training faces that get a twin."),
    invariance_continuous: Optional[bool] = typer.Option(
        None, "--invariance-continuous/--invariance-binary", help="Twins change any attribute, a continuous one "
        "by half its range (default: binary flips only): binary scores must not follow skin tone, lighting, ..."),
) -> None:
    """Train the attribute classifier of the procedural-faces world and report held-out accuracy / R^2 (defaults:
    ganinv.training.train_classifier.TrainClassifierConfig)."""
    import logging

    from ganinv.training.train_classifier import TrainClassifierConfig, train_classifier as train
    from runtime.models import resolve_device

    device = str(resolve_device(device)) if device else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:  # refused before any face is rendered
        config = TrainClassifierConfig(**given(seed=seed, world_version=world_version, n_train=n_train,
                                               eval_seed=eval_seed, n_eval=n_eval, steps=steps, batch_size=batch_size,
                                               dataset_dir=dataset_dir, threads=threads, device=device,
                                               invariance_weight=invariance_weight,
                                               invariance_share=invariance_share,
                                               invariance_continuous=invariance_continuous))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    record = train(config, out)
    typer.echo(json.dumps({"heldout": record["heldout"], "passes": record["passes"],
                           "train_seconds": record["train_seconds"]}, indent=1))


@app.command("train-gan")
def train_gan(
    run_dir: str = typer.Option(..., "--run-dir", help="Run folder: created, or resumed from its checkpoint."),
    minutes: float = typer.Option(..., "--minutes", help="Wall time for this chunk; a checkpoint is written at the "
                                  "end."),
    data: Optional[str] = typer.Option(None, "--data", help="procedural:N:SEED[:vVERSION], an .npy array or an "
                                       "image folder (new run: GANTrainConfig's)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="New run: GANTrainConfig's; a resumed run "
                                             "may change it."),
    resample_impl: str = typer.Option("composite", "--resample-impl",
                                      help="fir | separable | composite | subpixel (speed only)."),
    export: Optional[str] = typer.Option(None, "--export", help="Also write G_ema in native format here "
                                         "(.safetensors)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the main passes (faster on a GPU after a "
                                 "minute of compiling; the regularisers stay eager)."),
    settings: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="Any GANTrainConfig field "
                                                 "(repeatable; a Python literal or a string), e.g. --set "
                                                 "linearity_weight=1.0. A resumed run may change only the batch size "
                                                 "and the linear-attribute regulariser (RESUMABLE_FIELDS)."),
) -> None:
    """Train (or resume) the embedded world's StyleGAN2 for MINUTES (faces64 was made with this; see its model
    card and training/README.md for the linear-attribute regulariser's settings)."""
    import ganinv.generators.layers as layers
    from ganinv.training.train_gan import GANTrainConfig, generator_from_checkpoint, parse_settings, run_config
    from ganinv.training.train_gan import train_gan as train

    try:
        layers.check_resample_impl(resample_impl, source="--resample-impl")
        changes = parse_settings(settings or [])
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    if data is not None and changes.get("data", data) != data:
        raise typer.BadParameter(f"--data {data} and --set data={changes['data']} disagree: give the data once",
                                 param_hint="--data")
    config = GANTrainConfig(**given(data=data, batch_size=batch_size))
    try:
        run_config(run_dir, config, batch_size=batch_size, changes=changes)  # refused before anything is written
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--set") from None
    with layers.resample_impl(resample_impl):
        trainer = train(run_dir, minutes=minutes, config=config, batch_size=batch_size, changes=changes,
                        compile=compile)
    typer.echo(f"{trainer.images_seen / 1000:.1f} kimg after {trainer.train_seconds / 60:.1f} min; checkpoint in "
               f"{run_dir}")
    if export:
        from ganinv.generators import save_generator

        save_generator(generator_from_checkpoint(run_dir), export, source=f"ganinv train-gan {run_dir}",
                       extra_metadata=dict(kimg=round(trainer.images_seen / 1000, 1)))
        typer.echo(f"exported G_ema to {export}")


@app.command("train-encoder")
def train_encoder(
    run_dir: str = typer.Option(..., "--run-dir", help="Encoder run folder (created, or resumed from its checkpoint)."),
    minutes: float = typer.Option(..., "--minutes", help="Wall time for this chunk (whole checkpoint intervals); a "
                                  "checkpoint is written at the end."),
    generator: Optional[str] = typer.Option(None, "--generator", help="The generator to invert: a built-in name "
                                            "(faces64), an official StyleGAN2/3 .pkl or a ganinv .safetensors."),
    gan_run: Optional[str] = typer.Option(None, "--gan-run", help="Or: a GAN run folder of ours (its G_ema)."),
    images: Optional[str] = typer.Option(None, "--images", "--data", help="Your images, besides generated ones: a "
                                         "folder, a list file, an .npy array or procedural:N:SEED (new run only; "
                                         "default: generated images alone)."),
    perceptual: Optional[str] = typer.Option(None, "--perceptual", help="auto | clf-perceptual | lpips-vgg | "
                                             "lpips-alex | none (new run; auto: clf-perceptual for the embedded "
                                             "world, lpips-vgg when its VGG trunk is on disk, else none)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Length of the learning-rate schedule (new run: "
                                        "EncoderTrainConfig's; a resumed run keeps its own)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step (new run: "
                                             "EncoderTrainConfig's)."),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Warm start (new run only): the weights of "
                                            "an encoder file or encoder run folder trained for another generator of "
                                            "the same architecture (e.g. an earlier checkpoint of the same GAN run); "
                                            "w_avg is this generator's and Adam starts fresh. A resumed run accepts "
                                            "only the --init-from it was created with."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda when there "
                                         "is one)."),
    out: Optional[str] = typer.Option(None, "--out", help="Export the encoder here (.safetensors): it records the "
                                      "generator it belongs to and is refused with any other."),
) -> None:
    """Train (or resume) a pSp/e4e-style encoder for any generator ganinv loads (docs/encoder.md), so `ganinv invert
    --encoder OUT` starts every image from the encoder's output (hybrid) instead of from w_avg."""
    from ganinv.training.train_encoder import PERCEPTUAL_TERMS, train_encoder as train

    if (generator is None) == (gan_run is None):
        raise typer.BadParameter("give the generator to train for: --generator SOURCE or --gan-run RUN (one)",
                                 param_hint="--generator")
    if perceptual is not None and perceptual not in PERCEPTUAL_TERMS:
        raise typer.BadParameter(f"{perceptual!r}: expected one of {', '.join(PERCEPTUAL_TERMS)}",
                                 param_hint="--perceptual")
    if images is not None:
        check_image_source(images)
    try:
        trainer = train(run_dir, generator=generator, gan_run=gan_run, minutes=minutes, steps=steps, data=images,
                        perceptual=perceptual, batch_size=batch_size, init_from=init_from, device=device)
    except FileNotFoundError as err:
        raise InputNotFound(str(err)) from err
    typer.echo(f"{trainer.step} of {trainer.config.total_steps} steps after {trainer.train_seconds / 60:.1f} min "
               f"(perceptual term: {trainer.config.perceptual}); checkpoint in {run_dir}")
    if out:
        trainer.export(out)
        typer.echo(f"exported the encoder to {out}")


class ImageSourceError(UserError, ValueError):
    """`--images` names nothing a training run can read."""


def check_image_source(source: str) -> None:
    """Refuses, before the generator loads, an `--images` that is not a readable source (docs/encoder.md)."""
    from ganinv.datasets.image_set import list_image_files

    if source.startswith("procedural:"):
        from ganinv.datasets.procedural_faces import parse_procedural_spec
        try:
            parse_procedural_spec(source)
        except ValueError as err:
            raise ImageSourceError(f"--images {err}") from None
        return
    if source.endswith(".npy"):
        if not Path(source).is_file():
            raise InputNotFound(f"--images {source!r}: no such .npy file")
        return
    try:
        files = list_image_files(source)
    except FileNotFoundError as err:
        raise InputNotFound(str(err)) from None
    if not files:
        raise ImageSourceError(f"--images {source!r}: no image files there; give a folder of images, a list file, "
                               "an .npy array or procedural:N:SEED")
