"""What the flows that fan shards out to Dask workers share: collecting the shard tasks' reports as they finish,
advancing the progress artifact and the terminal's progress events, turning a shard that failed beyond its retries
into a report with its error and whether a rerun can get past it (the run goes on; the flow decides what an
incomplete run means)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from prefect.futures import as_completed

from flows import artifacts, progress
from flows.clusters import local_workers
from ganinv.errors import UserError
from runtime.config import ExecutionOptions
from runtime.numerics import probe as probe_numerics
from runtime.shard import ShardReport
from storage import Shard
from tasks.inversion import settle_numerics


def gather_reports(store: str, items: int, submitted: Sequence[tuple[Any, Shard]],
                   report_type: type[ShardReport] = ShardReport, *, done_as: str = "inverted") -> list[Any]:
    """The reports of the `submitted` (future, shard) pairs in the order they finish; a shard whose task failed
    beyond its retries gets a `report_type` with the error, not resumable when it is a UserError (settings, a
    damaged store: a rerun meets it again). `done_as`: what the progress artifact says the shards do to items."""
    tracker = artifacts.ShardProgress(store, items, done_as=done_as)
    shard_of = {id(future): shard for future, shard in submitted}
    reports = []
    for future in as_completed([future for future, _ in submitted]):
        shard = shard_of[id(future)]
        try:
            report = future.result()
        except Exception as err:  # noqa: BLE001 - a shard that failed beyond its retries; the run goes on
            report = report_type(shard=shard.index, error=f"{type(err).__name__}: {err}",
                                 resumable=not isinstance(err, UserError))
        reports.append(report)
        done = report.items if report.error is None else len(shard)
        tracker.advance(done)
        progress.notify(progress.shard_event(report, done))
    return reports


def settled_numerics(client: Any, store: str, run_id: str, execution: ExecutionOptions,
                     storage_options: dict[str, Any] | None) -> ExecutionOptions:
    """`execution` with the numerics every shard is computed with (thread count, batching, device): recorded in the
    store by its first run and the same for every later one and every worker, so that no code depends on the worker
    count or its batch (runtime/numerics.py). The caller holds the store's lease."""
    numerics = settle_numerics(store, run_id, execution, list(client.run(probe_numerics, execution.device).values()),
                               local_workers=local_workers(client), storage_options=storage_options)
    return dataclasses.replace(execution, threads=numerics.threads,
                               batch_size=numerics.batch_size or execution.batch_size)
