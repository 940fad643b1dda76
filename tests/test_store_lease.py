"""The run lease: one run coordinates a store at a time; a second is refused with a message that says what to do."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from _store_helpers import fake_result, location_for, make_manifest
from storage import LeaseHeldError, LeaseLostError, Manifest


@pytest.fixture
def store_location(location):
    """`location` (every backend) with a store of 8 items created there."""
    location.create(make_manifest(8))
    return location


def test_a_second_run_is_refused_with_holder_expiry_and_how_to_break_it(store_location):
    first = store_location.open("r+").acquire_lease("nightly-2026-11-24", ttl_s=600)
    with pytest.raises(LeaseHeldError) as err:
        store_location.open("r+").acquire_lease("nightly-2026-11-25", ttl_s=600)
    message = str(err.value)
    for part in ("nightly-2026-11-24", f"pid {os.getpid()}", "expires", "store-break-lease", "force=True"):
        assert part in message
    assert store_location.open("r").lease_holder() == first.record


def test_the_same_run_may_take_its_lease_again(store_location):
    first = store_location.open("r+").acquire_lease("run-a", ttl_s=600)
    again = store_location.open("r+").acquire_lease("run-a", ttl_s=600)
    assert again.record.generation == first.record.generation


def test_an_expired_lease_is_taken_and_its_old_holder_learns_it_lost(store_location):
    old = store_location.open("r+").acquire_lease("dead-run", ttl_s=0.2)
    time.sleep(0.3)
    new = store_location.open("r+").acquire_lease("new-run", ttl_s=600)
    assert store_location.open("r").lease_holder().run_id == "new-run"
    with pytest.raises(LeaseLostError, match="new-run"):
        old.renew()
    new.renew()


def test_release_lets_the_next_run_in(store_location):
    store = store_location.open("r+")
    store.acquire_lease("run-a", ttl_s=600).release()
    assert store.lease_holder() is None
    assert store_location.open("r+").acquire_lease("run-b", ttl_s=600).run_id == "run-b"


def test_renew_extends_the_expiry(store_location):
    lease = store_location.open("r+").acquire_lease("run-a", ttl_s=5)
    before = lease.record.expires_at
    lease.renew(ttl_s=600)
    assert store_location.open("r").lease_holder().expires_at >= before + 500


def test_breaking_a_lease_frees_the_store_and_the_holder_loses_it(store_location):
    held = store_location.open("r+").acquire_lease("stuck-run", ttl_s=600)
    broken = store_location.open("r+").break_lease()
    assert broken.run_id == "stuck-run"
    assert store_location.open("r").lease_holder() is None
    with pytest.raises(LeaseLostError):
        held.check()
    forced = store_location.open("r+").acquire_lease("run-c", ttl_s=600)
    taken = store_location.open("r+").acquire_lease("run-d", ttl_s=600, force=True)
    assert taken.record.generation > forced.record.generation


def test_coordinator_operations_are_refused_while_another_run_holds_the_lease(store_location):
    store_location.open("r+").acquire_lease("run-a", ttl_s=600)
    other = store_location.open("r+")
    with pytest.raises(LeaseHeldError, match="run-a"):
        other.append(make_manifest(12))
    with pytest.raises(LeaseHeldError):
        other.result_group("directions", "smile", made_by={"method": "sefa"})
    inputs = other.read_shard_inputs(other.shard(0))  # workers of the holding run write without the lease
    other.write_shard(inputs, fake_result(inputs, other))
    assert other.status_counts()["done"] == 4


def test_a_worker_with_a_run_id_is_fenced_off_when_another_run_takes_the_store(store_location):
    coordinator = store_location.open("r+")
    coordinator.acquire_lease("run-a", ttl_s=600)
    worker = store_location.open("r+", run_id="run-a")
    inputs = worker.read_shard_inputs(worker.shard(0))
    worker.write_shard(inputs, fake_result(inputs, worker))
    store_location.open("r+").acquire_lease("run-b", ttl_s=600, force=True)
    inputs = worker.read_shard_inputs(worker.shard(1))
    with pytest.raises(LeaseHeldError, match="run-b"):
        worker.write_shard(inputs, fake_result(inputs, worker))
    assert worker.status_counts()["done"] == 4


def test_the_lease_context_renews_in_the_background_and_releases_at_exit(store_location):
    store = store_location.open("r+")
    with store.acquire_lease("long-run", ttl_s=1.2):  # renewed every 0.4 s: slack for a loaded CI machine
        time.sleep(1.6)  # longer than the ttl: only background renewals keep it
        assert store.lease_holder().run_id == "long-run"
        store.append(Manifest(items=()))  # the holder may coordinate
    assert store.lease_holder() is None


def test_runs_racing_for_a_free_store_get_exactly_one_lease(tmp_path):
    loc = location_for("local", tmp_path, None)
    loc.create(make_manifest(4))
    stores = [loc.open("r+") for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def race(i: int) -> None:
        barrier.wait()
        try:
            stores[i].acquire_lease(f"run-{i}", ttl_s=600)
            outcomes.append("won")
        except LeaseHeldError:
            outcomes.append("refused")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["won"]
    assert np.sum([s.lease_holder() is not None for s in stores]) == 8  # all see the one winner
