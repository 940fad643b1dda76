"""In-process progress events of a flow run, for whoever runs the flow here (the CLI's progress bar, tests).

The flow calls `notify({...})` as shards finish; `listening(callback)` registers a callback for the duration of a
`with` block. Events are small dicts: `{'event': 'planned', 'items': n, 'shards': k}` once, then
`{'event': 'shard', 'index': i, 'items': n, 'done': d, 'failed': f, 'crashed': bool, 'seconds': s, 'invert_s': s,
'load_s': s, 'pid': p, 'device': d}` per finished shard (seconds: the worker's time in the shard; invert_s: the part
spent inverting; load_s: loading the models, ~0 once the worker has them; pid and device: which worker process and
device ran it; None where a crashed shard cannot say).
A deployment run has no listener; its progress is the Prefect progress artifact.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.shard import ShardReport


Listener = Callable[[dict[str, Any]], None]
_LISTENERS: list[Listener] = []
_LOCK = threading.Lock()


@contextlib.contextmanager
def listening(callback: Listener) -> Iterator[None]:
    """Calls `callback(event)` for every event notified while the block runs."""
    with _LOCK:
        _LISTENERS.append(callback)
    try:
        yield
    finally:
        with _LOCK:
            _LISTENERS.remove(callback)


def notify(event: dict[str, Any]) -> None:
    with _LOCK:
        listeners = list(_LISTENERS)
    for callback in listeners:
        callback(event)


def shard_event(report: ShardReport, items: int) -> dict[str, Any]:
    """The event of a finished (or crashed) shard of `items` items."""
    return {"event": "shard", "index": report.shard, "items": items, "done": report.done, "failed": report.failed,
            "crashed": report.error is not None, "seconds": report.seconds, "invert_s": report.invert_s,
            "load_s": report.load_s, "pid": report.pid, "device": report.device}
