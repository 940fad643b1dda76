"""How the edit flows reach Dask workers and choose a device (until the shared helpers of the inversion flow land).

cluster: `local` (a LocalCluster of `workers` processes, one thread each, so a module-level model cache is loaded
once per worker), `threads` (one in-process worker with `workers` threads: no new processes, no Prefect server
needed) or a scheduler address `tcp://host:8786` (workers started with `dask worker`; they report to the Prefect
server in `PREFECT_API_URL`).

Prefect in ephemeral mode (no `PREFECT_API_URL`) starts a server in every worker process (PLATFORM_NOTES), so a
`local` cluster without a configured API falls back to `threads` and says so.
"""

from __future__ import annotations

import logging

from prefect.settings import get_current_settings
from prefect_dask import DaskTaskRunner

CLUSTERS = ("local", "threads")


def dask_runner(cluster: str = "local", workers: int = 2, *, logger: logging.Logger | None = None) -> DaskTaskRunner:
    """A DaskTaskRunner for `cluster` (see the module doc) with `workers` workers."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if cluster not in CLUSTERS and "://" not in cluster:
        raise ValueError(f"cluster must be 'local', 'threads' or a scheduler address like tcp://host:8786, "
                         f"got {cluster!r}")
    if "://" in cluster:
        return DaskTaskRunner(address=cluster)
    if cluster == "local" and get_current_settings().api.url is None:
        (logger or logging.getLogger(__name__)).warning(
            "no Prefect API configured (PREFECT_API_URL unset): running the workers as threads of this process "
            "instead of a local process cluster; start `prefect server start` and export PREFECT_API_URL for "
            "process workers")
        cluster = "threads"
    processes = cluster == "local"
    return DaskTaskRunner(cluster_kwargs=dict(n_workers=workers if processes else 1,
                                              threads_per_worker=1 if processes else workers,
                                              processes=processes, dashboard_address=":0"))
