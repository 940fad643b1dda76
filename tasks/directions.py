"""The tasks of `fit-boundaries` and `discover-directions`: thin wrappers around `runtime.directions`. They return
`Direction` records (a few kilobytes each) and the names written."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task

from ganinv.directions.direction import Direction
from runtime import directions
from runtime.config import DiscoverDirectionsConfig, ExecutionOptions, FitBoundariesConfig
from tasks.policy import NO_CACHE_POLICY, RETRY


@task(name="fit-boundaries", cache_policy=NO_CACHE_POLICY)
def fit_boundaries(store: str, config: FitBoundariesConfig, execution: ExecutionOptions,
                   storage_options: Mapping[str, Any] | None = None) -> list[Direction]:
    """InterFaceGAN boundaries from the store's labels or from classifier-scored samples."""
    return directions.fit_boundaries(store, config, device=execution.device, batch_size=execution.batch_size,
                                     storage_options=storage_options)


@task(name="discover-directions", cache_policy=NO_CACHE_POLICY)
def discover_directions(store: str, config: DiscoverDirectionsConfig, execution: ExecutionOptions,
                        storage_options: Mapping[str, Any] | None = None) -> list[Direction]:
    """SeFa and GANSpace directions of the store's generator (and corpus)."""
    return directions.discover(store, config, device=execution.device, storage_options=storage_options)


@task(name="save-directions", **RETRY)
def save_directions(store: str, found: list[Direction], *, made_by: Mapping[str, Any], overwrite: bool, run_id: str,
                    storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Write them to `directions/<name>` under the store's run lease; returns the names written."""
    return directions.save(store, found, made_by=made_by, overwrite=overwrite, run_id=run_id,
                           storage_options=storage_options)
