"""`ganinv report`: the evaluation report of a store (report/). Flags are named after `ReportConfig`'s fields."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli import common
from cli.common import given

app = typer.Typer()
REGRESSION_EXIT_CODE = 1  # the report was written and found regressions (2: bad usage or input, 3: a bug)


@app.command("report")
def report(
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
    fail_on_regression: bool = typer.Option(True, "--fail-on-regression/--no-fail-on-regression",
                                            help=f"Exit with code {REGRESSION_EXIT_CODE} when a metric regressed."),
) -> None:
    """Write the evaluation report of STORE (HTML, metrics.json, plots) and flag regressions against the last run.
    Exit codes: 0 written, no regression; 1 written, regressions found; 2 bad usage or input; 3 a bug."""
    common.existing_store(store)  # before torch and matplotlib load
    from report import ReportConfig, Thresholds, build_report

    config = ReportConfig(**given(run=run, thresholds=Thresholds.parse(threshold), fid=fid, edit_rows=edit_rows,
                                  galleries=tuple(_gallery(g) for g in gallery),
                                  fail_on_regression=fail_on_regression))
    result = build_report(store, reports_root, config)
    for regression in result.regressions:
        typer.echo(f"REGRESSION: {regression.message}", err=True)
    typer.echo(result.url)
    if result.regressions and config.fail_on_regression:
        raise typer.Exit(REGRESSION_EXIT_CODE)


def _gallery(text: str) -> tuple[str, str]:
    title, sep, path = text.rpartition("=")
    if not sep or not title or not path:
        raise typer.BadParameter(f"{text!r}: write TITLE=PATH_TO_PNG", param_hint="--gallery")
    return title, path
