"""One Prefect API for a command-line run, its Dask workers included.

With `PREFECT_API_URL` set (a real server: `prefect server start`, Prefect Cloud), flows report there and nothing is
started. Without it, Prefect's ephemeral mode would start a server in *every* process that runs a task, each Dask
worker included, all on one SQLite file, and some outlive the run (measured, /work/shared/PLATFORM_NOTES.md). So the
CLI starts one temporary server here instead (Prefect's own `SubprocessASGIServer`, as `prefect_test_harness`
does, on a free localhost port, with a throwaway database), exports its URL to this process and to every worker it
spawns, and stops it at the end. Runs are then visible only while the command runs; set `PREFECT_API_URL` to keep
their history, logs and artifacts.

`quiet_logging()` keeps a terminal readable: Prefect and Dask log at WARNING unless the user set a level; it must run
before prefect or distributed is imported (they read these settings once, at import).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator

SERVER_STARTUP_TIMEOUT_S = 120


def quiet_logging(level: str = "WARNING") -> None:
    """Prefect and Dask log at `level` in this process and in the workers it spawns (unless already set)."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", level)
    os.environ.setdefault("PREFECT_LOGGING_INTERNAL_LEVEL", "ERROR")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", level.lower() if level != "WARNING" else "error")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline telemetry only logs tracebacks


def configured_api_url() -> str | None:
    """The API this process would report to without us: the environment's or the active profile's."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Yields the API URL flows report to during the block: the configured one, else a temporary local server's."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    url = configured_api_url()
    if url:
        yield url
        return
    with _temporary_server() as url:
        yield url


@contextlib.contextmanager
def _temporary_server() -> Iterator[str]:
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    home = tempfile.mkdtemp(prefix="ganinv-prefect-")
    database = f"sqlite+aiosqlite:///{home}/prefect.db"
    server = None
    try:
        with temporary_settings(updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: database}):
            server = SubprocessASGIServer(port=_free_port())
            server.start(timeout=SERVER_STARTUP_TIMEOUT_S)
        os.environ["PREFECT_API_URL"] = server.api_url  # inherited by the Dask worker processes we spawn
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        if server is not None:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def time_server_startup() -> float:
    """Seconds to start and stop the temporary server (for benchmarks)."""
    t0 = time.perf_counter()
    with _temporary_server():
        pass
    return time.perf_counter() - t0
