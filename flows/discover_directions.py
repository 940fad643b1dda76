"""Flow: unsupervised edit directions into `directions/<name>`: SeFa (closed form from the generator's style
weights, `sefa-<k>`) and GANSpace (PCA of w sampled from the mapping network, `ganspace-<k>`, and/or of the store's
inverted corpus, `ganspace-store-<k>`; strengths in the component's standard deviations)."""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow, get_run_logger

from flows import artifacts
from flows.prefect_api import new_run_id
from runtime.config import DiscoverDirectionsConfig, ExecutionOptions
from tasks.directions import discover_directions as discover, save_directions


@flow(name="discover-directions", log_prints=True)
def discover_directions(store: str, config: DiscoverDirectionsConfig = DiscoverDirectionsConfig(),
                        execution: ExecutionOptions = ExecutionOptions(), *,
                        storage_options: dict[str, Any] | None = None) -> list[str]:
    """Discovers `config.num_directions` directions per method (and GANSpace source) and writes them; returns the
    names written."""
    # 1. discover (the generator must be the one the store's codes belong to)
    found = discover(store, config, execution, storage_options=storage_options)
    # 2. write them to directions/<name> under the store's run lease
    made_by = dict(flow="discover_directions", **dataclasses.asdict(config))
    names = save_directions(store, found, made_by=made_by, overwrite=config.overwrite,
                            run_id=new_run_id("discover-directions"), storage_options=storage_options)
    artifacts.publish_directions("discover-directions", found, f"SeFa / GANSpace directions written to {store}")
    get_run_logger().info("wrote %d directions to %s: %s", len(names), store, ", ".join(names))
    return names
