"""One Prefect API for a command-line run, its Dask workers included; and the run ids flows hold leases under.

With `PREFECT_API_URL` set (a real server: `prefect server start`, Prefect Cloud), flows report there and nothing is
started. Without it, Prefect's ephemeral mode would start a server in *every* process that runs a task, each Dask
worker included, all on one SQLite file, and some outlive the run (docs/platform.md). So the CLI starts one
temporary server here instead (as Prefect's own `SubprocessASGIServer` starts it for `prefect_test_harness`:
flows/prefect_server.py), on a free localhost port, with a throwaway database (a copy of a migrated template once one
is saved, flows/prefect_template.py), exports its URL to this process and to every worker it spawns, and stops it at
the end; a watchdog process stops it should the command be killed without unwinding (`kill -9`, flows/watchdog.py).
Runs are then visible only while the command runs; set `PREFECT_API_URL` to keep their history, logs and artifacts.

`quiet_logging()` keeps a terminal readable: Prefect's console handler shows only CRITICAL records (the command
prints its own summary and one-line errors), while Prefect's loggers stay at INFO, so a real server still receives
every flow and task log; Dask logs errors only. It must run before prefect or distributed is imported (they read
these settings once, at import), and it leaves settings the user made alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from flows import prefect_template
from flows.prefect_server import TemporaryServer, free_port
from flows.stop_signals import StopHandler, sigterm_handler_kept
from flows.watchdog import guard

SERVER_STARTUP_TIMEOUT_S = 120


def new_run_id(flow_name: str) -> str:
    """`<flow_name>-<Prefect flow run id>` (a fresh random id outside Prefect): names the run holding a store's lease,
    so `store-info` and a refused second run say which flow holds it."""
    from prefect.runtime import flow_run

    return f"{flow_name}-{flow_run.get_id() or uuid.uuid4().hex[:12]}"


def quiet_logging(*, verbose: bool = False) -> None:
    """Quiet console logs in this process and in the workers it spawns (see the module docstring); `verbose` shows
    Prefect's INFO logs and Dask's warnings instead."""
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "INFO" if verbose else "CRITICAL")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning" if verbose else "error")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline telemetry only logs tracebacks


def configured_api_url() -> str | None:
    """The API this process would report to without us: the environment's or the active profile's."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Yields the API URL flows report to during the block: the configured one, else a temporary local server's.
    Flows run inside keep this process's SIGTERM handler (flows/stop_signals.py)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    url = configured_api_url()
    with (contextlib.nullcontext(url) if url else temporary_server()) as api_url, sigterm_handler_kept():
        yield api_url


@contextlib.contextmanager
def temporary_server() -> Iterator[str]:
    """A Prefect server of this process's own for the block, whatever the configuration names (the test suite's
    session server is one too: tests/conftest.py); yields its API URL, also exported to the processes spawned."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tempfile.mkdtemp(prefix="ganinv-prefect-")
    server, watchdog, exported = None, None, os.environ.get("PREFECT_API_URL")
    restore = _stop_on_sigterm()
    try:
        server = _ready_server(Path(home) / "prefect.db")
        watchdog = guard(server.server_process.pid)  # ends the server if this process dies without unwinding
        os.environ["PREFECT_API_URL"] = server.api_url  # inherited by the Dask worker processes we spawn
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        if server is not None:
            _drain_to(server)
            server.stop()
        if watchdog is not None:  # it sees the server gone and exits within POLL_S
            watchdog.wait(timeout=10)
        if exported is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:  # the test suite's server while a test starts one of its own
            os.environ["PREFECT_API_URL"] = exported
        shutil.rmtree(home, ignore_errors=True)
        restore()


def _ready_server(database: Path):
    """A started server on `database`: a copy of the template when there is one (flows/prefect_template.py). A
    server that does not serve from a template that passed its checks (a table lost, say) is stopped, the template
    removed with one line of warning, and a server started once more the way Prefect does, migrating a new database,
    which is then saved as the template."""
    template = prefect_template.seed_database(database)
    if template is not None:
        try:
            return _started(database, from_template=True)
        except Exception as err:  # whatever it was, a migrating start is the remedy (and raises if it is not)
            prefect_template.discard(database, template, f"its server did not serve: {type(err).__name__}: {err}")
    server = _started(database, from_template=False)
    prefect_template.save_template(database)  # migrated and registered just now, nothing run yet
    return server


def _started(database: Path, *, from_template: bool):
    """A server on `database` that answers its health route (Prefect's own check) and, on a template's copy, a read
    of the flow runs through the API: a database its server cannot query fails here, not in the first run. Anything
    it started is stopped if it raises (an interrupt included)."""
    from prefect.settings import temporary_settings

    server = _server_class()(port=free_port())
    try:
        with temporary_settings(updates=_server_settings(database, from_template=from_template)):
            server.start(timeout=SERVER_STARTUP_TIMEOUT_S)
        if from_template:
            _read_flow_runs(server.api_url)
    except BaseException:
        server.stop()
        raise
    return server


def _read_flow_runs(api_url: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        client.read_flow_runs(limit=1)


def _server_settings(database: Path, *, from_template: bool) -> dict:
    """The server's database; from a template (flows/prefect_template.py), already at the Alembic head and holding
    the block types, so Prefect's migration and block registration at start are switched off."""
    from prefect import settings

    updates = {settings.PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{database}"}
    if from_template:
        updates.update({settings.PREFECT_SERVER_DATABASE_MIGRATE_ON_START: False,
                        settings.PREFECT_SERVER_REGISTER_BLOCKS_ON_START: False,
                        settings.PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION: False})  # its hash costs time too
    return updates


def _server_class():
    """The class that starts the server process (flows/prefect_server.py; tests replace it)."""
    return TemporaryServer


def _stop_on_sigterm():
    """SIGTERM (a scheduler, `kill`) ends Python without unwinding, which would orphan the server: make it raise
    KeyboardInterrupt in the main thread instead, once, so the server is stopped (unless a handler is installed
    already, e.g. the CLI's, cli/signals.py). Returns what restores the handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        return lambda: None
    signal.signal(signal.SIGTERM, StopHandler(lambda signum: KeyboardInterrupt(f"signal {signum}")))
    return lambda: signal.signal(signal.SIGTERM, previous)


def _drain_to(server) -> None:
    """Sends the logs and events still queued in this process while the server is up (as prefect_test_harness
    does); otherwise they are flushed at exit, to a server that is gone, with an error on the console."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        try:
            APILogWorker.instance().drain()
        except RuntimeError:  # never started: nothing was logged
            pass
        EventsWorker.drain_all()
