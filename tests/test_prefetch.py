"""prefetch: background loading in order, ahead of the consumer, errors in sequence, clean early exit."""

import threading

import pytest
import torch

from ganinv.utils.prefetch import prefetch


def test_items_come_in_order_with_structures_passed_through():
    out = list(prefetch(range(5), lambda i: (torch.full([2], float(i)), {"id": i})))
    assert [o[1]["id"] for o in out] == list(range(5))
    assert all(torch.equal(o[0], torch.full([2], float(i))) for i, o in enumerate(out))


def test_next_item_loads_while_the_consumer_holds_the_current_one():
    second_loading = threading.Event()

    def load(i):
        if i == 1:
            second_loading.set()
        return i

    it = prefetch(range(3), load)
    assert next(it) == 0
    assert second_loading.wait(timeout=10)  # item 1 is loaded without the consumer asking for it
    assert list(it) == [1, 2]


def test_loading_runs_at_most_depth_items_ahead():
    loaded, release = [], threading.Event()

    def load(i):
        loaded.append(i)
        return i

    it = prefetch(range(100), load, depth=2)
    assert next(it) == 0
    release.wait(0.5)  # give the thread time to run ahead as far as it may
    assert 3 <= len(loaded) <= 1 + 2 + 1  # consumed + queued + the one blocked on a full queue
    it.close()


def test_a_failing_load_raises_after_the_items_before_it():
    def load(i):
        if i == 2:
            raise OSError("bad image 2")
        return i

    it = prefetch(range(5), load)
    assert [next(it), next(it)] == [0, 1]
    with pytest.raises(OSError, match="bad image 2"):
        next(it)


def test_leaving_early_stops_the_thread():
    before = threading.active_count()
    it = prefetch(range(10 ** 6), lambda i: i, depth=1)
    assert next(it) == 0
    it.close()
    assert threading.active_count() == before
    assert not any(t.name == "ganinv-prefetch" for t in threading.enumerate())


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        prefetch([1], lambda i: i, depth=0)


def test_cpu_device_moves_tensors_there():
    (x,) = prefetch([0], lambda i: torch.ones(2), device="cpu")
    assert x.device.type == "cpu"


@pytest.mark.gpu
def test_cuda_batches_arrive_on_the_device_with_their_values():
    batches = [torch.randn(4, 3, 32, 32) for _ in range(6)]
    got = [x.clone() for x in prefetch(range(6), lambda i: batches[i], device="cuda")]
    assert all(g.is_cuda and torch.equal(g.cpu(), b) for g, b in zip(got, batches))
