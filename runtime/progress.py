"""In-process progress events, for whoever shows them (the CLI's bars and plain lines, tests): the one registry of
listeners that flows (shard completions, flows/progress.py) and the long steps below the flows (sampling,
fitting, rendering) notify.

`listening(callback)` registers a callback for the duration of a `with` block; `notify(event)` calls every
callback registered. A long step announces itself with `step(name, total)`, which sends
`{'event': 'step', 'step': name, 'done': 0, 'total': total}` and returns `advance(n)`, which sends the same event
with `done` grown by n. Events are small dicts; a deployment run has no listener, and then nothing is shown.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

Listener = Callable[[dict[str, Any]], None]
Advance = Callable[[int], None]
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


def step(name: str, total: int) -> Advance:
    """Announces a step of `total` units (samples, images, boundaries) and returns `advance(n)`."""
    done = [0]
    lock = threading.Lock()

    def advance(n: int = 1) -> None:
        with lock:
            done[0] += n
            count = done[0]
        notify({"event": "step", "step": name, "done": min(count, total), "total": total})

    notify({"event": "step", "step": name, "done": 0, "total": total})
    return advance
