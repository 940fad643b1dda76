"""Step 4b of a report: HTML from Jinja2 templates shipped in `report/templates/` (package data). Pages are static and
self-contained: inline CSS, no scripts, no fonts or links outside the reports folder, images by relative path."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from ganinv.item_metrics import QUALITY

EDIT_COLUMNS = ("direction", "method", "target", "strength", "flip_rate", "num_eligible", "target_delta",
                "interference", "interference_max", "num_items", "pixel_change", "perceptual_change", "caveat")


def _num(value: Any, digits: int = 4) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"


def _pct(value: Any) -> str:
    return "—" if not isinstance(value, (int, float)) or not math.isfinite(value) else f"{100 * value:.1f} %"


def _dig(body: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(body, Mapping):
            return None
        body = body.get(key)
    return body


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=_num, pct=_pct, dig=_dig)
    return env


def render_run(metrics: Mapping[str, Any], *, figures: Mapping[str, str | None], grids: Sequence[Mapping[str, Any]],
               galleries: Sequence[Mapping[str, str]], history: Sequence[Mapping[str, Any]],
               grid_reason: str = "") -> str:
    """index.html of one run. `history`: earlier runs' metrics.json bodies, oldest first."""
    comparison = metrics["comparison"]
    regressions = comparison["regressions"]
    flagged = {r["check"] for r in regressions}
    flagged_metrics = {r["metric"].split(".")[1] for r in regressions if r["metric"].startswith("quality.")}
    quality = metrics["quality"]
    headline = [m for m in ("psnr", "ssim", *metrics["perceptual_metrics"]) if m in quality]
    label_metrics = [m for m in QUALITY if m in quality and m != "mse"]
    rows = metrics["edits"]["evaluation"]
    edit_columns = [c for c in EDIT_COLUMNS if any(row.get(c) is not None if c == "caveat" else c in row
                                                   for row in rows)]
    return environment().get_template("report.html.j2").render(
        m=metrics, cmp=comparison, regressions=regressions, flagged=flagged, flagged_metrics=flagged_metrics,
        headline=headline, label_metrics=label_metrics, clf_note=any(name.startswith("clf") for name in quality),
        figures=dict(figures), grids=grids, grid_reason=grid_reason, galleries=galleries, edit_columns=edit_columns,
        runs=[*history, metrics])


def render_index(runs: Sequence[Mapping[str, Any]]) -> str:
    """The reports folder's index.html: every run, newest first."""
    updated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return environment().get_template("reports_index.html.j2").render(runs=list(reversed(runs)), updated=updated)
