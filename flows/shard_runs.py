"""What the flows that fan shards out to Dask workers share: collecting the shard tasks' reports as they finish,
advancing the progress artifact and the terminal's progress events, turning a shard that failed beyond its retries
into a report with its error and whether a rerun can get past it (the run goes on; the flow decides what an
incomplete run means)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from prefect.futures import as_completed

from flows import artifacts, progress
from flows.clusters import local_workers
from ganinv.errors import UserError
from runtime.config import ExecutionOptions
from runtime.shard import ShardReport
from storage import Shard


def gather_reports(store: str, items: int, submitted: Sequence[tuple[Any, Shard]],
                   report_type: type[ShardReport] = ShardReport) -> list[Any]:
    """The reports of the `submitted` (future, shard) pairs in the order they finish; a shard whose task failed
    beyond its retries gets a `report_type` with the error, not resumable when it is a UserError (settings, a
    damaged store: a rerun meets it again)."""
    tracker = artifacts.ShardProgress(store, items)
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


def shared_threads(client: Any, execution: ExecutionOptions) -> ExecutionOptions:
    """This machine's cores shared among its local workers, unless `execution.threads` says otherwise."""
    if local_workers(client) and not execution.threads:
        return dataclasses.replace(execution, threads=max(1, (os.cpu_count() or 1) // local_workers(client)))
    return execution
