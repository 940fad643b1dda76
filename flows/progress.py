"""In-process progress events of a flow run, for whoever runs the flow here (the CLI's progress bar, tests).

The flow calls `notify({...})` as shards finish; `listening(callback)` registers a callback for the duration of a
`with` block (one registry, runtime/progress.py, which the long steps below the flows notify too). Events are
small dicts: `{'event': 'planned', 'items': n, 'shards': k, 'doing': 'refining'}` once ('doing': what the
shards do, shown on the bar; 'inverting' when absent), then `{'event': 'shard', 'index': i, 'items': n,
'done': d, 'failed': f, 'crashed': bool, 'seconds': s, 'invert_s': s, 'load_s': s, 'pid': p, 'device': d}` per
finished shard (seconds: the worker's time in the shard; invert_s: the part spent inverting; load_s: loading the
models, ~0 once the worker has them; pid and device: which worker process and device ran it; None where a crashed
shard cannot say); long steps send `{'event': 'step', ...}` (runtime/progress.py).
A deployment run has no listener; its progress is the Prefect progress artifact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.progress import Listener, listening, notify, step

if TYPE_CHECKING:
    from runtime.shard import ShardReport

__all__ = ["Listener", "listening", "notify", "shard_event", "step"]


def shard_event(report: ShardReport, items: int) -> dict[str, Any]:
    """The event of a finished (or crashed) shard of `items` items."""
    return {"event": "shard", "index": report.shard, "items": items, "done": report.done, "failed": report.failed,
            "crashed": report.error is not None, "seconds": report.seconds, "invert_s": report.invert_s,
            "load_s": report.load_s, "pid": report.pid, "device": report.device}
