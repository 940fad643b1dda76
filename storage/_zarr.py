"""zarr, as every module of storage/ imports it (`from storage._zarr import zarr`, `zarr.codecs.ZstdCodec`, ...): the
one home of the package's zarr import, so that the exit hook below is registered in any process that uses a store,
whichever of storage's modules it loaded (the package loads them lazily). tests/test_store_io_thread.py checks that
no module of storage/ imports zarr otherwise.

zarr's I/O thread at the process's end: stopped, then closed, never closed while it still runs.

zarr runs every store operation on one event loop in a daemon thread (zarr/core/sync.py). At exit its own atexit
hook asks that loop to stop, waits 0.2 s for the thread and then closes the loop whether or not the thread got
there: a thread still busy (a write the interrupted command left in flight) or not scheduled in time on a loaded
machine gets "RuntimeError: Cannot close a running event loop" printed after the command's last line. This hook,
registered after zarr's and so run before it (atexit runs hooks last in, first out), gives the thread
`STOP_TIMEOUT_S` to finish what it is doing and leave its loop, then runs zarr's clean-up, which finds the loop
stopped and closes it. A thread still busy after that is left to end with the process: its loop is taken from
zarr's hook, not closed under it.
"""

from __future__ import annotations

import atexit

import zarr
from zarr.core import sync as zarr_sync

__all__ = ["zarr"]

STOP_TIMEOUT_S = 5.0


def stop_io_thread() -> None:
    """Stops zarr's I/O loop and waits up to `STOP_TIMEOUT_S` for its thread (see the module docstring)."""
    loop, thread = zarr_sync.loop[0], zarr_sync.iothread[0]
    if loop is None or thread is None or loop.is_closed():
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(STOP_TIMEOUT_S)
    if thread.is_alive():  # left to end with the process rather than closed under the running thread
        zarr_sync.loop[0] = zarr_sync.iothread[0] = None
    else:
        zarr_sync.cleanup_resources()  # the loop is stopped: zarr closes it and its executor (a later use starts anew)


atexit.register(stop_io_thread)
