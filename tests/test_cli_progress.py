"""Progress of the long steps (issue 19, item 9): sampling and PCA for GANSpace, fitting boundaries, rendering edits
and codes announce themselves through runtime/progress.py, and the CLI shows them as rich bars on a terminal and as
plain lines otherwise (a start line, at most one line every few seconds, an end line)."""

from __future__ import annotations

import numpy as np

from flows import console
from runtime import progress
from runtime.config import DiscoverDirectionsConfig, FitBoundariesConfig
from runtime.directions import discover, fit_from_store


def _steps(events: list[dict]) -> dict[str, list[tuple[int, int]]]:
    found: dict[str, list[tuple[int, int]]] = {}
    for event in events:
        if event["event"] == "step":
            found.setdefault(event["step"], []).append((event["done"], event["total"]))
    return found


def test_ganspace_sampling_and_boundary_fitting_report_their_progress(edit_world):
    events: list[dict] = []
    with progress.listening(events.append):
        discover(edit_world[0], DiscoverDirectionsConfig(methods=("ganspace",), num_directions=2, num_samples=5000),
                 device="cpu")
        fit_from_store(edit_world[0], FitBoundariesConfig(attributes=("a", "b"), conditions={"a": ("b",)}))
    steps = _steps(events)
    sampling = steps["GANSpace: sampling w and fitting the PCA"]
    assert sampling[0] == (0, 5000) and sampling[-1] == (5000, 5000) and len(sampling) == 4  # 2000-sample batches
    assert [done for done, _ in sampling] == sorted(done for done, _ in sampling)
    assert steps["InterFaceGAN: fitting 2 boundaries on 48 codes"] == [(0, 2), (1, 2), (2, 2)]


def test_without_a_terminal_a_step_prints_its_start_its_end_and_little_between(capsys, monkeypatch):
    clock = iter(np.arange(0.0, 100.0, 0.5))
    monkeypatch.setattr(console.time, "monotonic", lambda: float(next(clock)))
    with console.progress_bar():
        advance = progress.step("rendering edits", 10)
        for _ in range(10):
            advance(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "rendering edits: 0/10" and lines[-1] == "rendering edits: 10/10"
    assert len(lines) == 4  # 0.5 s per event: one line at 2 s and one at 4 s, besides the start and the end
