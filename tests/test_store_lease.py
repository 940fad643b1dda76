"""The run lease: one run coordinates a store at a time; a second is refused with a message that says what to do."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

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


@pytest.mark.alone  # renewals every 0.4 s must not starve
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


def test_a_run_that_read_a_generation_its_winner_had_just_deleted_does_not_win_too(tmp_path, monkeypatch):
    """The interleaving behind two winners of the race above (8 threads on a loaded machine): run-7 takes generation
    2 over the creation's released generation 1 and deletes 1; run-5 had listed [1], found its file gone, so read
    "never leased" and wrote a fresh generation 1. The newest generation holds the lease: run-5 must be refused."""
    import storage.lease as lease_module

    loc = location_for("local", tmp_path, None)
    loc.create(make_manifest(4))  # creation takes and releases generation 1
    winner = loc.open("r+").acquire_lease("run-7", ttl_s=600)
    assert winner.record.generation == 2
    latest, looks = lease_module.LeaseFiles.latest, []

    def run_5_looks(self):  # its first look: generation 1 listed, its file already deleted
        looks.append(1)
        return None if len(looks) == 1 else latest(self)

    monkeypatch.setattr(lease_module.LeaseFiles, "latest", run_5_looks)
    with pytest.raises(LeaseHeldError, match="run-7"):
        loc.open("r+").acquire_lease("run-5", ttl_s=600)
    monkeypatch.undo()
    holder = loc.open("r").lease_holder()
    assert holder.run_id == "run-7" and holder.generation == 2
    assert lease_module.LeaseFiles(*loc.fs(), store_name="s").generations() == [2]  # run-5's void record is gone


def _record_path(location, generation: int) -> str:
    fs, root = location.fs()
    return f"{root.rstrip('/')}/lease/{generation:08d}/zarr.json"


@pytest.mark.parametrize("garbage", [b"", b"{\"zarr_format\": 3, \"attrib", b"\x00\xff not json"])
def test_an_unreadable_lease_record_is_reported_and_can_be_broken_or_forced(store_location, garbage):
    """Issue 24 item 7: an empty or garbage record made info, break-lease and --force fail."""
    from typer.testing import CliRunner

    from cli.app import app

    lease = store_location.open("r+").acquire_lease("crashed-run", ttl_s=600)
    fs, _ = store_location.fs()
    fs.pipe_file(_record_path(store_location, lease.record.generation), garbage)
    holder = store_location.open("r").lease_holder()
    assert holder is not None and "unreadable" in holder.describe()
    assert f"{lease.record.generation:08d}/zarr.json" in holder.describe()
    with pytest.raises(LeaseHeldError, match="unreadable lease record .*store-break-lease"):
        store_location.open("r+").acquire_lease("next-run", ttl_s=600)
    if store_location.url.startswith("memory://"):  # the CLI opens local paths and buckets; memory:// is per process
        assert store_location.open("r+").acquire_lease("next-run", ttl_s=600, force=True).run_id == "next-run"
        return
    info = CliRunner().invoke(app, ["store-info", store_location.url])
    assert info.exit_code == 0 and "unreadable lease record" in info.output, info.output
    broken = CliRunner().invoke(app, ["store-break-lease", store_location.url])
    assert broken.exit_code == 0, broken.output
    assert store_location.open("r+").acquire_lease("next-run", ttl_s=600).run_id == "next-run"


def test_lease_records_are_replaced_whole_so_a_reader_never_sees_a_partial_one(tmp_path):
    loc = location_for("local", tmp_path, None)
    loc.create(make_manifest(2))
    lease = loc.open("r+").acquire_lease("renewing-run", ttl_s=600)
    path = _record_path(loc, lease.record.generation)
    stop, seen = threading.Event(), []

    def read_raw() -> None:
        while not stop.is_set():
            with open(path, "rb") as f:
                seen.append(f.read())

    reader = threading.Thread(target=read_raw)
    reader.start()
    try:
        for _ in range(300):
            lease.renew()
    finally:
        stop.set()
        reader.join()
    assert len(seen) > 10
    for raw in seen:
        json.loads(raw)  # never empty, never half written


def test_a_lease_whose_holder_died_on_this_host_is_taken_at_once(tmp_path):
    """Issue 24 item 7: a holder killed on the same host blocked the store for the whole TTL."""
    loc = location_for("local", tmp_path, None)
    loc.create(make_manifest(2))
    code = ("import os, sys; sys.path[:0] = ['tests', '.']; from storage import LatentStore; "
            f"LatentStore.open({loc.url!r}, 'r+').acquire_lease('killed-run', ttl_s=3600); os._exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
    store = loc.open("r+")
    assert store._lease_files.latest().run_id == "killed-run"  # its record says an hour
    assert store.lease_holder() is None
    assert store.acquire_lease("next-run", ttl_s=600).run_id == "next-run"


def test_a_live_holder_and_a_holder_on_another_machine_still_block(tmp_path):
    loc = location_for("local", tmp_path, None)
    loc.create(make_manifest(2))
    code = ("import sys, time; sys.path[:0] = ['tests', '.']; from storage import LatentStore; "
            f"LatentStore.open({loc.url!r}, 'r+').acquire_lease('live-run', ttl_s=3600); print('held', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LeaseHeldError, match="live-run"):
            loc.open("r+").acquire_lease("next-run", ttl_s=600)
    finally:
        holder.kill()
        holder.wait()
    files = loc.open("r+")._lease_files
    record = files.latest()
    files.write(dataclasses.replace(record, machine="another-boot:1"), exclusive=False)  # same pid, other machine
    with pytest.raises(LeaseHeldError, match="live-run"):
        loc.open("r+").acquire_lease("next-run", ttl_s=600)
