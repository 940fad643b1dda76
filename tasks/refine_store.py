"""The tasks of `refine-store`: thin wrappers around `runtime.refine_store`. `refine_shard` runs on Dask workers;
the others run in the flow's process (the coordinator, under the store's lease from step 1 on)."""

from __future__ import annotations

from typing import Any

from prefect import task

from runtime import refine_store
from runtime.config import ExecutionOptions, RefineStoreConfig
from runtime.refine_store import RefinePlan, RefineSettings, RefineShardReport, RefineSummary
from storage import LatentStore
from tasks.policy import NO_CACHE_POLICY, RETRY


@task(name="check-refinement", cache_policy=NO_CACHE_POLICY)
def check_refinement(store: str, config: RefineStoreConfig, generator: str | None = None,
                     storage_options: dict[str, Any] | None = None) -> RefineSettings:
    """0. The store holds codes refinement can continue, with this generator; the pass to run."""
    return refine_store.check(store, config, generator=generator, storage_options=storage_options)


@task(name="plan-refinement", **RETRY)
def plan_refinement(store: LatentStore, settings: RefineSettings) -> RefinePlan:
    """1. Create or resume the pass; list the shards with items below its target."""
    return refine_store.plan(store, settings)


@task(name="refine-shard", task_run_name="refine-shard-{shard_index}", **{**RETRY, "retry_delay_seconds": 10})
def refine_shard(store: str, shard_index: int, *, generator: str, name: str, run_id: str,
                 execution: ExecutionOptions, storage_options: dict[str, Any] | None = None) -> RefineShardReport:
    """2. Refine the items of one shard below the pass's target and write them."""
    return refine_store.run_refine_shard(store, shard_index, generator=generator, name=name, run_id=run_id,
                                         execution=execution, storage_options=storage_options)


@task(name="summarize-refinement", retries=1, cache_policy=NO_CACHE_POLICY)
def summarize_refinement(store: LatentStore, settings: RefineSettings, reports: list[RefineShardReport], *,
                         seconds: float) -> RefineSummary:
    """3. Count, and close the pass when every done item reached its target."""
    return refine_store.summarize(store, settings, reports, seconds=seconds)
