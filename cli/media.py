"""`ganinv render-morphs` and `ganinv style-mix`: the flows of flows/media.py from the terminal. Flags are named
after the fields of `MorphConfig`, `StyleMixConfig` and `ExecutionOptions` (runtime/config.py)."""

from __future__ import annotations

from typing import Optional

import typer

from cli import common
from cli.common import default, given
from runtime.config import ExecutionOptions, MorphConfig, StyleMixConfig

app = typer.Typer()
STORE = typer.Argument(..., help="Store path or fsspec URL.")
GENERATOR = typer.Option(None, "--generator", help="Generator (default: the store's).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace a run of that name with other content.")


@app.command("render-morphs")
@common.execution_flags("cluster", "workers", "dashboard", "device")
def render_morphs(
    store: str = STORE,
    pairs: str = typer.Option(..., "--pairs", help="Comma-separated pairs of image ids, a:b,c:d."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Frames per morph, both ends included (default "
                                         f"{default(MorphConfig, 'frames')})."),
    method: Optional[str] = typer.Option(None, "--method", help="linear (W / W+) or slerp (default "
                                         f"{default(MorphConfig, 'method')})."),
    gif: bool = typer.Option(False, "--gif", help="Also write a looping GIF per pair."),
    fps: Optional[float] = typer.Option(None, "--fps", help=f"GIF frames per second (default "
                                        f"{default(MorphConfig, 'fps'):g})."),
    run: Optional[str] = typer.Option(None, "--run", help="Run name: edits/<run>, pictures in <store>.edits/<run>/ "
                                      f"(default {default(MorphConfig, 'run')})."),
    generator: Optional[str] = GENERATOR,
    overwrite: bool = OVERWRITE,
    verbose: bool = common.VERBOSE,
    execution: ExecutionOptions = None,  # from the flags of `execution_flags`
) -> None:
    """Morph between pairs of stored items (linear in W / W+): codes kept in edits/<run>, a grid and GIFs beside
    the store."""
    config = MorphConfig(pairs=_pairs(pairs), **given(frames=frames, method=method, gif=gif or None, fps=fps,
                                                      run=run, generator=generator, overwrite=overwrite or None))
    _run("render_morphs", store, config, execution, verbose)


@app.command("style-mix")
@common.execution_flags("cluster", "workers", "dashboard", "device")
def style_mix(
    store: str = STORE,
    content: str = typer.Option(..., "--content", help="Comma-separated image ids: the rows of the figure."),
    style: str = typer.Option(..., "--style", help="Comma-separated image ids: the columns, whose layers are "
                              "taken."),
    layers: Optional[str] = typer.Option(None, "--layers", help="coarse, middle, fine or ws indices i,j (default "
                                         f"{default(StyleMixConfig, 'layers')})."),
    run: Optional[str] = typer.Option(None, "--run", help="Run name (default "
                                      f"{default(StyleMixConfig, 'run')})."),
    generator: Optional[str] = GENERATOR,
    overwrite: bool = OVERWRITE,
    verbose: bool = common.VERBOSE,
    execution: ExecutionOptions = None,  # from the flags of `execution_flags`
) -> None:
    """Mix stored items' styles: each content item with the chosen layers of each style item (StyleGAN's figure
    3), codes kept in edits/<run>, the figure beside the store."""
    config = StyleMixConfig(content=common.csv_tuple(content), style=common.csv_tuple(style), **given(
        layers=common.layers(layers), run=run, generator=generator, overwrite=overwrite or None))
    _run("style_mix", store, config, execution, verbose)


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    """'a:b,c:d' -> (('a', 'b'), ('c', 'd'))."""
    pairs = []
    for part in common.csv_list(text) or []:
        a, sep, b = part.partition(":")
        if not sep or not a or not b:
            raise typer.BadParameter(f"{part!r}: write each pair as IMAGE_ID:IMAGE_ID, e.g. a.png:b.png",
                                     param_hint="--pairs")
        pairs.append((a, b))
    return tuple(pairs)


def _run(flow_name: str, store: str, config: MorphConfig | StyleMixConfig, execution: ExecutionOptions,
         verbose: bool) -> None:
    """Runs the flow `flows.media.<flow_name>` in the flow session and prints what it made."""
    common.existing_store(store)  # before a server starts
    with common.flow_session(verbose=verbose):
        from flows import media

        summary = getattr(media, flow_name)(store, config, execution)
    shape = " x ".join(map(str, summary.plan.shape))
    reused = "" if summary.plan.created else " (the run already held these codes)"
    typer.echo(f"{summary.plan.kind} run {summary.plan.run!r}: {shape} images{reused}; wrote "
               f"{', '.join(summary.files)} in {summary.plan.grids}/ in {summary.seconds} s")
