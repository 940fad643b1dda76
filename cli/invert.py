"""`ganinv invert`: the `invert-dataset` flow from the terminal. Flags are named after the fields they set
(`InvertConfig`, `InversionConfig`, `ExecutionOptions`); a flag left out keeps the config's default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from cli import common
from cli.common import default, given
from cli.errors import CRASH, fail
from runtime.config import DEFAULT_GENERATOR, ExecutionOptions, InvertConfig

app = typer.Typer()

HELP = "\n\n".join(" ".join(paragraph.split()) for paragraph in (
    "Invert a dataset of images into a latent store with a Prefect flow on Dask workers.",
    """IMAGES is a folder (searched recursively), a list file (one path per line), a glob ('photos/*.jpg') or a
    bucket prefix (s3://bucket/faces/). Re-running resumes: only images the store has not inverted yet are inverted,
    and new images are appended. Without PREFECT_API_URL a temporary local Prefect server runs for the command.""",
    """Exit codes: 0 every image is in the store; 1 the run completed but some inputs could not be inverted
    (undecodable or unreadable files, listed in the summary and in the store's `error` array; duplicates do not
    count); 2 usage or configuration error (bad generator or settings, a store made with other settings, a store
    leased by another run); 3 the flow crashed or shards failed beyond their retries (run again to resume).""",
))
PRESET = "default: the mode's preset, runtime/config.py"


@app.command("invert", help=HELP)
@common.execution_flags("cluster", "workers", "dashboard", "dask_security", "device", "threads", "batch_size", "force")
def invert(
    images: str = typer.Argument(..., help="Folder, list file, glob or bucket prefix of images."),
    store: str = typer.Option(..., "--store", help="Latent store to create or resume (path or s3://... URL)."),
    generator: str = typer.Option(DEFAULT_GENERATOR, "--generator",
                                  help="Built-in name, .safetensors or official .pkl (same path on every worker)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="CSV of numeric labels (first column: image id)."),
    # InvertConfig
    mode: Optional[str] = typer.Option(None, "--mode", help="optimize | encoder | hybrid | auto (default "
                                       f"{default(InvertConfig, 'mode')}: hybrid when the generator has a built-in "
                                       "encoder, else optimize)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder .safetensors (for encoder/hybrid)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Base of the per-image seeds (each image's seed comes "
                                       f"from its id; default {default(InvertConfig, 'seed')})."),
    thumbnail_size: Optional[int] = typer.Option(None, "--thumbnail-size", help="Stored reconstructions, px "
                                                 f"(default {default(InvertConfig, 'thumbnail_size')})."),
    shard_size: Optional[int] = typer.Option(None, "--shard-size", help="Images per shard (= task), fixed when the "
                                             "store is created; default: the store's, 256 for a new store."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also retry items that failed before."),
    # InversionConfig (changes of the mode's preset)
    space: Optional[str] = typer.Option(None, "--space", help=f"w, w+ or z ({PRESET})."),
    num_steps: Optional[int] = typer.Option(None, "--num-steps", "--steps", help=f"Optimisation steps ({PRESET})."),
    loss: Optional[str] = typer.Option(None, "--loss", help="Loss spec, e.g. lpips-vgg, 'clf-perceptual+0.1*mse' "
                                       f"({PRESET})."),
    initial_learning_rate: Optional[float] = typer.Option(None, "--initial-learning-rate", "--lr",
                                                          help=f"Initial learning rate ({PRESET})."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 or bf16 autocast (GPU: ~1.4x; within "
                                            "1 % of fp32's quality, BENCHMARKS.md)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="NHWC memory layout (GPU, with bf16)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the step (GPU: ~2.8x more over bf16 after "
                                 "a few minutes of compiling per worker)."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="Replay each step as one CUDA graph."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the run summary as JSON here."),
    verbose: bool = common.VERBOSE,
    execution: ExecutionOptions = None,  # from the flags of `execution_flags`
) -> None:
    inversion = given(space=space, num_steps=num_steps, loss=loss, initial_learning_rate=initial_learning_rate,
                      precision=precision, channels_last=channels_last or None, compile=compile or None,
                      cuda_graph=cuda_graph or None)
    config = InvertConfig(**given(mode=mode, encoder=encoder, seed=seed, thumbnail_size=thumbnail_size,
                                  shard_size=shard_size, retry_failed=retry_failed or None), inversion=inversion)
    config.resolve(generator)  # a bad setting is refused here, before any server starts
    with common.flow_session(verbose=verbose, progress=True):
        from flows.invert_dataset import IncompleteRun, invert_dataset

        try:
            summary, incomplete = invert_dataset(images, store, generator, config=config, execution=execution,
                                                 labels=labels), None
        except IncompleteRun as err:
            summary, incomplete = err.summary, err
    from flows.console import format_invert_summary, invert_exit_code

    if report:
        report.write_text(json.dumps(summary.to_json(), indent=2))
    typer.echo(format_invert_summary(summary))
    if incomplete is not None:
        fail(CRASH, str(incomplete))
    raise typer.Exit(invert_exit_code(summary))
