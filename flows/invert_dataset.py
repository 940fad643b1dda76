"""The `invert-dataset` flow: invert a folder (list file, glob, bucket prefix) of images into a latent store, sharded
over Dask workers, resumable and safe to re-run.

    from flows.invert_dataset import invert_dataset
    from runtime.config import DEFAULT_GENERATOR, ExecutionOptions, InvertConfig
    summary = invert_dataset("photos/", "corpus.zarr", "faces64", config=InvertConfig(inversion={"num_steps": 50}),
                             execution=ExecutionOptions(cluster="local"))

Steps, each a task (tasks/inversion.py):
0. check the settings: resolve `config` for the generator; refuse what every worker would fail on;
1. scan the images: ids, content hashes, labels; unreadable files and duplicates set aside with a reason; only new
   or changed files are read (the last scan's hashes are kept in the store);
2. take the store's lease (renewed in the background; a second run is refused, `execution.force` takes the lease
   over), then open the store, refusing one made with another generator or settings, or create it; keep the scan's
   hashes;
3. plan: append the images the store has not seen (by content hash), create or grow the result groups of the
   config's stages (pivotal deltas), list the shards with pending items;
4. invert the shards on Dask workers (the subflow `invert-shards`, given `flows.clusters.dask_runner`): a task gets
   the store URL and a shard index and writes that shard; a worker that dies mid-shard has its shard re-run
   elsewhere (writes are idempotent);
5. summarise: every item's out-of-distribution score against the whole store (hybrid and encoder stores), store
   counts, this run's shards, every input left out and why (artifacts: flows/artifacts.py); a run that inverted
   anything is added to the store's run log (storage/runs.py), which the report's throughput uses.

A run that crashes leaves the store consistent; running the flow again inverts only what is still pending. Shards
that failed beyond their retries end the run with `IncompleteRun` (after the summary): their items stay pending.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.utilities.annotations import quote

from flows import artifacts, progress
from flows.clusters import check_execution, dask_client, dask_runner, expected_workers, gpu_annotation
from flows.prefect_api import new_run_id
from flows.shard_runs import gather_reports, settled_numerics
from runtime.config import DEFAULT_GENERATOR, ExecutionOptions, InvertConfig
from runtime.coordinator import InvertPlan, InvertSummary, incomplete_message, shard_note
from runtime.shard import ShardReport
from storage import LatentStore
from storage.lease import RENEWED_LEASE_TTL_S
from tasks.inversion import (check_settings, invert_shard, open_store, plan_shards, record_run, save_scan_cache,
                             scan_dataset, score_items, summarize_run)


class IncompleteRun(RuntimeError):
    """Some shards failed beyond their retries; their items are still pending (run again to resume). `summary`: the
    run's summary, written before this was raised."""

    def __init__(self, message: str, summary: InvertSummary):
        super().__init__(message)
        self.summary = summary


@flow(name="invert-dataset")
def invert_dataset(images: str, store: str, generator: str = DEFAULT_GENERATOR, *,
                   config: InvertConfig = InvertConfig(),
                   execution: ExecutionOptions = ExecutionOptions(), labels: str | None = None,
                   storage_options: dict[str, Any] | None = None) -> InvertSummary:
    """Invert every image of `images` into the latent store at `store` (see the module docstring).

    generator: a built-in name, `.safetensors` or official `.pkl`, at the same path on every worker. config: what
    each image gets (runtime/config.py); execution: where and how it runs. labels: a CSV of numeric labels.
    storage_options: fsspec options for the images and the store; they are recorded with the flow run, so keep
    credentials in the environment (AWS_* variables, instance roles), not here.
    """
    t0 = time.perf_counter()
    run_id = new_run_id("invert-dataset")
    check_execution(execution)
    # 0. Resolve and check the settings before anything is scanned or started (an existing store: with its preset).
    settings = check_settings(generator, config, store, storage_options)
    # 1. Scan the dataset: ids, content hashes, labels; unreadable files and duplicates set aside with reasons.
    scan = scan_dataset(images, labels=labels, storage_options=storage_options, store=store)
    # 2. Take the store's lease for the run, then open or create the store under it (refusing mismatches), keep
    #    the scan's hashes. The lease comes first: no other run creates, appends or plans between our steps.
    workers = expected_workers(execution)
    with LatentStore.take_lease(store, run_id, ttl_s=RENEWED_LEASE_TTL_S, force=execution.force,
                                storage_options=storage_options):
        latent_store, created = open_store(store, quote(scan.manifest), settings, shard_size=config.shard_size,
                                           workers=workers, storage_options=storage_options, run_id=run_id)
        shards = shard_note(latent_store, created=created, given=config.shard_size, workers=workers)
        save_scan_cache(latent_store, quote(scan))
        # 3. Plan: append the new images, list the shards with pending items.
        plan = plan_shards(latent_store, quote(scan.manifest), retry_failed=config.retry_failed, created=created,
                           settings=settings)
        progress.notify({"event": "planned", "items": plan.items, "shards": len(plan.shards)})
        # 4. Invert the shards on Dask workers (store URL + shard index in, small reports out).
        reports = [] if not plan.shards else invert_shards.with_options(task_runner=dask_runner(execution))(
            latent_store.url, plan, generator=generator, run_id=run_id, retry_failed=config.retry_failed,
            execution=execution, storage_options=storage_options)
        # 5. Summarise: out-of-distribution scores over the whole store, counts, every input left out and why.
        score_items(latent_store)
        summary = summarize_run(latent_store, quote(scan), reports, added=plan.added,
                                seconds=time.perf_counter() - t0, shard_note=shards)
        record_run(latent_store, summary, reports, run_id=run_id)  # the report's throughput: runs that did work
    artifacts.publish_inversion(summary)
    crashed = summary.this_run.crashed_shards
    if crashed:
        raise IncompleteRun(incomplete_message(crashed), summary)
    return summary


@flow(name="invert-shards")
def invert_shards(store: str, plan: InvertPlan, *, generator: str, run_id: str, retry_failed: bool,
                  execution: ExecutionOptions, storage_options: dict[str, Any] | None = None) -> list[ShardReport]:
    """Step 4 of invert-dataset, on the Dask task runner it is given: one `invert_shard` task per planned shard (one
    per GPU where workers offer GPUs); a shard that fails beyond its retries becomes a report with its error."""
    client = dask_client()
    execution = settled_numerics(client, store, run_id, execution, storage_options)
    with gpu_annotation(client):
        submitted = [(invert_shard.submit(store, shard.index, generator=generator, run_id=run_id,
                                          retry_failed=retry_failed, execution=execution,
                                          storage_options=storage_options), shard) for shard in plan.shards]
    return gather_reports(store, plan.items, submitted)
