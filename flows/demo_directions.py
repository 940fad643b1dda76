"""The demo's directions stage: boundaries from the demo store's labels, a few SeFa and GANSpace directions, and a
small edit grid, evaluated with the attribute classifier. Kept small so that it takes well under a minute on 2 CPU
cores (see the report of the edits branch for the measured time)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import flow

from flows.discover_directions import discover_directions
from flows.fit_boundaries import fit_boundaries
from flows.render_edits import render_edits
from runtime.config import DiscoverDirectionsConfig, ExecutionOptions, FitBoundariesConfig, RenderEditsConfig
from storage import LatentStore

# The embedded world's deliberately correlated pair: editing eyeglasses should leave blond hair alone.
DEMO_CONDITIONS = {"eyeglasses": ["blond_hair"]}
DEMO_ATTRIBUTES = ("eyeglasses", "blond_hair", "smiling")


@flow(name="demo-directions", log_prints=True)
def demo_directions(store_url: str, out_dir: str | Path, *, attributes: Sequence[str] = DEMO_ATTRIBUTES,
                    conditions: Mapping[str, Sequence[str]] = DEMO_CONDITIONS, num_items: int = 4,
                    strengths: Sequence[float] = (-4.0, -2.0, 0.0, 2.0, 4.0), num_discovered: int = 2,
                    ganspace_samples: int = 5000, evaluate_with: str | None = "builtin",
                    execution: ExecutionOptions = ExecutionOptions(workers=1, device="cpu")) -> dict[str, Any]:
    """1. fit InterFaceGAN boundaries from the store's labels (those of `attributes` it has; conditional ones where
    both attributes exist), 2. discover `num_discovered` SeFa and GANSpace directions, 3. edit the first
    `num_items` done items along the conditional boundary (else the first boundary), sefa-0 and ganspace-0 and copy
    the grids to `out_dir/edits/` (rendered on `execution.cluster`). Reruns replace the demo's directions and run.
    Returns paths and seconds."""
    seconds: dict[str, float] = {}
    labels = set(LatentStore.open(store_url).layout.labels)
    chosen = [a for a in attributes if a in labels]
    held = {a: tuple(h for h in hs if h in chosen) for a, hs in conditions.items() if a in chosen}
    held = {a: hs for a, hs in held.items() if hs}
    start = time.perf_counter()
    # 1. boundaries from the store's labels
    boundaries = fit_boundaries(store_url, FitBoundariesConfig(attributes=tuple(chosen), conditions=held,
                                                               overwrite=True), execution) if chosen else []
    seconds["fit_boundaries"] = time.perf_counter() - start
    # 2. SeFa and GANSpace
    start = time.perf_counter()
    discovered = discover_directions(store_url, DiscoverDirectionsConfig(
        num_directions=num_discovered, num_samples=ganspace_samples, overwrite=True), execution)
    seconds["discover_directions"] = time.perf_counter() - start
    # 3. a small edit grid, evaluated
    start = time.perf_counter()
    shown = ([b for b in boundaries if "|" in b] or boundaries)[:1] + ["sefa-0", "ganspace-0"]
    summary = render_edits(store_url, RenderEditsConfig(
        directions=tuple(shown), limit=num_items, strengths=tuple(strengths), run="demo", batch_size=num_items,
        evaluate_with=evaluate_with, overwrite=True), execution)
    seconds["render_edits"] = time.perf_counter() - start
    # 4. the grids beside the demo's other outputs
    target = Path(out_dir) / "edits"
    target.mkdir(parents=True, exist_ok=True)
    grids = [str(shutil.copyfile(f"{summary.grids}/{file}", target / file)) for file in summary.grid_files.values()]
    return dict(directions=boundaries + discovered, grids=grids, run=summary, seconds=seconds,
                total_seconds=sum(seconds.values()))
