"""Prefect tasks of the dataset inversion flow: thin, typed wrappers around `tasks.dataset`, `tasks.coordinator`
and `tasks.worker`, with retries declared here. They pass a store URL, shard indices and small dicts, never arrays.

`invert_shard` runs on Dask workers; the others run in the flow's process (they are called, not submitted). None of
them caches across runs (`NO_CACHE`): the store, not Prefect's result cache, knows what is done. Retries are for
what may pass (I/O, a lost GPU, a bucket hiccup), not for bad settings: `transient` says which.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ganinv.generators import GeneratorLoadError
from storage import LatentStore, LeaseHeldError, LeaseLostError, Manifest
from tasks import coordinator, worker
from tasks.dataset import ScanResult, scan_images
from tasks.spec import InversionSpec

# Errors that the same call would raise again: wrong settings, wrong inputs, a store that belongs to another run.
PERMANENT_ERRORS = (ValueError, TypeError, FileNotFoundError, PermissionError, GeneratorLoadError, LeaseHeldError,
                    LeaseLostError, worker.WorkerSetupError)


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry unless the failure is one of PERMANENT_ERRORS."""
    return not isinstance(state.result(raise_on_failure=False), PERMANENT_ERRORS)


@task(name="scan-dataset", retries=2, retry_delay_seconds=5, retry_condition_fn=transient, cache_policy=NO_CACHE)
def scan_dataset(images: str, labels: str | None = None, storage_options: dict[str, Any] | None = None,
                 store: str | None = None) -> ScanResult:
    """1. List, hash and label the images (a folder, list file, glob or bucket prefix). `store`: reuse the hashes
    of files unchanged since the scan cached in that store (none yet, or unreadable: hash every file)."""
    previous: dict[str, tuple[str, str]] = {}
    if store is not None:
        previous, note = LatentStore.read_scan_cache(store, storage_options=storage_options)
        log = get_run_logger()
        (log.warning if "unreadable" in note else log.info)(note)
    return scan_images(images, labels=labels, storage_options=storage_options, previous=previous)


@task(name="open-store", retries=2, retry_delay_seconds=5, retry_condition_fn=transient, cache_policy=NO_CACHE)
def open_store(store: str, manifest: Manifest, generator: coordinator.GeneratorInfo, spec: InversionSpec, *,
               chunk_items: int, encoder_sha256: str | None,
               storage_options: dict[str, Any] | None = None) -> tuple[LatentStore, bool]:
    """2. Open the store, refusing a mismatching one, or create it; returns (store, created now)."""
    return coordinator.open_store(store, manifest, generator, spec, chunk_items=chunk_items,
                                  encoder_sha256=encoder_sha256, storage_options=storage_options)


@task(name="save-scan-cache", cache_policy=NO_CACHE)
def save_scan_cache(store: LatentStore, scan: ScanResult) -> bool:
    """Keeps the scan's hashes in the store for the next run (the caller holds the lease). A failure is logged, not
    raised: the next run then hashes every file again. Returns whether it was saved (an unchanged cache is not
    written again: a nightly run over an unchanged corpus writes nothing here)."""
    if not scan.hash_cache_changed:
        return False
    try:
        size = store.write_scan_cache(scan.hash_cache)
    except Exception as err:  # noqa: BLE001 - the cache only saves time
        get_run_logger().warning(f"scan cache not saved ({type(err).__name__}: {err}); the next run hashes every file")
        return False
    get_run_logger().info(f"scan cache of {len(scan.hash_cache)} files saved ({size} bytes)")
    return True


@task(name="plan-shards", retries=2, retry_delay_seconds=5, retry_condition_fn=transient, cache_policy=NO_CACHE)
def plan_shards(store: LatentStore, manifest: Manifest, *, retry_failed: bool = False, created: bool = False
                ) -> dict[str, Any]:
    """3. Append the new images and list the shards with work to do (the caller holds the lease)."""
    return coordinator.plan(store, manifest, retry_failed=retry_failed, created=created)


@task(name="invert-shard", retries=2, retry_delay_seconds=10, retry_condition_fn=transient, cache_policy=NO_CACHE,
      task_run_name="invert-shard-{shard_index}")
def invert_shard(store: str, shard_index: int, spec: dict[str, Any], generator: str, run_id: str | None = None,
                 retry_failed: bool = False, execution: dict[str, Any] | None = None,
                 storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """4. Invert the pending items of one shard on this worker and write them to the store; returns counts."""
    return worker.run_shard(store, shard_index, spec, generator=generator, run_id=run_id, retry_failed=retry_failed,
                            storage_options=storage_options, **(execution or {}))


@task(name="summarize-run", retries=1, cache_policy=NO_CACHE)
def summarize_run(store: LatentStore, scan: ScanResult, reports: list[dict[str, Any]], *,
                  crashed: list[dict[str, Any]], planned: dict[str, Any], seconds: float) -> dict[str, Any]:
    """5. Count what the store holds and list every input left out, with its reason."""
    return coordinator.summarize(store, scan, reports, crashed=crashed, planned=planned, seconds=seconds)
