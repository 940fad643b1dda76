"""`build_report`: a store in, a report folder out.

    reports_root/
      index.html                 every run, newest first (rewritten by each report)
      <run>/index.html           the report: static, self-contained (inline CSS, no scripts, relative image links)
      <run>/metrics.json         the same numbers, machine-readable (report/schema.py)
      <run>/*.png                plots and image grids; <run>/galleries/ holds copied edit galleries

A run's folder is written under a temporary name and renamed into place when complete, so a crashed report never
leaves a half folder that later reports would read as history. The folder can be moved or copied as a whole.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from PIL import Image

from report import applications, figures
from report.collect import RunData, collect
from report.config import Gallery, ReportConfig
from report.distances import distribution_distances
from report.regressions import Regression, Thresholds, caveats, compare
from report.render import render_index, render_run
from report.schema import SCHEMA_NAME
from report.summarize import summarize

GALLERY_MIN_WIDTH, GALLERY_MAX_WIDTH = 600, 1100  # display widths of copied galleries, px
SAMPLE_PAIRS = 12
WORST_PAIRS = 8


@dataclass(frozen=True)
class ReportResult:
    """Where the report is, its metrics.json body, and the regressions it flagged."""

    path: Path
    metrics: dict[str, Any]
    regressions: tuple[Regression, ...]

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()


def default_run_name(now: _dt.datetime | None = None) -> str:
    """UTC time, sortable and safe in paths: '20261125-020000'."""
    return (now or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y%m%d-%H%M%S")


def load_history(reports_root: Path, *, exclude: str | None = None) -> list[dict[str, Any]]:
    """metrics.json bodies of the runs in `reports_root` (oldest first by generated_at), skipping `exclude` and
    folders that hold no readable report of this schema."""
    runs = []
    for path in sorted(Path(reports_root).glob("*/metrics.json")):
        if path.parent.name == exclude or path.parent.name.startswith("."):
            continue
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if body.get("schema") == SCHEMA_NAME and "run" in body:
            runs.append(body)
    return sorted(runs, key=lambda b: (str(b.get("generated_at")), str(b.get("run"))))


def load_edit_rows(edit_rows: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | None,
                   data: RunData) -> list[Mapping[str, Any]]:
    """Rows given directly, read from a JSON file (a list of rows, or {'rows': [...]}), or else those the store's
    `edits/<run>` groups carry in their `evaluation` attribute."""
    if edit_rows is None:
        return [row for attrs in data.results.get("edits", {}).values() for row in attrs.get("evaluation", [])]
    if isinstance(edit_rows, (str, os.PathLike)):
        loaded = json.loads(Path(edit_rows).read_text())
        return list(loaded["rows"] if isinstance(loaded, Mapping) else loaded)
    return list(edit_rows)


def _grid_captions(data: RunData, indices: np.ndarray) -> list[str]:
    psnr, ssim = data.metrics.get("psnr"), data.metrics.get("ssim")
    captions = []
    for i in indices:
        parts = [f"{psnr[i]:.1f} dB" if psnr is not None and np.isfinite(psnr[i]) else "",
                 f"SSIM {ssim[i]:.3f}" if ssim is not None and np.isfinite(ssim[i]) else ""]
        captions.append(f"{str(data.image_ids[i])[:24]}\n{'  '.join(p for p in parts if p)}")
    return captions


def write_grids(data: RunData, folder: Path) -> tuple[list[dict[str, Any]], str]:
    """A seeded random sample of done items and the worst ones by PSNR, each as original | reconstruction pairs."""
    if data.thumbnail_size is None:
        return [], "the store keeps no reconstruction thumbnails (create it with thumbnail_size=)."
    done = np.flatnonzero(data.done)
    if done.size == 0:
        return [], "no item is done."
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(done, min(SAMPLE_PAIRS, done.size), replace=False))
    selections = [("grid_sample.png", f"Random sample of {len(sample)} done items", sample)]
    psnr = data.metrics.get("psnr")
    if psnr is not None and done.size > SAMPLE_PAIRS:
        worst = done[np.argsort(np.where(np.isfinite(psnr[done]), psnr[done], np.inf))[:WORST_PAIRS]]
        selections.append(("grid_worst.png", f"The {len(worst)} worst items by PSNR", worst))
    grids = []
    for name, title, indices in selections:
        originals, errors = data.originals(indices, data.thumbnail_size)
        figures.pair_grid(originals, data.thumbnails(indices), _grid_captions(data, indices), folder, name)
        missing = sum(e is not None for e in errors)
        grids.append(dict(file=name, title=title + (f" ({missing} original(s) unreadable: black)" if missing else ""),
                          scale=figures.TILE // data.thumbnail_size))
    return grids, ""


def discover_galleries(data: RunData) -> list[Gallery]:
    """The per-direction PNG grids of the store's edit runs: `made_by.grids` names their folder (beside the store,
    local or remote) and its `index.json` maps direction -> file. Runs without them are skipped."""
    found: list[Gallery] = []
    for run, attrs in sorted(data.results.get("edits", {}).items()):
        grids = (attrs.get("made_by") or {}).get("grids") if isinstance(attrs.get("made_by"), Mapping) else None
        if not grids:
            continue
        try:
            with fsspec.open(f"{grids}/index.json", "r", **data.store.storage_options) as f:
                index = json.load(f)
        except (OSError, ValueError):
            continue
        files = sorted((index.get("grids") or {}).items())
        found += [(f"edit run {run}: {name}", f"{grids}/{file}") for name, file in files]
    return found


def copy_galleries(galleries: Sequence[Gallery], folder: Path, *, storage_options: Mapping[str, Any] | None = None
                   ) -> list[dict[str, Any]]:
    """Copies each gallery PNG (a path or fsspec URL) into `folder/galleries/`, so the report stays self-contained."""
    out = []
    for k, (title, path) in enumerate(galleries):
        target = folder / "galleries" / f"{k:02d}_{Path(str(path)).name}"
        target.parent.mkdir(exist_ok=True)
        try:
            with fsspec.open(str(path), "rb", **dict(storage_options or {})) as f:
                target.write_bytes(f.read())
        except FileNotFoundError:
            raise FileNotFoundError(f"gallery {title!r}: {path} does not exist (galleries are the PNG grids "
                                    "render_edits writes)") from None
        with Image.open(target) as image:  # small grids are shown enlarged, pixels kept sharp
            width = min(GALLERY_MAX_WIDTH, image.width * max(1, -(-GALLERY_MIN_WIDTH // image.width)))
        out.append(dict(title=title, file=target.relative_to(folder).as_posix(), width=width))
    return out


def write_figures(data: RunData, metrics: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
                  folder: Path) -> dict[str, str | None]:
    previous = history[-1] if history else None
    made = dict(histograms=figures.histograms(data, folder, previous),
                by_label_psnr=figures.label_bars(metrics["by_label"], folder, "psnr"),
                trends=figures.trends(history, metrics, folder))
    return made


def _comparison(previous: Mapping[str, Any] | None, metrics: Mapping[str, Any], thresholds: Thresholds
                ) -> tuple[dict[str, Any], list[Regression]]:
    regressions, skipped = compare(previous, metrics, thresholds)
    return dict(previous_run=previous.get("run") if previous else None, thresholds=dataclasses.asdict(thresholds),
                regressions=[dataclasses.asdict(r) for r in regressions], not_compared=skipped,
                caveats=caveats(previous, metrics) if previous else []), regressions


def build_report(store_url: str, reports_root: str | os.PathLike[str], config: ReportConfig = ReportConfig(), *,
                 storage_options: Mapping[str, Any] | None = None) -> ReportResult:
    """Writes `reports_root/<run>/` (index.html, metrics.json, plots, grids) for the store at `store_url` as
    `config` asks (report/config.py), compares it with the newest earlier run in `reports_root`, and rewrites
    `reports_root/index.html`."""
    run = config.run or default_run_name()
    root = Path(reports_root)
    # 1. read the store
    data = collect(store_url, storage_options=storage_options)
    # 2. compute the run's numbers
    distribution = distribution_distances(data, fid_mode=config.fid, max_items=config.max_fd_items,
                                          device=config.device)
    metrics = summarize(data, run=run, distribution=distribution, edit_rows=load_edit_rows(config.edit_rows, data),
                        device_kind=config.device_kind)
    metrics.update(applications.summarize(data))  # restoration, pivotal refinement, ood scores (None if absent)
    # 3. compare with the previous run
    history = load_history(root, exclude=run)
    metrics["comparison"], regressions = _comparison(history[-1] if history else None, metrics, config.thresholds)
    # 4. write plots, grids and pages into a temporary folder, then move it into place
    path = _write_run_folder(root, run, data, metrics, history, config.galleries)
    # 5. refresh the reports index
    (root / "index.html").write_text(render_index([*history, metrics]), encoding="utf-8")
    return ReportResult(path=path, metrics=metrics, regressions=tuple(regressions))


def _write_run_folder(root: Path, run: str, data: RunData, metrics: dict[str, Any],
                      history: Sequence[Mapping[str, Any]], galleries: Sequence[Gallery]) -> Path:
    if not run or "/" in run or run.startswith("."):
        raise ValueError(f"run name {run!r} must be a plain folder name (no '/', not starting with '.')")
    tmp = root / f".{run}.{uuid.uuid4().hex[:8]}.partial"
    tmp.mkdir(parents=True)
    try:
        made = write_figures(data, metrics, history, tmp) | applications.write_figures(data, metrics, tmp)
        grids, grid_reason = write_grids(data, tmp)
        copied = copy_galleries(list(galleries) or discover_galleries(data), tmp,
                                storage_options=data.store.storage_options)
        metrics["figures"] = {k: v for k, v in made.items() if v} | {g["file"][:-4]: g["file"] for g in grids}
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=False), encoding="utf-8")
        html = render_run(metrics, figures=made, grids=grids, galleries=copied, history=history,
                          grid_reason=grid_reason)
        (tmp / "index.html").write_text(html, encoding="utf-8")
        final = root / run
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final / "index.html"


def demo_report(store_url: str, reports_root: str | os.PathLike[str], config: ReportConfig = ReportConfig()) -> Path:
    """The last stage of `make demo`: a report of the demo store; returns the index.html path (print its URI)."""
    return build_report(store_url, reports_root, config).path
