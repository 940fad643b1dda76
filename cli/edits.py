"""`ganinv render-edits`: the `render-edits` flow from the terminal. Flags are named after the fields of
`RenderEditsConfig` and `ExecutionOptions` (runtime/config.py)."""

from __future__ import annotations

from typing import Optional

import typer

from cli import common
from cli.common import default, given
from runtime.config import ExecutionOptions
from runtime.config import RenderEditsConfig as Edits

app = typer.Typer()


@app.command("render-edits")
@common.execution_flags("cluster", "workers", "dashboard", "dask_security", "device")
def render_edits(
    store: str = typer.Argument(..., help="Store path or fsspec URL."),
    directions: str = typer.Option(..., help="Comma-separated direction names (see list-directions)."),
    query: Optional[str] = typer.Option(None, help="Label query, e.g. 'smiling == 0 and eyeglasses == 1'."),
    ids: Optional[str] = typer.Option(None, help="Comma-separated image ids (instead of --query)."),
    strengths: Optional[str] = typer.Option(None, help="Comma-separated strengths; write --strengths=-3,0,3 "
                                            f"(default {','.join(f'{s:g}' for s in default(Edits, 'strengths'))})."),
    run: Optional[str] = typer.Option(None, help="Run name: edits/<run> in the store, grids in <store>.edits/<run>/ "
                                      f"(default {default(Edits, 'run')})."),
    limit: Optional[int] = typer.Option(None, help="Edit at most this many of the chosen items."),
    layers: Optional[str] = typer.Option(None, help="ws rows to edit: coarse, middle, fine, all or indices "
                                         "(default: each direction's own)."),
    batch_size: Optional[int] = typer.Option(None, help="Items per render task (and per chunk of edits/<run>; "
                                             f"default {default(Edits, 'batch_size')})."),
    generator: Optional[str] = typer.Option(None, help="Generator (default: the store's)."),
    evaluate_with: Optional[str] = typer.Option(None, help="Attribute classifier (e.g. builtin): store the edits' "
                                                "flip rates and interference as the run's evaluation."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run of that name with other content."),
    untuned: bool = typer.Option(False, "--untuned", help="Render refined items (invert --refine pivotal) with the "
                                 "shared generator, not their tuned deltas."),
    verbose: bool = common.VERBOSE,
    execution: ExecutionOptions = None,  # from the flags of `execution_flags`
) -> None:
    """Edit chosen items along stored directions: edited ws in edits/<run>, PNG grids beside the store."""
    if query is not None and ids is not None:
        raise typer.BadParameter("pass --query or --ids, not both")
    config = Edits(directions=common.csv_tuple(directions), **given(
        items=common.csv_tuple(ids) if ids else query, strengths=common.floats(strengths, "--strengths"),
        run=run, limit=limit, layers=common.layers(layers), batch_size=batch_size, generator=generator,
        evaluate_with=evaluate_with, overwrite=overwrite or None, untuned=untuned or None))
    common.existing_store(store)  # before a server starts
    with common.flow_session(verbose=verbose, progress=True):
        from flows.render_edits import render_edits as flow

        summary = flow(store, config, execution)
    typer.echo(f"edited {summary.items} items x {len(summary.directions)} directions x {len(summary.strengths)} "
               f"strengths in {summary.seconds} s; grids in {summary.grids}/")
    if summary.evaluated:
        _warn_small_rates(store, summary.run)


def _warn_small_rates(store: str, run: str) -> None:
    """One `warning:` line per direction whose evaluated rates rest on too few items (the smallest sample shown)."""
    from ganinv.directions.caveats import edit_row_caveat
    from storage import LatentStore

    rows = LatentStore.open(store).result_attrs("edits", run).get("evaluation") or []
    worst: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: (r.get("num_eligible") if r.get("target") else r.get("num_items")) or 0):
        caveat = edit_row_caveat(row)
        if caveat:
            worst.setdefault(row["direction"], caveat)
    for direction, caveat in worst.items():
        typer.echo(f"warning: {direction}: {caveat}", err=True)
