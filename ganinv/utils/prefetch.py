"""Keep the GPU fed: load (decode) the next batches on a background thread while the current one is processed, and
copy them to the device from pinned memory on a side CUDA stream, so decoding and host-to-device copies overlap
compute.

    for target in prefetch(shard_batches, load=lambda paths: load_images(paths, 256), device="cuda"):
        result = invert(G, target, config)   # the next batch decodes and uploads meanwhile

Pure torch + threading: decoding (PIL, numpy) and pinned copies release the GIL for most of their time.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch

X = TypeVar("X")
T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Apply `fn` to every tensor in a tensor / tuple / list / dict structure; other values pass through."""
    if torch.is_tensor(value):
        return fn(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


def _upload(value: Any, device: torch.device, stream: torch.cuda.Stream) -> tuple[Any, torch.cuda.Event]:
    """Pin host tensors and start their copies to `device` on `stream`; the event marks the copies' end."""
    with torch.cuda.stream(stream):
        moved = _map_tensors(value, lambda t: t.pin_memory().to(device, non_blocking=True) if t.device.type == "cpu"
                             else t.to(device, non_blocking=True))
        event = torch.cuda.Event()
        event.record(stream)
    return moved, event


def _put(q: queue.Queue, value: Any, stop: threading.Event) -> bool:
    """Block until `value` is queued or the consumer has stopped (then False)."""
    while not stop.is_set():
        try:
            q.put(value, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _produce(items: Iterable[X], load: Callable[[X], T], device: torch.device | None, q: queue.Queue,
             stop: threading.Event) -> None:
    stream = torch.cuda.Stream(device) if device is not None and device.type == "cuda" else None
    try:
        for item in items:
            if stop.is_set():
                return
            value = load(item)
            if stream is not None:
                ready = _upload(value, device, stream)
            else:
                ready = (value if device is None else _map_tensors(value, lambda t: t.to(device)), None)
            if not _put(q, ready, stop):
                return
    except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there in sequence
        _put(q, _Failure(error), stop)
        return
    _put(q, _DONE, stop)


def prefetch(items: Iterable[X], load: Callable[[X], T], *, device: torch.device | str | None = None,
             depth: int = 2) -> Iterator[T]:
    """Yield `load(item)` for each item of `items`, in order, with up to `depth` results loaded ahead by one
    background thread.

    `load` returns a tensor or a tuple / list / dict of them (other values pass through). With `device`, tensors
    arrive there: for CUDA they are pinned and copied on a side stream in the background, and the consumer's
    current stream waits for the copy (no host sync). An exception from `load` or from `items` is raised where it
    happened in the sequence, after the items before it. Leaving the loop early (break, exception, `close()`)
    stops the thread.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    return _consume(items, load, None if device is None else torch.device(device), depth)


def _consume(items: Iterable[X], load: Callable[[X], T], device: torch.device | None, depth: int) -> Iterator[T]:
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(items, load, device, q, stop), name="ganinv-prefetch",
                              daemon=True)
    thread.start()
    try:
        while True:
            got = q.get()
            if got is _DONE:
                return
            if isinstance(got, _Failure):
                raise got.error
            value, event = got
            if event is not None:
                current = torch.cuda.current_stream(device)
                current.wait_event(event)
                # The tensors were allocated on the side stream: tell the allocator the consumer's stream uses them.
                _map_tensors(value, lambda t: t.record_stream(current))
            yield value
    finally:
        stop.set()
        thread.join()
