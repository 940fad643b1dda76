"""`ganinv render`: a store's codes (reconstructions, or an edit run's edited codes) as PNG files at the generator's
own resolution (runtime/render_codes.py). It runs in the command's process: no Prefect server, no cluster."""

from __future__ import annotations

from typing import Optional

import typer

from cli import common

app = typer.Typer()


@app.command("render")
def render(
    store: str = typer.Argument(..., help="Store path or fsspec URL."),
    what: str = typer.Option(..., "--what", help="reconstructions (each done item's ws) or edits (an edit run's "
                             "edited codes: --run)."),
    out: str = typer.Option(..., "--out", help="Folder (or bucket prefix) for the PNG files."),
    run: Optional[str] = typer.Option(None, "--run", help="The edit run for --what edits (see render-edits)."),
    query: Optional[str] = typer.Option(None, help="Label query for --what reconstructions, e.g. 'smiling == 1'."),
    ids: Optional[str] = typer.Option(None, help="Comma-separated image ids for --what reconstructions."),
    limit: Optional[int] = typer.Option(None, help="Render at most this many items."),
    generator: Optional[str] = typer.Option(None, help="Generator (default: the store's)."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1, ... or auto."),
) -> None:
    """Write stored codes as PNG files at the generator's resolution: <out>/<image id>.png for reconstructions,
    <out>/<direction>/<image id>_<strength>.png for edits."""
    from runtime.render_codes import plan_render, render_codes

    if query is not None and ids is not None:
        raise typer.BadParameter("pass --query or --ids, not both")
    if what == "edits" and (query is not None or ids is not None):
        raise typer.BadParameter("--query and --ids choose stored items: with --what edits, --run and --limit "
                                 "choose what is rendered")
    plan = plan_render(store, what=what, run=run, items=common.csv_tuple(ids) if ids else query, limit=limit)
    from flows.console import progress_bar
    from runtime.progress import step

    with progress_bar():
        images = len(plan.rows) * (len(plan.run.direction_names) * len(plan.run.strengths) if plan.run else 1)
        done = render_codes(plan, out, generator=generator, device=device,
                            progress=step(f"rendering {what}", images))
    typer.echo(f"wrote {done.images} PNG files of {done.items} items ({done.resolution} px) under {out}")
