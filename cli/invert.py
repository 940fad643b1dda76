"""`ganinv invert`: the `invert-dataset` flow from the terminal. Flags are named after the fields they set
(`InvertConfig`, `InversionConfig`, `ExecutionOptions`); a flag left out keeps the config's default."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from cli import common, preflight
from cli.common import default, given
from cli.errors import CRASH, fail
from cli.signals import interrupted_run
from runtime.config import DEFAULT_GENERATOR, MAX_AUTO_SHARD_SIZE, ExecutionOptions, InvertConfig

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
PIVOTAL = "default: PivotalConfig's, docs/inversion.md"
# The flags of InvertConfig's and InversionConfig's fields that `restore` takes too: one definition each.
MODE = typer.Option(None, "--mode", help="optimize | encoder | hybrid | auto (default "
                    f"{default(InvertConfig, 'mode')}: hybrid when the generator has a built-in encoder, else "
                    "optimize).")
SEED = typer.Option(None, "--seed", help="Base of the per-image seeds (each image's seed comes from its id; default "
                    f"{default(InvertConfig, 'seed')}).")
SHARD_SIZE = typer.Option(None, "--shard-size", min=1, help="Images per shard (= task), fixed when the store is "
                          "created; default: the store's; for a new store, at least two shards per worker, at most "
                          f"{MAX_AUTO_SHARD_SIZE} images each).")
RETRY_FAILED = typer.Option(False, "--retry-failed", help="Also retry items that failed before.")
SPACE = typer.Option(None, "--space", help=f"w, w+ or z ({PRESET}).")
NUM_STEPS = typer.Option(None, "--num-steps", "--steps", min=1, help=f"Optimisation steps ({PRESET}).")
REPORT = typer.Option(None, "--report", help="Also write the run summary as JSON here.")


@app.command("invert", help=HELP)
@common.execution_flags("cluster", "workers", "dashboard", "dask_security", "device", "threads", "batch_size", "force",
                        "compile_cache")
def invert(
    images: str = typer.Argument(..., help="Folder, list file, glob or bucket prefix of images."),
    store: str = typer.Option(..., "--store", help="Latent store to create or resume (path or s3://... URL)."),
    generator: Optional[str] = typer.Option(None, "--generator", help="Built-in name, .safetensors or official .pkl "
                                            "(same path on every worker; default: an existing store's own, else "
                                            f"{DEFAULT_GENERATOR})."),
    labels: Optional[str] = typer.Option(None, "--labels", help="CSV of numeric labels (first column: image id)."),
    # InvertConfig
    mode: Optional[str] = MODE,
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder .safetensors from `ganinv train-encoder` "
                                          "for this generator (mode auto: hybrid from its output)."),
    seed: Optional[int] = SEED,
    thumbnail_size: Optional[int] = typer.Option(None, "--thumbnail-size", help="Stored reconstructions, px "
                                                 f"(default {default(InvertConfig, 'thumbnail_size')})."),
    shard_size: Optional[int] = SHARD_SIZE,
    retry_failed: bool = RETRY_FAILED,
    # InversionConfig (changes of the mode's preset)
    space: Optional[str] = SPACE,
    num_steps: Optional[int] = NUM_STEPS,
    loss: Optional[str] = typer.Option(None, "--loss", help="Loss spec, e.g. lpips-vgg, 'clf-perceptual+0.1*mse' "
                                       f"({PRESET})."),
    initial_learning_rate: Optional[float] = typer.Option(None, "--initial-learning-rate", "--lr",
                                                          help=f"Initial learning rate ({PRESET})."),
    betas: Optional[str] = typer.Option(None, "--betas", "--adam-betas", help="Adam's betas as B1,B2 (e.g. 0.9,0.999, "
                                        f"the projector's; 0.7,0.7, the hybrid preset's) ({PRESET})."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 or bf16 autocast (GPU: ~1.4x; within "
                                            "1 % of fp32's quality, BENCHMARKS.md)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="NHWC memory layout (GPU, with bf16)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the step (GPU: ~2.8x more over bf16 after "
                                 "a few minutes of compiling per worker)."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="Replay each step as one CUDA graph."),
    refine: Optional[str] = typer.Option(None, "--refine", help="pivotal: tune a small generator delta per image "
                                         "around its code (PTI; StyleGAN2 only; docs/inversion.md)."),
    refine_steps: Optional[int] = typer.Option(None, "--refine-steps", help=f"Pivotal tuning steps ({PIVOTAL})."),
    refine_rank: Optional[int] = typer.Option(None, "--refine-rank", help=f"Rank of each layer's delta ({PIVOTAL})."),
    refine_loss: Optional[str] = typer.Option(None, "--refine-loss", help="Tuning loss (default PTI's lpips-vgg+mse; "
                                              "clf-perceptual+mse where the inversion uses clf-perceptual)."),
    report: Optional[Path] = REPORT,
    verbose: bool = common.VERBOSE,
    execution: ExecutionOptions = None,  # from the flags of `execution_flags`
) -> None:
    inversion = given(space=space, num_steps=num_steps, loss=loss, initial_learning_rate=initial_learning_rate,
                      betas=betas, precision=precision, channels_last=channels_last or None, compile=compile or None,
                      cuda_graph=cuda_graph or None)
    settings = given(mode=mode, encoder=encoder, seed=seed, thumbnail_size=thumbnail_size,
                     refine=refine_config(refine, num_steps=refine_steps, rank=refine_rank, loss=refine_loss))
    config = InvertConfig(**settings, **given(shard_size=shard_size, retry_failed=retry_failed or None),
                          inversion=inversion)
    with interrupted_run(images, store):  # Ctrl-C / SIGTERM: says what is done and how to resume
        # Every mistake is refused here, in this process, before any server starts (cli/preflight.py): settings,
        # refinement's and an encoder's checks (they load the generator), the images, an existing store.
        preflight.check_paths(images, store, labels, generator)
        resolved = preflight.resolve(images, store, generator, config, {**settings, "inversion": config.inversion},
                                     force=execution.force)
        if resolved.note:
            typer.echo(resolved.note, err=True)

        def run():
            from flows.invert_dataset import invert_dataset

            return invert_dataset(images, store, resolved.generator, config=resolved.config, execution=execution,
                                  labels=labels)

        run_and_summarize(run, verbose=verbose, report=report)


def run_and_summarize(run: Callable[[], Any], *, verbose: bool, report: Optional[Path],
                      format_summary: Optional[Callable[[Any], str]] = None) -> None:
    """Calls `run()` (which imports and runs a flow over a store: invert, restore, refine) in the flow session, then
    ends the command as `invert` does: the summary printed (`format_summary`, default the inversion's) and saved as
    JSON to `report`, exit 0 when it is complete, else 1, or 3 when shards failed beyond their retries
    (`IncompleteRun`, which refinement's `IncompleteRefinement` is too)."""
    with common.flow_session(verbose=verbose, progress=True):
        from flows.invert_dataset import IncompleteRun

        try:
            summary, incomplete = run(), None
        except IncompleteRun as err:
            summary, incomplete = err.summary, err
    from flows.console import format_invert_summary, invert_exit_code

    if report:
        report.write_text(json.dumps(summary.to_json(), indent=2))
    typer.echo((format_summary or format_invert_summary)(summary))
    if incomplete is not None:
        fail(CRASH, str(incomplete))
    raise typer.Exit(invert_exit_code(summary))


def refine_config(refine: Optional[str], **fields: Any) -> Optional[dict[str, Any]]:
    """`--refine pivotal` and its `--refine-*` flags -> `InvertConfig.refine` (PivotalConfig fields changed)."""
    changed = given(**fields)
    if refine is None:
        if changed:  # the flags as typed: --refine-steps sets num_steps
            flags = ("--refine-" + ("steps" if k == "num_steps" else k.replace("_", "-")) for k in changed)
            raise typer.BadParameter(f"{', '.join(flags)} need --refine pivotal", param_hint="--refine")
        return None
    if refine != "pivotal":
        raise typer.BadParameter(f"{refine!r}: the one refinement is 'pivotal'", param_hint="--refine")
    return changed
