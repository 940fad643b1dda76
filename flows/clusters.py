"""The Dask cluster a flow runs its shards on, picked by name (`--cluster`):

- `local`: a LocalCluster of worker *processes* with one thread each on this machine (CPU inversion, tests);
- `local-cuda`: one worker process per visible GPU on this machine, each seeing only its GPU
  (`CUDA_VISIBLE_DEVICES`) and offering the resource `GPU=1`, so exactly one shard runs per GPU;
- an address such as `tcp://head:8786`: an existing Dask scheduler (many machines; see infra/dask/README.md), or
  `tls://head:8786` with `dask_security` (a YAML file of this client's certificates): TLS, required for a scheduler
  reachable from a network others share, since a scheduler runs the code it is sent.

Every flow that sends work to Dask (invert-dataset, render-edits) runs that part as a subflow given
`dask_runner(execution)` with `flow.with_options(task_runner=...)`: a Prefect DaskTaskRunner that reaches the
scheduler, or starts a local cluster when the subflow starts and closes it when it ends. Inside, `dask_client()`
waits for the workers and gives the client; `gpu_annotation(client)` makes each submitted task ask for one GPU
where workers offer GPUs. Worker processes report to the Prefect API in PREFECT_API_URL: the CLI starts one for the
command when none is set (flows/prefect_api.py), tests one such server for the session.

Local clusters are started for the run and closed after it. Worker memory limits are off: a worker holding a large
generator must not be restarted by Dask's memory monitor in the middle of a shard (the OS still guards memory).

Every server a local cluster starts listens on loopback only (127.0.0.1): the scheduler, the nannies, the workers and
their HTTP endpoints. A Dask scheduler runs code it is sent, so one reachable from the network runs anyone's code.
Dask's scheduler starts an HTTP server even when `dashboard_address=None` (on its default port 8787, serving worker
lists, logs and a proxy to the workers: `distributed.scheduler.http.routes`); without a dashboard we keep only its
health route, on a random loopback port. `dashboard=` asks for the dashboard at an address (a bare ':8787' means
127.0.0.1:8787; name a host, e.g. 0.0.0.0:8787, to serve other machines). The Dask behaviours this relies on are
in docs/platform.md.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flows.child_signals import started_without_sigint
from flows.stop_signals import interruption, stop_requested
from ganinv.errors import UserError
from ganinv.utils.compile_cache import check_compile_cache
from runtime.config import ExecutionOptions

CLUSTER_KINDS = ("local", "local-cuda")
REMOTE_WORKER_TIMEOUT_S = 120
LOOPBACK = "127.0.0.1"
CLOSE_RETRY_TIMEOUT_S = 10  # closing what is left of a cluster after its workers were ended by force


class ClusterError(UserError, ValueError):
    """The cluster asked for cannot be started or reached; the message says what to do."""


@dataclass(frozen=True)
class ClusterInfo:
    """Where the scheduler is, and whether this process started the cluster (then `n_workers` is known)."""

    address: str
    kind: str
    n_workers: int | None = None


def check_cluster_name(cluster: str) -> str:
    if cluster in CLUSTER_KINDS or "://" in cluster:
        return cluster
    raise ClusterError(f"cluster {cluster!r}: use 'local', 'local-cuda' or a scheduler address like tcp://head:8786")


@contextlib.contextmanager
def dask_cluster(cluster: str, *, workers: int | None = None, dashboard: str | None = None) -> Iterator[ClusterInfo]:
    """Starts (or names) the cluster for a run and yields where its scheduler is; local clusters close at exit.
    dashboard: where a local cluster serves Dask's dashboard (None: nowhere; see the module docstring)."""
    check_cluster_name(cluster)
    if "://" in cluster:
        yield ClusterInfo(address=cluster, kind="remote")
        return
    if workers is not None and workers < 1:
        raise ClusterError(f"workers={workers}: need at least one worker")
    with start_local_cluster(cluster, workers=workers, dashboard=dashboard) as local:
        yield ClusterInfo(address=local.scheduler_address, kind=cluster, n_workers=len(local.workers))


def check_execution(execution: ExecutionOptions) -> None:
    """Refuses a cluster name, worker count, dashboard address or security file that cannot work, before anything
    starts."""
    check_cluster_name(execution.cluster)
    if execution.workers is not None and execution.workers < 1:
        raise ClusterError(f"workers={execution.workers}: need at least one worker")
    dashboard_address(execution.dashboard)
    tls = execution.cluster.startswith("tls://")
    if execution.dask_security is not None and not tls:
        raise ClusterError(f"--dask-security {execution.dask_security}: TLS is for a scheduler on other machines; "
                           f"give its tls:// address as --cluster (not {execution.cluster!r}: local clusters listen "
                           "on 127.0.0.1 only)")
    if tls and execution.dask_security is None:
        raise ClusterError(f"--cluster {execution.cluster}: a tls:// scheduler needs this client's certificates: "
                           "--dask-security FILE (infra/dask/README.md, 'TLS')")
    if execution.dask_security is not None:
        load_security(execution.dask_security)
    if execution.compile_cache is not None:
        check_compile_cache(execution.compile_cache)


def expected_workers(execution: ExecutionOptions) -> int | None:
    """How many workers the run will have: a local cluster's (as started by `start_local_cluster`), None for a
    scheduler address (its workers come and go)."""
    if execution.cluster == "local":
        return execution.workers or default_local_workers()
    if execution.cluster == "local-cuda":
        gpus = len(visible_gpus())
        return min(execution.workers, gpus) if execution.workers else gpus
    return None


SECURITY_KEYS = ("tls_ca_file", "tls_client_cert", "tls_client_key", "tls_min_version", "tls_max_version",
                 "require_encryption")
_SECURITY_FILES = ("tls_ca_file", "tls_client_cert", "tls_client_key")


def load_security(path: str):
    """The `distributed.security.Security` of a YAML file with keys `SECURITY_KEYS` (certificate paths relative to
    the file's folder); require_encryption defaults to true. ClusterError names the file and what is wrong."""
    import yaml
    from distributed.security import Security

    try:
        with open(path, encoding="utf-8") as f:
            options = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ClusterError(f"--dask-security {path}: cannot read it ({type(err).__name__}: {err})") from None
    if not isinstance(options, dict) or not options:
        raise ClusterError(f"--dask-security {path}: expected a YAML mapping of {', '.join(SECURITY_KEYS)}")
    unknown = sorted(set(options) - set(SECURITY_KEYS))
    if unknown:
        raise ClusterError(f"--dask-security {path}: unknown keys {unknown}; use {', '.join(SECURITY_KEYS)}")
    folder = os.path.dirname(os.path.abspath(path))
    for key in _SECURITY_FILES:
        if key in options:
            options[key] = os.path.join(folder, os.path.expanduser(str(options[key])))
            if not os.path.isfile(options[key]):
                raise ClusterError(f"--dask-security {path}: {key} {options[key]} is not a file")
    missing = [key for key in _SECURITY_FILES if key not in options]
    if missing:
        raise ClusterError(f"--dask-security {path}: TLS needs {', '.join(missing)} too (the CA that signed the "
                           "scheduler's certificate, and this client's certificate and key)")
    return Security(**{"require_encryption": True, **options})


def dask_runner(execution: ExecutionOptions):
    """The Prefect DaskTaskRunner for `flow.with_options(task_runner=...)`: it reaches the scheduler address, or
    starts the local cluster (`start_local_cluster`) when the flow starts and closes it when the flow ends."""
    from prefect_dask import DaskTaskRunner

    check_execution(execution)
    if "://" in execution.cluster:
        security = {} if execution.dask_security is None else {"security": load_security(execution.dask_security)}
        return DaskTaskRunner(address=execution.cluster, client_kwargs=security)
    return DaskTaskRunner(cluster_class=start_local_cluster, cluster_kwargs=dict(
        kind=execution.cluster, workers=execution.workers, dashboard=execution.dashboard))


def dask_client(*, timeout: float | None = None):
    """Inside a flow run on `dask_runner`: its Dask client, once the cluster has workers (all of a local cluster's;
    one, within `timeout` s, of a remote scheduler's)."""
    from prefect.context import FlowRunContext

    client = FlowRunContext.get().task_runner.client
    local = local_workers(client)
    address = client.scheduler.address if client.scheduler else "the scheduler"
    timeout = REMOTE_WORKER_TIMEOUT_S if timeout is None else timeout
    try:
        client.wait_for_workers(local or 1, timeout=timeout)
    except TimeoutError:
        raise ClusterError(f"no Dask worker joined the scheduler at {address} within {timeout:.0f} s: start "
                           "workers first (infra/dask/README.md)") from None
    return client


def local_workers(client) -> int | None:
    """How many workers a cluster this process started has (None for a remote scheduler's)."""
    cluster = getattr(client, "cluster", None)
    return None if cluster is None else len(cluster.workers)


def start_local_cluster(kind: str, *, workers: int | None = None, dashboard: str | None = None):
    """A started local cluster of `kind` ('local' or 'local-cuda') listening on loopback; close it after use (it is
    a context manager). `workers`: processes ('local', default one per core up to 8) or GPUs ('local-cuda')."""
    keep_restarting_workers()

    def start():
        with _scheduler_http_routes(dashboard):  # read by the Scheduler as it starts
            return _local_cluster(workers, dashboard) if kind == "local" else _local_cuda_cluster(workers, dashboard)

    # Its workers take no Ctrl-C: this process stops them (child_signals.py), as an interrupted `with` block would
    # when the interruption came while it started.
    return started_without_sigint(start, close=_close_interrupted)


def _close_interrupted(cluster) -> None:
    cluster.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None)


# A worker process that dies (OOM killer, SIGKILL) is started again by its nanny, but a local cluster (SpecCluster)
# closes that nanny for good when no worker of its name is back within `distributed.deploy.lost-worker-timeout`
# (Dask's default: 15 s). Starting a worker process (Python, torch, the models' imports) took 38 s on a loaded 2-core
# machine: the cluster then lost the worker for the rest of the run, a shard the new process had just been given
# was started a third time, and once the last worker was lost the run waited forever on shards no worker would take.
LOST_WORKER_TIMEOUT_S = 600


def keep_restarting_workers() -> None:
    """Gives a nanny LOST_WORKER_TIMEOUT_S to bring its dead worker back before a local cluster closes it (a longer
    value the user configured is kept). Set for the process, not for a block: the cluster reads it whenever a worker
    is lost, for as long as it runs."""
    import dask
    import distributed  # noqa: F401 - loads distributed's config defaults first
    from dask.utils import parse_timedelta

    key = "distributed.deploy.lost-worker-timeout"
    if parse_timedelta(dask.config.get(key, 0)) < LOST_WORKER_TIMEOUT_S:
        dask.config.set({key: f"{LOST_WORKER_TIMEOUT_S}s"})


def gpu_annotation(client) -> contextlib.AbstractContextManager:
    """Submit inside this: every task asks for the Dask resource GPU=1 when workers offer GPUs (one task per GPU)."""
    import dask

    return dask.annotate(resources={"GPU": 1}) if has_gpu_workers(client) else contextlib.nullcontext()


def default_local_workers() -> int:
    """One worker per core, at most 8 (each holds its own copy of the models)."""
    return max(1, min(os.cpu_count() or 1, 8))


def dashboard_address(dashboard: str | None) -> str | None:
    """The address to serve a dashboard at: a bare port (':8787', '8787') on loopback, a named host as given."""
    if dashboard is None:
        return None
    host, _, port = dashboard.rpartition(":") if ":" in dashboard else ("", "", dashboard)
    if not port.isdigit():
        raise ClusterError(f"dashboard {dashboard!r}: give HOST:PORT (e.g. 127.0.0.1:8787) or :PORT")
    return f"{host or LOOPBACK}:{port}"


def _scheduler_options(dashboard: str | None) -> dict[str, Any]:
    """Scheduler keywords: loopback, and the dashboard only when asked (Dask's HTTP server always starts: without a
    dashboard it gets a random loopback port and only the health route, see `_scheduler_http_routes`)."""
    address = dashboard_address(dashboard)
    return {"host": LOOPBACK, "dashboard": address is not None, "dashboard_address": address or f"{LOOPBACK}:0"}


def _scheduler_http_routes(dashboard: str | None) -> contextlib.AbstractContextManager:
    """Without a dashboard, the scheduler's HTTP server serves only `/health` (not its worker lists and proxy)."""
    import dask
    import distributed  # noqa: F401 - loads distributed's config defaults first: leaving set() would drop them

    if dashboard is not None:
        return contextlib.nullcontext()
    return dask.config.set({"distributed.scheduler.http.routes": ["distributed.http.health"]})


def _stopping_on_interrupt(cluster_class: type) -> type:
    """`cluster_class` whose `with` block, left by Ctrl-C or SIGTERM (a KeyboardInterrupt, or one a library wrapped:
    flows/stop_signals.py), first ends its worker processes: Dask's own close waits ~4 s per worker for the shard it
    is inverting, which Ctrl-C abandons anyway (shards are rewritten whole on resume: docs/store.md), and its
    workers log heartbeat tracebacks meanwhile."""

    class Cluster(cluster_class):
        def __exit__(self, exc_type, exc_value, traceback):
            if interruption(exc_value) is not None or (exc_value is not None and stop_requested() is not None):
                end_worker_processes(self)
            try:
                return super().__exit__(exc_type, exc_value, traceback)
            except TimeoutError:
                # A worker slow to exit on a loaded machine (Dask's nanny gives up waiting): the run's work is
                # written and the store says so; end the worker processes ourselves rather than fail the command.
                end_worker_processes(self, signum=signal.SIGKILL)
                with contextlib.suppress(Exception):
                    self.close(timeout=CLOSE_RETRY_TIMEOUT_S)
                return False

    Cluster.__name__ = Cluster.__qualname__ = cluster_class.__name__
    return Cluster


def end_worker_processes(cluster, *, signum: int = signal.SIGTERM) -> None:
    """`signum` to every worker process of a cluster this process started (its nannies are told not to restart
    them)."""
    for nanny in list(getattr(cluster, "workers", {}).values()):
        process = getattr(getattr(nanny, "process", None), "process", None)
        if process is None or not process.pid:
            continue
        nanny.close_gracefully(reason="interrupted")
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def _local_cluster(workers: int | None, dashboard: str | None = None):
    from distributed import LocalCluster

    return _stopping_on_interrupt(LocalCluster)(
        n_workers=workers or default_local_workers(), threads_per_worker=1, processes=True, host=LOOPBACK,
        dashboard_address=None, memory_limit=0, scheduler_kwargs=_scheduler_options(dashboard))


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES's entries if set, else 0..device_count-1."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def cuda_worker_specs(devices: list[str]) -> dict[str, dict]:
    """SpecCluster worker specs: one single-threaded Nanny per device, pinned to it, offering GPU=1."""
    from distributed import Nanny

    return {f"gpu-{device}": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}, "memory_limit": 0,
                                                        "host": LOOPBACK, "env": {"CUDA_VISIBLE_DEVICES": device}}}
            for device in devices}


def _local_cuda_cluster(workers: int | None, dashboard: str | None = None):
    from distributed import Scheduler, SpecCluster

    devices = visible_gpus()
    if not devices:
        raise ClusterError("cluster 'local-cuda' found no visible GPU on this machine (torch sees none and "
                           "CUDA_VISIBLE_DEVICES lists none): use --cluster local, or a scheduler address")
    devices = devices[:workers] if workers else devices
    return _stopping_on_interrupt(SpecCluster)(
        workers=cuda_worker_specs(devices), scheduler={"cls": Scheduler, "options": _scheduler_options(dashboard)},
        name="ganinv-local-cuda")


def has_gpu_workers(client) -> bool:
    """True when any connected worker offers the Dask resource 'GPU' (then each shard task asks for GPU=1)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return any("GPU" in (w.get("resources") or {}) for w in workers.values())


