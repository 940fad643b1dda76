"""Ctrl-C (SIGINT) and SIGTERM: every command stops cleanly, says what is done and how to go on, and exits 130
(SIGINT) or 143 (SIGTERM), as a shell reports a process ended by that signal.

`stop_on_signals()` (around every command, cli/app.py) makes both signals raise `Interrupted` in the main thread,
once, flow runs included (flows/stop_signals.py keeps Prefect's own SIGTERM handler out): the `with` blocks of the
run unwind (a flow marks its run crashed, the Dask cluster and the Prefect server we started are shut down, the
store's lease is released) and a second signal while that happens is ignored rather than breaking the clean-up. An
exception that reaches the command once a signal came is that stop (`as_interrupted`). The servers and workers we
start do not see a terminal's Ctrl-C themselves (flows/prefect_api.py, flows/clusters.py): they are stopped by this
process, in order, so nothing is left running and nothing logs to a server that has gone.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from flows.stop_signals import StopHandler, interruption, stop_requested

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The command was asked to stop by `signum`; `detail` says what is done and how to resume."""

    def __init__(self, signum: int, detail: str = ""):
        super().__init__(signum, detail)
        self.signum, self.detail = signum, detail

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def message(self) -> str:
        name = signal.Signals(self.signum).name
        return f"stopped by {name}" + (f": {self.detail}" if self.detail else "")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopHandler | None]:
    """Inside: the first SIGINT or SIGTERM raises `Interrupted`; later ones are ignored while the run stops (also
    inside a flow run: flows/stop_signals.py). Yields the handler, which lists the signals received. Outside the main
    thread (where Python cannot take signals) it does nothing and yields None."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    handler = StopHandler(Interrupted)
    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield handler
    finally:
        for s, before in previous.items():
            signal.signal(s, before)


def as_interrupted(err: BaseException, handler: StopHandler | None = None) -> Interrupted | None:
    """The stop `err` is or carries, as `Interrupted`: `err` itself, the KeyboardInterrupt a library wrapped, or, for
    any exception raised once a stop signal came (to `handler`, else to the one installed now), that signal
    (flows/stop_signals.py); a plain KeyboardInterrupt (Python's own handler, before ours was installed) is SIGINT's.
    None if the command was not stopped."""
    stop = interruption(err)
    if isinstance(stop, Interrupted):
        return stop
    if stop is not None:
        return Interrupted(getattr(stop, "signal", signal.SIGINT))  # Prefect's TerminationSignal names its signal
    signum = handler.received[0] if handler is not None and handler.received else stop_requested()
    return None if signum is None else Interrupted(signum)


@contextlib.contextmanager
def interrupted_run(images: str, store: str, command: str = "invert") -> Iterator[None]:
    """Around an inversion (`ganinv invert` or `restore`): an interruption says how far the store got and the
    command that resumes it."""
    try:
        yield
    except BaseException as err:
        stopped = as_interrupted(err)
        if stopped is None:
            raise
        raise Interrupted(stopped.signum, resume_note(images, store, command)) from None


def resume_note(images: str, store: str, command: str = "invert") -> str:
    """'12 of 64 images done, 52 pending; the store is consistent and free: resume with `ganinv invert ...`'."""
    from storage import LatentStore

    resume = f"resume with `ganinv {command} {images} --store {store}`"
    try:
        opened = LatentStore.open(store, "r")
    except Exception:  # noqa: BLE001 - interrupted before the store was created: nothing to report of it
        return "nothing was written (the store was not created yet): run the same command again"
    counts, holder = opened.status_counts(), opened.lease_holder()
    lease = "its lease is released" if holder is None else f"its lease is still held by {holder.describe()}"
    return (f"{counts['done']} of {len(opened)} images done, {counts['failed']} failed, {counts['pending']} pending; "
            f"the store is consistent and {lease}; {resume} (the store's settings are reused)")
