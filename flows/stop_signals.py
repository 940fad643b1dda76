"""SIGTERM and Ctrl-C inside a flow run: one handler, one kind of exception, however a library wraps it.

A command stops on its first SIGINT or SIGTERM by raising a KeyboardInterrupt in the main thread (cli/signals.py;
`prefect_api()` installs a plain one for a script when no handler is set), and ignores later ones while its `with`
blocks stop the Dask workers, tell the Prefect server how the run ended and release the store's lease. Two things
got in the way of that, both only once a flow had started:

- Prefect's flow engine installs its own SIGTERM handler for the outermost flow run (`capture_sigterm` in
  prefect/utilities/engine): it raises `TerminationSignal`, which is not a KeyboardInterrupt, so a cluster's `with`
  block closed it the slow way (Dask waits for every worker's shard, ~7 s, its workers logging heartbeat
  tracebacks), a second SIGTERM raised again in the middle of that clean-up, and the command's own handler only
  ran when Prefect sent the signal again on its way out. `sigterm_handler_kept()` makes the engine install the
  handler already in place instead, so SIGTERM inside a flow is the command's own clean stop.
- A library may turn the KeyboardInterrupt raised in its code into another exception: pydantic makes one raised in
  a serializer (Prefect serializes settings and a task's context) a `PydanticSerializationError`, with the stop as
  its `__cause__` or only named in its message, and the command ended with exit code 3 as if a bug. So the handler
  (`StopHandler`) records what it received: `stop_requested()` tells a stop from a failure whatever exception
  reaches the `with` blocks, and `interruption(err)` finds a stop an exception carries.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

# Prefect's SIGTERM bridge, looked up by name at each flow start (prefect/utilities/engine/__init__.py)
PREFECT_BRIDGE = ("prefect.utilities.engine", "_prefect_sigterm_handler")


class StopHandler:
    """A SIGINT / SIGTERM handler: the first signal raises `stop(signum)` (a KeyboardInterrupt) in the main thread;
    later ones, which come while the run stops, only say so on stderr. `received` lists the signals, first first."""

    def __init__(self, stop: Callable[[int], KeyboardInterrupt]):
        self.stop, self.received = stop, []

    def __call__(self, signum: int, frame) -> None:
        self.received.append(signum)
        if len(self.received) > 1:
            sys.stderr.write(f"{signal.Signals(signum).name} again: still stopping, please wait\n")
            return
        raise self.stop(signum)


def stop_requested() -> int | None:
    """The signal that began stopping this process, when its SIGTERM handler is a `StopHandler` that received one."""
    handler = signal.getsignal(signal.SIGTERM)
    return handler.received[0] if isinstance(handler, StopHandler) and handler.received else None


def interruption(err: BaseException | None) -> BaseException | None:
    """The KeyboardInterrupt (or Prefect's TerminationSignal) that `err` is, or that caused it: an exception a
    library raised in its place (its `__cause__`) or one raised while stopping (its `__context__`); else None."""
    stops = _stop_types()
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, stops):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _stop_types() -> tuple[type[BaseException], ...]:
    """KeyboardInterrupt, and Prefect's TerminationSignal once prefect is loaded (without it, none was raised)."""
    exceptions = sys.modules.get("prefect.exceptions")
    termination = getattr(exceptions, "TerminationSignal", None)
    return (KeyboardInterrupt,) if termination is None else (KeyboardInterrupt, termination)


@contextlib.contextmanager
def sigterm_handler_kept() -> Iterator[None]:
    """Inside: a flow run keeps this process's SIGTERM handler when it is a `StopHandler` (see the module docstring);
    with any other handler, or outside the main thread, Prefect's bridge is left as it is."""
    handler = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    module = _prefect_engine_utilities() if isinstance(handler, StopHandler) else None
    if module is None:
        yield
        return
    bridge = getattr(module, PREFECT_BRIDGE[1])
    setattr(module, PREFECT_BRIDGE[1], handler)
    try:
        yield
    finally:
        setattr(module, PREFECT_BRIDGE[1], bridge)


def _prefect_engine_utilities():
    """The module whose SIGTERM bridge flow runs install; None if this Prefect has none by that name (its flows then
    raise TerminationSignal, which `interruption` still reads as a stop)."""
    import importlib

    module = importlib.import_module(PREFECT_BRIDGE[0])
    return module if callable(getattr(module, PREFECT_BRIDGE[1], None)) else None
