"""The `invert-dataset` flow: invert a folder (list file, glob, bucket prefix) of images into a latent store, sharded
over Dask workers, resumable and safe to re-run.

    from flows.invert_dataset import invert_dataset
    summary = invert_dataset("photos/", "corpus.zarr", "faces64", inversion={"num_steps": 50}, cluster="local")

Steps (each a task in `tasks/inversion.py`):

1. scan the images: ids, paths, content hashes, labels; unreadable files and duplicates are set aside with a reason;
   only new or changed files are read: the hashes of the last scan are kept in the store (`scan_cache/`, saved in
   step 2) and reused for files whose size and ETag/mtime are unchanged (tasks/dataset.py);
2. open the store, refusing one made with another generator or inversion spec, or create it; take its lease
   (renewed in the background; a second run on the same store is refused, `force=True` takes the lease over);
   keep the scan's hashes in the store for the next run;
3. plan: append the images the store has not seen (by content hash) and list the shards with pending items;
4. invert the shards on Dask workers: each task gets the store URL and a shard index, decodes and inverts that
   shard's pending items on its worker and writes them back; a worker that dies mid-shard has its shard re-run
   elsewhere (writes are idempotent: the rerun writes the same bytes);
5. summarise: store counts, this run's shards, every input left out and why (Prefect markdown + table artifacts,
   and a progress artifact updated as shards finish).

A run that crashes leaves the store consistent; running the flow again inverts only what is still pending.
The returned summary is small and JSON-able. The flow raises `IncompleteRun` (after summarising) when shards failed
beyond their retries: their items stay pending for the next run.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from prefect import flow
from prefect.artifacts import (create_markdown_artifact, create_progress_artifact, create_table_artifact,
                               update_progress_artifact)
from prefect.futures import as_completed
from prefect.utilities.annotations import quote

from flows import progress
from flows._common import new_run_id
from flows.clusters import check_cluster_name, dask_task_runner, gpu_annotation
from storage.lease import RENEWED_LEASE_TTL_S
from tasks.coordinator import check_spec, describe_generator
from tasks.inversion import (invert_shard, open_store, plan_shards, save_scan_cache, scan_dataset,
                             summarize_run)
from tasks.spec import InversionSpec
from tasks.worker import check_batch_size


class IncompleteRun(RuntimeError):
    """Some shards failed beyond their retries; their items are still pending (run again to resume)."""


@flow(name="invert-dataset")
def invert_dataset(images: str, store: str, generator: str = "faces64", *,
                   inversion: dict[str, Any] | InversionSpec | None = None, labels: str | None = None,
                   shard_size: int | None = None, cluster: str = "local", workers: int | None = None,
                   retry_failed: bool = False, force: bool = False, batch_size: int | None = None,
                   device: str = "auto", threads: int | None = None, lease_ttl_s: float = RENEWED_LEASE_TTL_S,
                   storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Invert every image of `images` into the latent store at `store` (see the module docstring).

    generator: a built-in name, `.safetensors` or official `.pkl`, at the same path on every worker.
    inversion: an InversionSpec or overrides of the generator's defaults, e.g. `{"mode": "optimize",
    "num_steps": 300, "space": "w+", "loss": "mse"}` (tasks/spec.py). labels: a CSV of numeric labels.
    shard_size: items per shard (= store chunk, = task), fixed when the store is created (None: the store's, or
    256 for a new store); smaller shards spread a small dataset over more workers. cluster: 'local',
    'local-cuda' or a scheduler address; workers: how many local workers (GPUs for local-cuda).
    retry_failed: also re-invert items that failed before. force: take the store's lease from another run.
    storage_options: fsspec options for the images and the store; they are recorded with the flow run, so keep
    credentials in the environment (AWS_* variables, instance roles), not here.
    batch_size, device, threads: per worker (defaults: 16 on CPU, 32 on CUDA, 0 = as many as fit each GPU; the
    worker's GPU if it has one;
    torch CPU threads: this machine's cores shared among local workers, else Dask's one per worker).
    """
    t0 = time.perf_counter()
    run_id = new_run_id("invert-dataset")
    check_cluster_name(cluster)
    check_batch_size(batch_size)  # before the scan, not on the first worker
    spec = inversion if isinstance(inversion, InversionSpec) else InversionSpec.for_generator(generator,
                                                                                             **(inversion or {}))
    gen = describe_generator(generator)
    encoder_sha256 = check_spec(spec, gen)
    # 1. Scan the dataset: ids, content hashes, labels; unreadable files and duplicates set aside with reasons.
    scan = scan_dataset(images, labels=labels, storage_options=storage_options, store=store)
    # 2. Open or create the store (refusing mismatches), hold its lease for the run, keep the scan's hashes.
    latent_store, created = open_store(store, quote(scan.manifest), gen, spec, chunk_items=shard_size,
                                       encoder_sha256=encoder_sha256, storage_options=storage_options)
    with latent_store.acquire_lease(run_id, ttl_s=lease_ttl_s, force=force):
        save_scan_cache(latent_store, quote(scan))  # the next run re-reads only new or changed files
        # 3. Plan: append the new images, list the shards with pending items.
        planned = plan_shards(latent_store, quote(scan.manifest), retry_failed=retry_failed, created=created)
        progress.notify({"event": "planned", "items": planned["items"], "shards": len(planned["shards"])})
        # 4. Invert the shards on Dask workers (store URL + shard index in, small dicts out).
        reports, crashed = _invert_on_dask(
            latent_store.url, planned, spec=spec, generator=generator, run_id=run_id, retry_failed=retry_failed,
            cluster=cluster, workers=workers,
            execution={"batch_size": batch_size, "device": device, "threads": threads},
            storage_options=storage_options)
        # 5. Summarise: counts, this run, every input left out and why.
        summary = summarize_run(latent_store, quote(scan), reports, crashed=crashed, planned=planned,
                                seconds=time.perf_counter() - t0)
    _publish(summary)
    if crashed:
        raise IncompleteRun(f"{len(crashed)} shard(s) failed beyond their retries (first: {crashed[0]['error']}); "
                            f"their items stay pending: run again to resume")
    return summary


def _invert_on_dask(store_url: str, planned: dict[str, Any], *, spec: InversionSpec, generator: str, run_id: str,
                    retry_failed: bool, cluster: str, workers: int | None, execution: dict[str, Any],
                    storage_options: dict[str, Any] | None) -> tuple[list[dict], list[dict]]:
    """Submits one `invert_shard` task per planned shard and collects their reports as they finish."""
    shards = planned["shards"]
    if not shards:
        return [], []
    tracker = _ShardProgress(store_url, planned["items"])
    reports, crashed = [], []
    with dask_task_runner(cluster, workers=workers) as (runner, where):
        if where.n_workers and not execution.get("threads"):  # share this machine's cores among local workers
            execution = {**execution, "threads": max(1, (os.cpu_count() or 1) // where.n_workers)}
        with gpu_annotation(runner.client):
            futures = [(runner.submit(invert_shard, parameters=dict(
                store=store_url, shard_index=shard["index"], spec=spec.to_dict(), generator=generator,
                run_id=run_id, retry_failed=retry_failed, execution=execution, storage_options=storage_options)),
                shard) for shard in shards]
        shard_of = {id(future): shard for future, shard in futures}
        for future in as_completed([future for future, _ in futures]):
            shard = shard_of[id(future)]
            try:
                report = future.result()
            except Exception as err:  # noqa: BLE001 - a shard that failed beyond its retries; the run goes on
                report = {"shard": shard["index"], "error": f"{type(err).__name__}: {err}"}
                crashed.append(report)
            else:
                reports.append(report)
            tracker.shard_finished(shard, report)
    return reports, crashed


class _ShardProgress:
    """The run's progress artifact and in-process listeners, advanced as shards finish."""

    def __init__(self, store_url: str, items: int):
        self.items, self.finished = max(items, 1), 0
        self.artifact = create_progress_artifact(progress=0.0, key=artifact_key(store_url, "progress"),
                                                 description=f"items of {store_url} inverted by this run")

    def shard_finished(self, shard: dict[str, Any], report: dict[str, Any]) -> None:
        size = report.get("items", shard["stop"] - shard["start"])
        self.finished += size
        if self.artifact is not None:
            update_progress_artifact(self.artifact, min(100.0, 100.0 * self.finished / self.items))
        progress.notify({"event": "shard", "index": shard["index"], "items": size, "done": report.get("done", 0),
                         "failed": report.get("failed", 0), "crashed": "error" in report,
                         "seconds": report.get("seconds"), "invert_s": report.get("invert_s"),
                         "load_s": report.get("load_s"), "pid": report.get("pid"), "device": report.get("device")})


def artifact_key(store_url: str, what: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes: 'invert-<store name>-<what>'."""
    name = re.sub(r"[^a-z0-9]+", "-", os.path.basename(store_url.rstrip("/")).lower()).strip("-")[:40] or "store"
    return f"invert-{name}-{what}"


def _publish(summary: dict[str, Any]) -> None:
    """Markdown summary and a table of every input left out (failed in the store or skipped by the scan)."""
    key = artifact_key(summary["store"], "summary")
    create_markdown_artifact(markdown=summary_markdown(summary), key=key, description="dataset inversion summary")
    rows = ([{"input": s["path"], "outcome": "skipped", "reason": s["reason"]} for s in summary["skipped"]]
            + [{"input": f["image_id"], "outcome": "failed", "reason": f["error"]} for f in summary["failures"]])
    if rows:
        create_table_artifact(table=rows, key=artifact_key(summary["store"], "problems"),
                              description="inputs not inverted, with the reason")


def summary_markdown(summary: dict[str, Any]) -> str:
    counts, run = summary["counts"], summary["this_run"]
    lines = [f"# Dataset inversion into `{summary['store']}`", "",
             f"- images: `{summary['images']}`; {summary['added']} new items appended; scan hashed "
             f"{summary['scan']['hashed']} files, reused {summary['scan']['reused']} cached hashes",
             f"- store: {summary['num_items']} items: {counts['done']} done, {counts['failed']} failed, "
             f"{counts['pending']} pending",
             f"- this run: {run['shards']} shards, {run['items']} items ({run['done']} done, {run['failed']} failed), "
             f"{len(run['crashed_shards'])} shards crashed; {summary['seconds']:.1f} s",
             f"- skipped by the scan: {len(summary['skipped'])}"]
    for entry in summary["skipped"][:20]:
        lines.append(f"  - `{entry['path']}`: {entry['reason']}")
    if summary["failures"]:
        lines.append(f"- failed items (first {summary['failures_listed']}):")
        lines += [f"  - `{f['image_id']}`: {f['error']}" for f in summary["failures"][:20]]
    return "\n".join(lines)
