"""What a report is asked for: `ReportConfig`, the one place the defaults of `build_report` and of the
`evaluation-report` flow live (the regression thresholds are `report.regressions.Thresholds`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from report.distances import DEFAULT_MAX_ITEMS
from report.regressions import Thresholds

Gallery = tuple[str, "str | os.PathLike[str]"]  # (title, PNG path or URL)


@dataclass(frozen=True)
class ReportConfig:
    """run: the report's folder name (None: UTC time, e.g. 20261125-020000; an existing folder is replaced);
    thresholds: how much worse a metric may get before it is flagged; fid: None = FID when torch-fidelity and the
    Inception weights are here, True = required (InceptionWeightsMissing otherwise), False = skip;
    fail_on_regression: the flow ends Failed (the CLI exits 1) when a metric regressed; edit_rows / galleries:
    edit-evaluation rows (or a JSON file of them) and (title, PNG) direction galleries, by default those the store's
    edit runs recorded; device_kind: the inversion's device when the store's run log does not say (wall-clock
    throughput comes from that log: storage/runs.py); max_fd_items: items sampled for the Frechet distances; device:
    where those are computed."""

    run: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    fid: bool | None = None
    fail_on_regression: bool = True
    edit_rows: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | None = None
    galleries: Sequence[Gallery] = ()
    device_kind: str | None = None
    max_fd_items: int = DEFAULT_MAX_ITEMS
    device: str = "cpu"
