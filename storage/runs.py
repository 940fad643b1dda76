"""The store's run log: one record per inversion run that inverted something, so that throughput is computed from
the runs that did the work (a nightly no-op rerun does not make a corpus look 50x faster).

Each record is the attributes of a group `runs/<run_id>` (no arrays): `run_id`, `finished` (UTC ISO 8601),
`seconds` (the run's wall time, scan to summary), `items` (items this run's finished shards wrote: `done` +
`failed`), `device_seconds` (the workers' inversion time, summed over shards), `workers` (how many took shards) and
`devices` (which kinds, e.g. ["cpu"] or ["cuda:0"]). Stores made before the log have no `runs` group: the report
then says their wall-clock throughput is unknown. Written by the coordinator, under the store's lease.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from storage import arrays
from storage.growth import now_iso
from storage.schema import check_name, to_jsonable

if TYPE_CHECKING:
    from storage.latent_store import LatentStore

FIELDS = ("run_id", "finished", "seconds", "items", "done", "failed", "device_seconds", "workers", "devices")


def record_run(store: LatentStore, run_id: str, **record: Any) -> dict[str, Any]:
    """Adds (or replaces) the record of run `run_id` (see the module docstring for the fields) and returns it."""
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise ValueError(f"run record fields {unknown} are not among {FIELDS}")
    entry = to_jsonable({"run_id": run_id, "finished": now_iso(), **record})
    store.group.require_group(arrays.RUNS).create_group(check_name(run_id, what="run"), overwrite=True,
                                                        attributes=entry)
    store.consolidate()
    return entry


def read_runs(store: LatentStore) -> list[dict[str, Any]]:
    """Every recorded run, oldest first (none for a store made before the log)."""
    try:
        parent = store.group[arrays.RUNS]
    except KeyError:
        return []
    runs = [dict(child.attrs) for _, child in parent.groups()]
    return sorted(runs, key=lambda run: (str(run.get("finished", "")), str(run.get("run_id", ""))))


def working_runs(runs: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The runs that inverted at least one item with a known wall time."""
    return [run for run in runs if int(run.get("items") or 0) > 0 and float(run.get("seconds") or 0) > 0]
