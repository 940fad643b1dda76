"""The tasks of `invert-dataset`: thin wrappers around `runtime.coordinator`, `runtime.shard` and `storage.scan`.
`invert_shard` runs on Dask workers; the others run in the flow's process."""

from __future__ import annotations

import functools
from typing import Any

from prefect import get_run_logger, task

from runtime import coordinator, numerics, ood, shard
from runtime.config import ExecutionOptions, InvertConfig
from runtime.coordinator import InvertPlan, InvertSummary, Settings
from runtime.numerics import Numerics
from runtime.ood import OodSummary
from runtime.progress import step
from runtime.shard import ShardReport
from storage import LatentStore, Manifest
from storage.scan import ScanResult, scan_images
from tasks.policy import NO_CACHE_POLICY, RETRY


@task(name="check-settings", cache_policy=NO_CACHE_POLICY)
def check_settings(generator: str, config: InvertConfig, store: str | None = None,
                   storage_options: dict[str, Any] | None = None) -> Settings:
    """0. Resolve the settings for the generator (an existing store keeps the preset it was made with) and check
    what every worker would fail on, before any starts."""
    return coordinator.check_settings(generator, config, store=store, storage_options=storage_options)


@task(name="scan-dataset", **RETRY)
def scan_dataset(images: str, labels: str | None = None, storage_options: dict[str, Any] | None = None,
                 store: str | None = None) -> ScanResult:
    """1. List, hash and label the images, reusing the hashes cached in `store` for unchanged files (progress: files
    hashed or reused)."""
    previous, note = LatentStore.read_scan_cache(store, storage_options=storage_options) if store else ({}, "")
    if note:
        (get_run_logger().warning if "unreadable" in note else get_run_logger().info)(note)
    return scan_images(images, labels=labels, storage_options=storage_options, previous=previous,
                       progress=functools.partial(step, f"scanning {images}"))


@task(name="open-store", **RETRY)
def open_store(store: str, manifest: Manifest, settings: Settings, *, shard_size: int | None,
               workers: int | None = None, storage_options: dict[str, Any] | None = None,
               run_id: str | None = None) -> tuple[LatentStore, bool]:
    """2. Open the store, refusing a mismatching one, or create it (shards sized for `workers`) under run
    `run_id`'s lease; returns (store, created now)."""
    return coordinator.open_store(store, manifest, settings, chunk_items=shard_size, workers=workers,
                                  storage_options=storage_options, run_id=run_id)


@task(name="save-scan-cache", cache_policy=NO_CACHE_POLICY)
def save_scan_cache(store: LatentStore, scan: ScanResult) -> bool:
    """Keep the scan's hashes in the store for the next run (the caller holds the lease); a failure only costs the
    next run a full hash."""
    saved, note = coordinator.save_scan_cache(store, scan)
    (get_run_logger().info if saved or not note else get_run_logger().warning)(note)
    return saved


@task(name="plan-shards", **RETRY)
def plan_shards(store: LatentStore, manifest: Manifest, *, retry_failed: bool, created: bool,
                settings: Settings | None = None) -> InvertPlan:
    """3. Append the new images, make room for the stages' results, list the shards with work to do (the caller
    holds the lease), repairing what a rerun could not get past (corrupt chunks: their items are requeued)."""
    plan = coordinator.plan(store, manifest, retry_failed=retry_failed, created=created, settings=settings)
    for repair in plan.repairs:
        get_run_logger().warning(repair)
    return plan


@task(name="settle-numerics", cache_policy=NO_CACHE_POLICY)
def settle_numerics(store: str, run_id: str, execution: ExecutionOptions, probes: list[dict[str, Any]], *,
                    local_workers: int | None, storage_options: dict[str, Any] | None = None) -> Numerics:
    """4a. The numerics of this run: the store's recorded ones, checked against the workers and options, or chosen
    and recorded now (the flow holds the lease)."""
    latent_store = LatentStore.open(store, "r+", run_id=run_id, storage_options=storage_options)
    return numerics.settle(latent_store, execution, probes, local_workers=local_workers)


@task(name="invert-shard", task_run_name="invert-shard-{shard_index}", **{**RETRY, "retry_delay_seconds": 10})
def invert_shard(store: str, shard_index: int, *, generator: str, run_id: str, retry_failed: bool,
                 execution: ExecutionOptions, storage_options: dict[str, Any] | None = None) -> ShardReport:
    """4. Invert the pending items of one shard on this worker and write them to the store."""
    return shard.run_shard(store, shard_index, generator=generator, run_id=run_id, retry_failed=retry_failed,
                           execution=execution, storage_options=storage_options)


@task(name="summarize-run", retries=1, cache_policy=NO_CACHE_POLICY)
def summarize_run(store: LatentStore, scan: ScanResult, reports: list[ShardReport], *, added: int,
                  seconds: float, shard_note: str = "") -> InvertSummary:
    """5. Count what the store holds and list every input left out, with its reason."""
    return coordinator.summarize(store, scan, reports, added=added, seconds=seconds, shard_note=shard_note)


@task(name="score-items", **RETRY)
def score_items(store: LatentStore) -> OodSummary | None:
    """5a. Every item's out-of-distribution score, calibrated against the whole store (the caller holds the lease)."""
    summary = ood.score_store(store)
    if summary is not None:
        get_run_logger().info("ood scores: %s", summary.describe())
    return summary


@task(name="record-run", **RETRY)
def record_run(store: LatentStore, summary: InvertSummary, reports: list[ShardReport], *, run_id: str) -> bool:
    """5b. Add this run to the store's run log if it inverted anything (for the report's throughput)."""
    return coordinator.record_run(store, summary, reports, run_id=run_id) is not None
