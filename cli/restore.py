"""`ganinv restore`: the `restore-dataset` flow from the terminal, and `ganinv render-restored`, which writes the
images a store's codes make (the restored images of a restoration store, the tuned reconstructions of a refined
one). Flags are named after the fields of `RestoreConfig`, `InvertConfig` and `ExecutionOptions`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli import common, invert, preflight
from cli.common import default, given
from cli.signals import interrupted_run
from ganinv.inversion_names import MASK_HOLES, MASK_RULE_FORM, RESTORATION_TASKS
from runtime.config import DEFAULT_GENERATOR, ExecutionOptions, InvertConfig, RestoreConfig

app = typer.Typer()

HELP = "\n\n".join(" ".join(paragraph.split()) for paragraph in (
    "Restore a dataset of degraded images by inverting each through its known degradation (docs/restoration.md).",
    """IMAGES are the observations: photos with holes (inpaint; masks from --mask-dir, one PNG per image id, or a
    --mask-rule), images --factor times smaller than the generator's (super-resolution), grey images (colorize) or
    noisy ones (denoise, noise std --sigma). The store keeps each image's code (G(w) is the restored image), the
    metrics of the observation it explains and, with --clean (a folder of the clean images under the same ids), the
    PSNR and SSIM of the restored image, of the restoration with the observation kept and of the plain baseline
    against the clean one. Sharding, resume, lease and bad inputs as for `ganinv invert`; `ganinv render-restored`
    writes the restored images.""",
    """Exit codes: 0 every image is restored; 1 some inputs could not be (listed; an image without its mask is
    one); 2 usage or configuration error (a bad task, factor or mask folder, missing masks, a store made with other
    settings); 3 the flow crashed or shards failed beyond their retries (run again to resume).""",
))


@app.command("restore", help=HELP)
@common.execution_flags("cluster", "workers", "dashboard", "device", "threads", "batch_size", "force")
def restore(
    ctx: typer.Context,
    images: str = typer.Argument(..., help="Folder, list file, glob or bucket prefix of the observed images."),
    store: str = typer.Option(..., "--store", help="Latent store to create or resume."),
    task: Optional[str] = typer.Option(None, "--task", help=f"{' | '.join(RESTORATION_TASKS)} (needed for a new "
                                       "store; default: an existing store's)."),
    mask_dir: Optional[Path] = typer.Option(None, "--mask-dir", help="Folder of mask PNGs: <image id>.png."),
    mask_holes: Optional[str] = typer.Option(None, "--mask-holes", help="Which colour marks a hole in the mask "
                                             f"PNGs: {' or '.join(MASK_HOLES)} (default "
                                             f"{default(RestoreConfig, 'mask_holes')})."),
    mask_rule: Optional[str] = typer.Option(None, "--mask-rule", help=f"Masks by rule: {MASK_RULE_FORM}, seeded by "
                                            "each image id."),
    factor: Optional[int] = typer.Option(None, "--factor", help="Super-resolution factor (default "
                                         f"{default(RestoreConfig, 'factor')})."),
    sigma: Optional[float] = typer.Option(None, "--sigma", help="Noise std in [-1, 1] units, for denoising (default "
                                          f"{default(RestoreConfig, 'sigma')})."),
    keep_observed: bool = typer.Option(False, "--keep-observed", help="Thumbnails (and render-restored) keep the "
                                       "observed pixels, luma or block means in the restoration."),
    clean: Optional[Path] = typer.Option(None, "--clean", help="Folder of the clean images (same ids), to score "
                                         "the restorations against."),
    generator: Optional[str] = typer.Option(None, "--generator", help="Built-in name, .safetensors or .pkl "
                                            "(default: an existing store's own, else "
                                            f"{DEFAULT_GENERATOR})."),
    mode: Optional[str] = invert.MODE,
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder .safetensors (for encoder/hybrid)."),
    num_steps: Optional[int] = invert.NUM_STEPS,
    loss: Optional[str] = typer.Option(None, "--loss", help=f"Loss spec ({invert.PRESET}; denoise: mse)."),
    space: Optional[str] = invert.SPACE,
    seed: Optional[int] = invert.SEED,
    thumbnail_size: Optional[int] = typer.Option(None, "--thumbnail-size", help="Stored restorations, px."),
    shard_size: Optional[int] = invert.SHARD_SIZE,
    retry_failed: bool = invert.RETRY_FAILED,
    report: Optional[Path] = invert.REPORT,
    verbose: bool = common.VERBOSE,
    execution: ExecutionOptions = None,  # from the flags of `execution_flags`
) -> None:
    # RestoreConfig's fields as typed, a default value too: `--factor 4` for colorize is refused, not ignored
    restore_given = common.on_command_line(
        ctx, task=task, mask_dir=_absolute(mask_dir), mask_holes=mask_holes, mask_rule=mask_rule, factor=factor,
        sigma=sigma, keep_observed=keep_observed, clean=_absolute(clean))
    inversion = given(num_steps=num_steps, loss=loss, space=space)
    settings = given(mode=mode, encoder=encoder, seed=seed, thumbnail_size=thumbnail_size)
    config = InvertConfig(inversion=inversion, **settings, **given(shard_size=shard_size,
                                                                   retry_failed=retry_failed or None))
    with interrupted_run(images, store, "restore"):  # Ctrl-C / SIGTERM: says what is done and how to resume
        # refused before any server starts, as `invert` refuses (cli/preflight.py): the paths and the mask and clean
        # folders, then the restoration and the settings given against an existing store's record (no torch), then
        # what needs the generator, and every image's mask
        preflight.check_paths(images, store, None, generator)
        preflight.check_folders({"--mask-dir": mask_dir, "--clean": clean})
        resolved = preflight.resolve(images, store, generator, config, {**settings, "inversion": inversion},
                                     force=execution.force, restore=restore_given)
        if resolved.note:
            typer.echo(resolved.note, err=True)
        from runtime.restore import check_dataset_masks

        check_dataset_masks(resolved.settings.spec, images)

        def run():
            from flows.restore import restore_dataset

            return restore_dataset(images, store, resolved.generator, restore=resolved.restoration,
                                   config=resolved.config, execution=execution)

        invert.run_and_summarize(run, verbose=verbose, report=report)


def _absolute(path: Optional[Path]) -> Optional[str]:
    """Recorded in the store and read by workers: an absolute path (URLs as given)."""
    if path is None:
        return None
    return str(path) if "://" in str(path) else str(path.expanduser().resolve())


@app.command("render-restored")
def render_restored(
    store: str = typer.Argument(..., help="Store path or fsspec URL."),
    out: Path = typer.Option(..., "--out", help="Folder for the PNGs (<image id>.png)."),
    ids: Optional[str] = typer.Option(None, "--ids", help="Comma-separated image ids (default: every done item)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many items."),
    keep_observed: Optional[bool] = typer.Option(None, "--keep-observed/--no-keep-observed", help="Paste the "
                                                 "observation back (restoration stores; default: the store's)."),
    untuned: bool = typer.Option(False, "--untuned", help="Render refined items with the shared generator, not "
                                 "their tuned deltas."),
    generator: Optional[str] = typer.Option(None, "--generator", help="Generator (default: the store's)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Write the images the store's codes make, one PNG per item: a restoration store's restored images (with the
    observation kept if asked), a refined store's tuned reconstructions, any other store's reconstructions."""
    common.existing_store(store)  # before torch loads
    from runtime.item_images import write_item_images

    written = write_item_images(store, out, ids=common.csv_tuple(ids), limit=limit, keep_observed=keep_observed,
                                untuned=untuned, generator=generator, device=device)
    typer.echo(f"wrote {written} images to {out}/")
