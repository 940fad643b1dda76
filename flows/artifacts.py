"""What the flows show in the Prefect UI: markdown, table and progress artifacts of a run (keys are lowercase
letters, digits and dashes). Called at the end of a flow, after its steps; a deployment run has no terminal, so this
is where its outcome is read."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from prefect.artifacts import (create_markdown_artifact, create_progress_artifact, create_table_artifact,
                               update_progress_artifact)

from ganinv.directions.direction import Direction
from runtime.coordinator import InvertSummary
from runtime.edits import EditSummary, file_stem


def artifact_key(store_url: str, what: str) -> str:
    """'invert-<store name>-<what>': Prefect artifact keys allow lowercase letters, digits and dashes."""
    name = re.sub(r"[^a-z0-9]+", "-", os.path.basename(store_url.rstrip("/")).lower()).strip("-")[:40] or "store"
    return f"invert-{name}-{what}"


class ShardProgress:
    """The progress artifact of a run's shards (an inversion's, a refinement's: `done_as`), advanced as they
    finish."""

    def __init__(self, store_url: str, items: int, *, done_as: str = "inverted"):
        self.items, self.finished = max(items, 1), 0
        self.artifact = create_progress_artifact(progress=0.0, key=artifact_key(store_url, "progress"),
                                                 description=f"items of {store_url} {done_as} by this run")

    def advance(self, items: int) -> None:
        self.finished += items
        if self.artifact is not None:
            update_progress_artifact(self.artifact, min(100.0, 100.0 * self.finished / self.items))


def publish_inversion(summary: InvertSummary) -> None:
    """Markdown summary and a table of every input left out (failed in the store or skipped by the scan)."""
    create_markdown_artifact(markdown=inversion_markdown(summary), key=artifact_key(summary.store, "summary"),
                             description="dataset inversion summary")
    rows = ([{"input": s.path, "outcome": "skipped", "reason": s.reason} for s in summary.skipped]
            + [{"input": f["image_id"], "outcome": "failed", "reason": f["error"]} for f in summary.failures])
    if rows:
        create_table_artifact(table=rows, key=artifact_key(summary.store, "problems"),
                              description="inputs not inverted, with the reason")


def inversion_markdown(summary: InvertSummary) -> str:
    counts, run = summary.counts, summary.this_run
    lines = [f"# Dataset inversion into `{summary.store}`", "",
             f"- images: `{summary.images}`; {summary.added} new items appended; scan hashed {summary.hashed} files, "
             f"reused {summary.reused} cached hashes",
             f"- store: {summary.num_items} items: {counts['done']} done, {counts['failed']} failed, "
             f"{counts['pending']} pending",
             f"- this run: {run.shards} shards, {run.items} items ({run.done} done, {run.failed} failed), "
             f"{len(run.crashed_shards)} shards crashed; {summary.seconds or 0.0:.1f} s",
             f"- skipped by the scan: {len(summary.skipped)}"]
    lines += [f"  - `{entry.path}`: {entry.reason}" for entry in summary.skipped[:20]]
    if summary.failures:
        lines.append(f"- failed items (first {len(summary.failures)}):")
        lines += [f"  - `{f['image_id']}`: {f['error']}" for f in summary.failures[:20]]
    return "\n".join(lines)


def publish_directions(key: str, directions: Sequence[Direction], description: str) -> None:
    """One table row per direction: name, method, space, layers, scale and its headline metrics."""
    keys = ("attribute", "conditions", "val_accuracy", "num_train", "eigenvalue", "explained_variance_ratio")
    rows = [dict(name=d.name, method=d.method, space=d.space, layers="all" if d.layers is None else str(list(d.layers)),
                 scale=round(d.scale, 4), **{k: _short(d.provenance[k]) for k in keys if k in d.provenance})
            for d in directions]
    create_table_artifact(key=key, table=rows, description=description)


def _short(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else (",".join(value) if isinstance(value, list) else value)


def publish_edits(summary: EditSummary, rendered: Sequence[dict[str, Any]]) -> None:
    """The edit run: its size, what was rendered now, where each direction's grid is."""
    images, seconds = sum(r["images"] for r in rendered), sum(r["seconds"] for r in rendered)
    lines = [f"# Edit run `{summary.run}`", "",
             f"{summary.items} items x {len(summary.directions)} directions x {len(summary.strengths)} strengths; "
             f"{len(rendered)} batches rendered now ({images} images, {seconds:.1f} task-seconds); flow "
             f"{summary.seconds} s.", "",
             f"Grids (rows = items, columns = strengths {list(summary.strengths)}): `{summary.grids}/`", ""]
    lines += [f"- `{name}`: `{summary.grid_files[name]}`" if name in summary.grid_files
              else f"- `{name}`: pages in `{file_stem(name)}/`" for name in summary.directions]
    create_markdown_artifact(key="render-edits", markdown="\n".join(lines), description="batch edits")

