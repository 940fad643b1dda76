"""The `refine-store` flow: more optimisation steps for every code of a latent store, from the codes it holds
(issue 23; runtime/refine_store.py says what a pass is and why codes are replaced, their predecessors kept).

    from flows.refine_store import refine_store
    from runtime.config import ExecutionOptions, RefineStoreConfig
    summary = refine_store("corpus.zarr", RefineStoreConfig(steps=100), execution=ExecutionOptions(cluster="local"))

Steps, each a task (tasks/refine_store.py):
0. check: the store holds done codes that refinement can continue, the generator is the store's, the pass (a new
   target step count, or the unfinished pass of the same settings to resume);
1. take the store's lease; create or resume the pass; list the shards with items below its target;
2. refine the shards on Dask workers (store URL, shard index and pass name in; small reports out); a worker keeps
   the codes it starts from before it replaces them, so a shard re-run after a crash writes the same bytes;
3. summarise: the pass is closed when every done item reached its target; unreadable inputs keep their codes and
   are listed.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow

from flows import progress
from flows.clusters import check_execution, dask_client, dask_runner, gpu_annotation
from flows.invert_dataset import IncompleteRun
from flows.prefect_api import new_run_id
from flows.shard_runs import gather_reports, settled_numerics
from runtime.config import ExecutionOptions, RefineStoreConfig
from runtime.coordinator import incomplete_message
from runtime.refine_store import RefinePlan, RefineShardReport, RefineSummary
from storage import LatentStore
from storage.lease import RENEWED_LEASE_TTL_S
from tasks.refine_store import check_refinement, plan_refinement, refine_shard, summarize_refinement


class IncompleteRefinement(IncompleteRun):
    """Some shards failed beyond their retries; their items keep their codes (run again to resume the pass)."""


@flow(name="refine-store")
def refine_store(store: str, config: RefineStoreConfig, *, generator: str | None = None,
                 execution: ExecutionOptions = ExecutionOptions(),
                 storage_options: dict[str, Any] | None = None) -> RefineSummary:
    """Refine every done item of the store at `store` by `config.steps` more steps (see the module docstring).
    generator: None = the one the store names (it must have the store's identity)."""
    t0 = time.perf_counter()
    run_id = new_run_id("refine-store")
    check_execution(execution)
    # 0. Check the store, its codes, the generator and the pass before anything starts.
    settings = check_refinement(store, config, generator, storage_options=storage_options)
    latent_store = LatentStore.open(store, "r+", storage_options=storage_options)
    with latent_store.acquire_lease(run_id, ttl_s=RENEWED_LEASE_TTL_S, force=execution.force):
        # 1. Create or resume the pass; list the shards with items below its target.
        plan = plan_refinement(latent_store, settings)
        progress.notify({"event": "planned", "items": plan.items, "shards": len(plan.shards), "doing": "refining"})
        # 2. Refine the shards on Dask workers (store URL, shard index, pass name in; small reports out).
        reports = [] if not plan.shards else refine_shards.with_options(task_runner=dask_runner(execution))(
            latent_store.url, plan, generator=settings.generator, run_id=run_id, execution=execution,
            storage_options=storage_options)
        # 3. Summarise; close the pass when every done item reached its target.
        summary = summarize_refinement(latent_store, settings, reports, seconds=time.perf_counter() - t0)
    if summary.crashed_shards:
        raise IncompleteRefinement(incomplete_message(summary.crashed_shards, resume="their items keep their codes: "
                                                      "run again with the same --steps to resume the pass"), summary)
    return summary


@flow(name="refine-shards")
def refine_shards(store: str, plan: RefinePlan, *, generator: str, run_id: str, execution: ExecutionOptions,
                  storage_options: dict[str, Any] | None = None) -> list[RefineShardReport]:
    """Step 2, on the Dask task runner it is given: one `refine_shard` task per planned shard (one per GPU where
    workers offer GPUs); a shard that fails beyond its retries becomes a report with its error."""
    client = dask_client()
    execution = settled_numerics(client, store, run_id, execution, storage_options)
    with gpu_annotation(client):
        submitted = [(refine_shard.submit(store, shard.index, generator=generator, name=plan.name, run_id=run_id,
                                          execution=execution, storage_options=storage_options), shard)
                     for shard in plan.shards]
    return gather_reports(store, plan.items, submitted, RefineShardReport, done_as="refined")

