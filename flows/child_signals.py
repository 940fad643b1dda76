"""Processes a command starts (its temporary Prefect server, its local Dask workers) must not see a terminal's Ctrl-C.

A terminal sends SIGINT to every process of its foreground group: the Prefect server would shut down and the Dask
workers die mid-shard, while the command itself still has to tell the server its run crashed, close the cluster and
release the store's lease, and then waits on a server that is gone ("Error logging to API ... Connection refused",
minutes of retries). So these processes are started with SIGINT *blocked*: a blocked signal stays blocked across
fork and exec, and neither uvicorn nor Dask unblocks it. The command alone takes Ctrl-C (cli/signals.py) and stops
them itself, in order (SIGTERM from `server.stop()`, `cluster.close()`).

- `sigint_blocked()`: around a `Popen` in this thread (the server);
- `started_without_sigint(make)`: runs `make()` in a helper thread with SIGINT blocked, so the threads it starts (a
  LocalCluster's event loop, which spawns and restarts the worker processes) and their children inherit the block,
  while this thread keeps taking Ctrl-C. Interrupted meanwhile, it waits for `make()` and closes what it made.

One trap: Python's multiprocessing resource tracker, started by the first process a thread spawns, *unblocks*
SIGINT and SIGTERM in that thread afterwards (multiprocessing/resource_tracker.py: SIG_BLOCK, spawn, SIG_UNBLOCK),
so every later worker would take Ctrl-C again. It is started before the block.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
START_TIMEOUT_S = 120  # how long an interrupted start may take to finish before its result is abandoned


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread during the block (processes started inside inherit the block); one that
    arrives meanwhile is delivered when the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def started_without_sigint(make: Callable[[], T], *, close: Callable[[T], Any] = lambda made: made.close()) -> T:
    """`make()` run in a helper thread with SIGINT blocked (see the module docstring); its result, or its error."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()  # see the module docstring: it would unblock SIGINT in a later thread
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            outcome["made"] = make()
        except BaseException as err:  # noqa: BLE001 - handed to the calling thread
            outcome["error"] = err

    helper = threading.Thread(target=run, name="start-without-sigint", daemon=True)
    helper.start()
    try:
        while helper.is_alive():
            helper.join(0.1)
    except BaseException:
        helper.join(START_TIMEOUT_S)  # interrupted while starting: stop what gets started, then go on stopping
        if "made" in outcome:
            close(outcome["made"])
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["made"]
