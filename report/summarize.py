"""Step 2 of a report: the run's numbers, as the JSON-ready dict that becomes `metrics.json` (see report/schema.py
for the keys). Every value is a plain float, int, str, list or dict; a value that could not be computed is None and
a `reason` says why."""

from __future__ import annotations

import datetime as _dt
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ganinv.directions.caveats import boundary_caveat, edit_row_caveat
from ganinv.item_metrics import PERCEPTUAL, QUALITY
from ganinv.item_metrics import better as metric_better
from ganinv.item_metrics import label as metric_label
from report.collect import RunData
from report.schema import SCHEMA_NAME, SCHEMA_VERSION
from storage.runs import working_runs

LABEL_BINS = ("low", "mid", "high")  # continuous labels are split at their tertiles
MAX_FAILURE_REASONS = 20
FAILURE_EXAMPLES = 5


def describe(values: np.ndarray) -> dict[str, float | int | None]:
    """n, mean, std, median, p05, p95, min, max of the finite values (None when there are none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return dict(n=0, mean=None, std=None, median=None, p05=None, p95=None, min=None, max=None)
    p05, median, p95 = np.percentile(finite, [5, 50, 95])
    std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return dict(n=int(finite.size), mean=float(finite.mean()), std=std, median=float(median), p05=float(p05),
                p95=float(p95), min=float(finite.min()), max=float(finite.max()))


def counts(data: RunData) -> dict[str, Any]:
    """Items per status; failure_rate = failed / (done + failed), None before anything finished."""
    done, failed = int(data.done.sum()), int(data.failed.sum())
    finished = done + failed
    return dict(items=data.num_items, done=done, failed=failed, pending=data.num_items - finished,
                failure_rate=failed / finished if finished else None)


def quality(data: RunData) -> dict[str, dict[str, Any]]:
    """Distribution of each per-item metric the store has values for, over done items."""
    out = {}
    for name, values in data.metrics.items():
        stats = describe(values[data.done])
        if stats["n"]:
            out[name] = dict(label=metric_label(name), better=metric_better(name), **stats)
    return out


def label_groups(values: np.ndarray) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """('binary', [('0', mask), ('1', mask)]) for 0/1 labels, else ('continuous', tertile masks low/mid/high)."""
    finite = np.isfinite(values)
    present = values[finite]
    if present.size and np.isin(present, (0.0, 1.0)).all():
        return "binary", [(str(int(v)), finite & (values == v)) for v in (0.0, 1.0) if (present == v).any()]
    if present.size < len(LABEL_BINS):
        return "continuous", []
    edges = np.quantile(present, [1 / 3, 2 / 3])
    bins = np.digitize(values, edges)
    return "continuous", [(name, finite & (bins == i)) for i, name in enumerate(LABEL_BINS)]


def by_label(data: RunData) -> dict[str, dict[str, Any]]:
    """For each label, the done items split into groups (0/1, or low/mid/high tertiles) with each quality metric's
    mean, so a reader sees which kinds of images invert worse."""
    names = [m for m in QUALITY if m in data.metrics and np.isfinite(data.metrics[m][data.done]).any()]
    out = {}
    for label, values in data.labels.items():
        kind, groups = label_groups(np.where(data.done, values, np.nan))
        rows = []
        for group, mask in groups:
            row: dict[str, Any] = dict(group=group, n=int(mask.sum()))
            if kind == "continuous":
                row["range"] = [float(values[mask].min()), float(values[mask].max())] if mask.any() else None
            for m in names:
                row[m] = describe(data.metrics[m][mask])["mean"]
            rows.append(row)
        if rows:
            out[label] = dict(kind=kind, groups=rows)
    return out


def failures(data: RunData) -> dict[str, Any]:
    """Failed items grouped by their error message (most frequent first), with a few example ids each."""
    failed = np.flatnonzero(data.failed)
    reason_of = {int(i): data.errors[i] or "(no message)" for i in failed}
    reasons = Counter(reason_of.values())
    table = [dict(reason=reason, count=count,
                  examples=[str(data.image_ids[i]) for i, r in reason_of.items() if r == reason][:FAILURE_EXAMPLES])
             for reason, count in reasons.most_common(MAX_FAILURE_REASONS)]
    return dict(count=int(failed.size), distinct_reasons=len(reasons), reasons=table)


def throughput(data: RunData, *, device_kind: str | None = None) -> dict[str, Any]:
    """Cost from the per-item `seconds` metric (each item's share of its batch's device time); wall-clock speed from
    the store's run log, over the runs that inverted something (a rerun with nothing to do does not count).
    GPU-seconds when the runs (or `device_kind`) say a GPU was used, device-seconds otherwise."""
    seconds = data.metrics.get("seconds")
    processed = data.done | data.failed
    timed = seconds[processed] if seconds is not None else np.zeros(0)
    timed = timed[np.isfinite(timed)]
    total = float(timed.sum()) if timed.size else None
    per_image = total / timed.size if timed.size else None
    worked = working_runs(list(data.runs))
    wall = sum(float(run["seconds"]) for run in worked) or None
    items = sum(int(run["items"]) for run in worked)
    devices = {str(d) for run in worked for d in run.get("devices") or ()}
    kind = device_kind or ("cuda" if any(d.startswith("cuda") for d in devices) else next(iter(devices), "device"))
    last = dict(worked[-1]) if worked else None
    return dict(device_kind=kind, unit=f"{'GPU' if kind.startswith('cuda') or kind == 'gpu' else 'device'}-seconds",
                timed_items=int(timed.size), device_seconds_total=total, device_seconds_per_image=per_image,
                images_per_device_second=1 / per_image if per_image else None, runs=len(worked), run_items=items,
                wall_seconds=wall, images_per_second=items / wall if wall else None, last_run=last)


def code_version() -> dict[str, Any]:
    """The ganinv version and, when the code runs from a git checkout, its commit (with '-dirty' if modified)."""
    from ganinv import __version__

    repo = Path(__file__).resolve().parents[1]
    commit = None
    if not (repo / ".git").exists():  # an installed copy: the version is all there is
        return dict(ganinv=__version__, git=None)
    try:
        commit = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=12"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return dict(ganinv=__version__, git=commit)


def provenance(data: RunData) -> dict[str, Any]:
    """What made the codes (generator, inversion config, ganinv version, dataset) and what made this report."""
    a = data.attributes
    g = a.generator
    config = dict(g.config)
    short = {k: config[k] for k in ("img_resolution", "z_dim", "w_dim", "c_dim") if k in config}
    return dict(store=dict(url=data.store.url, created=a.created, ganinv_version=a.ganinv_version,
                           schema_version=a.schema_version, num_items=a.dataset.num_items,
                           chunk_items=a.chunking.chunk_items),
                generator=dict(sha256=g.sha256, source=g.source, architecture=g.architecture or None, config=short,
                               num_ws=a.layout.num_ws),
                inversion=dict(a.inversion),
                dataset=dict(root=a.dataset.root, manifest_hash=a.dataset.manifest_hash,
                             appends=len(a.dataset.history),
                             last_append=a.dataset.history[-1].get("at") if a.dataset.history else None),
                report_code=code_version())


def results(data: RunData, edit_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Directions and edit runs recorded in the store, and the edit-evaluation rows (one per direction, strength)."""
    directions = [_direction_row(name, attrs) for name, attrs in sorted(data.results.get("directions", {}).items())]
    edits = [dict(name=name, created=attrs.get("created"), made_by=_made_by(attrs))
             for name, attrs in sorted(data.results.get("edits", {}).items())]
    evaluation = [_clean(dict(row, caveat=edit_row_caveat(row))) for row in edit_rows]
    return dict(directions=directions, edit_runs=edits, evaluation=evaluation)


def _direction_row(name: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """From `directions/<name>` attributes: `direction` = Direction.attrs() (method, space, provenance) and made_by."""
    direction = attrs.get("direction") if isinstance(attrs.get("direction"), Mapping) else {}
    provenance = direction.get("provenance") if isinstance(direction.get("provenance"), Mapping) else {}
    made_by = _made_by(attrs)
    return dict(name=name, method=direction.get("method") or made_by.get("method"),
                space=direction.get("space") or made_by.get("space"),
                attribute=provenance.get("attribute") or made_by.get("attribute"), created=attrs.get("created"),
                caveat=boundary_caveat(provenance))


def _made_by(attrs: Mapping[str, Any]) -> dict[str, Any]:
    made_by = attrs.get("made_by") or {}
    return dict(made_by) if isinstance(made_by, Mapping) else {}


def _clean(value: Any) -> Any:
    """NaN and infinities -> None (metrics.json is strict JSON), numpy scalars -> Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def summarize(data: RunData, *, run: str, distribution: Mapping[str, Any],
              edit_rows: Sequence[Mapping[str, Any]] = (), device_kind: str | None = None) -> dict[str, Any]:
    """The metrics.json body (without `comparison`, which needs the earlier runs)."""
    perceptual = [m for m in PERCEPTUAL if m in data.metrics and np.isfinite(data.metrics[m]).any()]
    body = dict(schema=SCHEMA_NAME, schema_version=SCHEMA_VERSION, run=run,
                generated_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
                counts=counts(data), quality=quality(data), perceptual_metrics=perceptual, by_label=by_label(data),
                failures=failures(data), distribution=dict(distribution),
                throughput=throughput(data, device_kind=device_kind),
                provenance=provenance(data), edits=results(data, edit_rows))
    return _clean(body)
