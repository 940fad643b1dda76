"""Commands that find and list edit directions: `fit-boundaries`, `discover-directions`, `list-directions`.
Flags are named after the fields of `FitBoundariesConfig` / `DiscoverDirectionsConfig` (runtime/config.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Optional

import typer

from cli import common
from cli.common import default, given
from runtime.config import DiscoverDirectionsConfig as Discover
from runtime.config import ExecutionOptions
from runtime.config import FitBoundariesConfig as Fit

app = typer.Typer()
STORE = typer.Argument(..., help="Store path or fsspec URL.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace directions of the same name.")


@app.command("fit-boundaries")
@common.execution_flags("device")
def fit_boundaries(
    store: str = STORE,
    attributes: Optional[str] = typer.Option(None, help="Comma-separated attributes (default: every label of the "
                                             "store, or every classifier attribute with --source samples)."),
    condition: list[str] = typer.Option([], "--condition", help="Conditional boundary ATTRIBUTE=HELD[,HELD...], "
                                        "e.g. eyeglasses=blond_hair (repeatable)."),
    space: Optional[str] = typer.Option(None, help=f"w or w+ (default {default(Fit, 'space')})."),
    source: Optional[str] = typer.Option(None, help="store (done items + their labels) or samples (sample, render, "
                                         f"score with the classifier; default {default(Fit, 'source')})."),
    generator: Optional[str] = typer.Option(None, help="Generator for --source samples (default: the store's)."),
    classifier: Optional[str] = typer.Option(None, help="Attribute classifier for --source samples (default "
                                             f"{default(Fit, 'classifier')})."),
    num_samples: Optional[int] = typer.Option(None, help=f"Samples for --source samples (default "
                                              f"{default(Fit, 'num_samples')}; paper: 500000)."),
    truncation_psi: Optional[float] = typer.Option(None, "--truncation-psi", "--truncation", help="Truncation psi "
                                                   f"of the samples (default {default(Fit, 'truncation_psi')})."),
    chosen_num_or_ratio: Optional[float] = typer.Option(None, "--chosen-num-or-ratio", "--chosen", help="Codes per "
                                                        "side: a ratio in (0, 1] or a count (default: 0.02 for "
                                                        "samples; for store labels the smaller class of 0/1 "
                                                        "labels)."),
    seed: Optional[int] = typer.Option(None),
    overwrite: bool = OVERWRITE,
    verbose: bool = common.VERBOSE,
    execution: ExecutionOptions = None,  # from the flags of `execution_flags`
) -> None:
    """InterFaceGAN boundaries (+ conditional ones) written to the store's directions/."""
    config = Fit(**given(attributes=common.csv_tuple(attributes), conditions=common.conditions(condition) or None, space=space, source=source,
                         generator=generator, classifier=classifier, num_samples=num_samples,
                         truncation_psi=truncation_psi, chosen_num_or_ratio=chosen_num_or_ratio, seed=seed,
                         overwrite=overwrite or None))
    _write_directions(_fit_flow, store, config, execution, verbose=verbose)


@app.command("discover-directions")
@common.execution_flags("device")
def discover_directions(
    store: str = STORE,
    methods: Optional[str] = typer.Option(None, help="sefa and/or ganspace (default "
                                          f"{','.join(default(Discover, 'methods'))})."),
    num_directions: Optional[int] = typer.Option(None, help="Directions per method (and per GANSpace source; "
                                                 f"default {default(Discover, 'num_directions')})."),
    sefa_layers: Optional[str] = typer.Option(None, help="Conv layers SeFa factorises: all or indices (coarse: 0,1; "
                                              f"default {default(Discover, 'sefa_layers')})."),
    ganspace_source: Optional[str] = typer.Option(None, help="samples (w from the mapping network), store (the "
                                                  "inverted corpus) or both (default "
                                                  f"{default(Discover, 'ganspace_source')})."),
    num_samples: Optional[int] = typer.Option(None, help=f"w samples for GANSpace (default "
                                              f"{default(Discover, 'num_samples')}; paper: 1000000)."),
    generator: Optional[str] = typer.Option(None, help="Generator (default: the store's)."),
    seed: Optional[int] = typer.Option(None),
    overwrite: bool = OVERWRITE,
    verbose: bool = common.VERBOSE,
    execution: ExecutionOptions = None,  # from the flags of `execution_flags`
) -> None:
    """SeFa and GANSpace directions written to the store's directions/."""
    config = Discover(**given(methods=common.csv_tuple(methods), num_directions=num_directions,
                              sefa_layers=common.layers(sefa_layers, "--sefa-layers"),
                              ganspace_source=ganspace_source, num_samples=num_samples, generator=generator,
                              seed=seed, overwrite=overwrite or None))
    _write_directions(_discover_flow, store, config, execution, verbose=verbose)


def _fit_flow():
    from flows.fit_boundaries import fit_boundaries

    return fit_boundaries


def _discover_flow():
    from flows.discover_directions import discover_directions

    return discover_directions


def _write_directions(flow: Callable[[], Any], store: str, config: Any, execution: ExecutionOptions, *,
                      verbose: bool) -> None:
    """Runs the flow that `flow()` imports (after the log settings) and says which directions it wrote."""
    common.existing_store(store)  # before a server starts
    with common.flow_session(verbose=verbose, progress=True):
        names = flow()(store, config, execution)
    typer.echo(f"wrote {len(names)} directions: {', '.join(names)}")
    _warn(_stored(store), names)


def _stored(store: str) -> dict[str, Any]:
    opened = common.existing_store(store)
    from storage.directions import list_directions as listing  # (torch) once the store is there

    return listing(opened)


def _warn(found: dict[str, Any], names: list[str] | None = None) -> None:
    """One `warning:` line on stderr per direction (of `names`, default all) whose numbers rest on too few codes."""
    from ganinv.directions.caveats import boundary_caveat

    for name, attrs in found.items():
        caveat = boundary_caveat(attrs["direction"]["provenance"]) if names is None or name in names else None
        if caveat:
            typer.echo(f"warning: {name}: {caveat}", err=True)


@app.command("list-directions")
def list_directions(store: str = STORE,
                    as_json: bool = typer.Option(False, "--json", help="Print every direction's attributes as JSON.")
                    ) -> None:
    """The directions stored in directions/: name, method, space, layers, scale, source and headline metric, and a
    warning for each boundary fitted on too few codes."""
    found = _stored(store)
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
    _warn(found)
