"""Flow: InterFaceGAN boundaries for every labelled attribute (plus conditional ones) into `directions/<name>`.

Two sources of training data (`FitBoundariesConfig.source`, runtime/config.py):
- `store`: the store's done items (their w, the mean of the ws rows, or W+) and the labels of its manifest;
- `samples`: InterFaceGAN's recipe: sample z, render with the store's generator, score with the attribute classifier,
  fit on the most extreme `chosen_num_or_ratio` of each end.

Each direction records method, space, source, generator identity, the data used and the SVM's validation accuracy
(layout: storage/directions.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow, get_run_logger

from flows import artifacts
from flows.prefect_api import new_run_id
from runtime.config import ExecutionOptions, FitBoundariesConfig
from tasks.directions import fit_boundaries as fit, save_directions


@flow(name="fit-boundaries", log_prints=True)
def fit_boundaries(store: str, config: FitBoundariesConfig = FitBoundariesConfig(),
                   execution: ExecutionOptions = ExecutionOptions(), *,
                   storage_options: dict[str, Any] | None = None) -> list[str]:
    """Fits one boundary per attribute and one per `config.conditions` entry (`{'eyeglasses': ['blond_hair']}` adds
    `interfacegan-eyeglasses|blond_hair`, orthogonal to the blond_hair boundary). Returns the names written."""
    # 1. fit the boundaries, from the store's labels or from scored samples of the store's generator
    found = fit(store, config, execution, storage_options=storage_options)
    # 2. write them to directions/<name> under the store's run lease
    made_by = dict(flow="fit_boundaries", method="interfacegan", config=dataclasses.asdict(config))
    names = save_directions(store, found, made_by=made_by, overwrite=config.overwrite,
                            run_id=new_run_id("fit-boundaries"), storage_options=storage_options)
    artifacts.publish_directions("fit-boundaries", found,
                                 f"InterFaceGAN boundaries written to {store} ({config.source})")
    get_run_logger().info("wrote %d directions to %s: %s", len(names), store, ", ".join(names))
    return names
