"""The invert-dataset flow on real Prefect (one test server), real Dask (a LocalCluster of 2 single-threaded worker
processes, shared by the tests so workers stay warm) and real stores on disk: bad inputs, a worker killed with
SIGKILL mid-shard, a crashed coordinator, nightly appends, the lease and config refusals."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from _flow_helpers import FAST, prepare_store, save_tiny_generator, store_arrays
from _image_files import write_bad_inputs, write_good_images
from runtime.config import ExecutionOptions, InvertConfig
from runtime.shard import EVENT_TOPIC
from storage import LatentStore, LeaseHeldError, Status, StoreMismatchError
from storage.scan import NoImagesError

REPO = Path(__file__).resolve().parents[1]
# Shards of 2 images and enough steps that a shard takes about 2 s on one core (0.54 s per 120 steps): long enough
# to be killed in the middle, 0.5 s after it starts.
SLOW_SHARDS = InvertConfig(inversion={"num_steps": 400, "loss": "mse", "w_avg_samples": 500}, shard_size=2)


def on(cluster, **options) -> ExecutionOptions:
    return ExecutionOptions(cluster=cluster.scheduler_address, **options)


@pytest.fixture(scope="module")
def dask(prefect_harness, dask_cluster):
    return dask_cluster


@pytest.fixture(scope="module")
def generator(tiny_generator_file):
    """The session's saved tiny generator (conftest), under this module's short name."""
    return tiny_generator_file


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """8 small images: 4 shards of 2."""
    folder = tmp_path_factory.mktemp("faces")
    write_good_images(folder, 8)
    return folder


@pytest.fixture(scope="module")
def reference(dask, generator, faces, tmp_path_factory):
    """An uninterrupted run of the flow: the store every faulty run must reproduce bit for bit."""
    from flows.invert_dataset import invert_dataset

    url = str(tmp_path_factory.mktemp("reference") / "store.zarr")
    summary = invert_dataset(str(faces), url, generator, config=SLOW_SHARDS, execution=on(dask[0]))
    assert summary.counts == {"pending": 0, "done": 8, "failed": 0}
    return store_arrays(url)


def _artifacts(key_prefix: str) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=f"{key_prefix}%")))
    return {a.key: a.data for a in found}


def test_bad_inputs_are_recorded_with_reasons_and_the_rest_inverted(dask, generator, tmp_path):
    from flows.invert_dataset import invert_dataset

    expected = write_bad_inputs(tmp_path / "inputs")
    write_good_images(tmp_path / "inputs", 3)
    url = str(tmp_path / "badinputs.zarr")
    summary = invert_dataset(str(tmp_path / "inputs"), url, generator,
                             config=InvertConfig(inversion=FAST, shard_size=4), execution=on(dask[0]))
    arrays = store_arrays(url)
    outcome = {str(i): (Status(s).name.lower(), str(e)) for i, s, e in zip(arrays["image_id"], arrays["status"],
                                                                        arrays["error"])}
    outcome.update({s.path: ("skipped", s.reason) for s in summary.skipped})
    assert set(outcome) == set(expected) | {f"good00{i}.png" for i in range(3)}  # nothing lost
    for name, (want, reason) in expected.items():
        assert outcome[name][0] == want and outcome[name][1].startswith(reason), (name, outcome[name])
    assert summary.counts == {"pending": 0, "done": 8, "failed": 4}
    assert {f["image_id"] for f in summary.failures} == {n for n, (o, _) in expected.items() if o == "failed"}
    artifacts = _artifacts("invert-badinputs-zarr")
    assert artifacts["invert-badinputs-zarr-progress"] == 100.0
    assert "4 failed" in artifacts["invert-badinputs-zarr-summary"]
    assert "bomb.png" in str(artifacts["invert-badinputs-zarr-problems"])


@pytest.mark.slow
def test_killed_worker_loses_no_image_and_changes_no_bit(dask, generator, faces, reference, tmp_path):
    from flows.invert_dataset import invert_dataset

    cluster, client = dask
    events, killed = [], []

    def on_event(event):
        message = event[1]
        events.append(message)
        if message["event"] == "started" and not killed:  # the first shard to start dies half-way through it
            killed.append(message)
            threading.Timer(0.5, os.kill, (message["pid"], signal.SIGKILL)).start()

    client.subscribe_topic(EVENT_TOPIC, on_event)
    try:
        url = str(tmp_path / "killed.zarr")
        summary = invert_dataset(str(faces), url, generator, config=SLOW_SHARDS, execution=on(cluster))
    finally:
        client.unsubscribe_topic(EVENT_TOPIC)
    shard = killed[0]["shard"]
    started = [e for e in events if e["event"] == "started" and e["shard"] == shard]
    assert len(started) == 2 and started[1]["pid"] != killed[0]["pid"], events  # it ran again, elsewhere
    assert not [e for e in events if e["event"] == "finished" and e["pid"] == killed[0]["pid"]
                and e["shard"] == shard]
    arrays = store_arrays(url)
    assert summary.counts == {"pending": 0, "done": 8, "failed": 0}
    assert arrays["attempts"].tolist() == [1] * 8  # every item written by exactly one execution
    for name in ("ws", "thumbnails", "metrics/final_loss", "image_id"):
        assert np.array_equal(arrays[name], reference[name]), name  # bit-identical to the uninterrupted run


@pytest.mark.slow
def test_crashed_flow_rerun_inverts_only_what_is_pending(dask, generator, prefect_harness, tmp_path):
    from flows.invert_dataset import invert_dataset

    cluster, client = dask
    images = tmp_path / "images"
    write_good_images(images, 12)
    url = str(tmp_path / "crashed.zarr")
    script = textwrap.dedent(f"""
        from flows.invert_dataset import invert_dataset
        from runtime.config import ExecutionOptions, InvertConfig
        invert_dataset({str(images)!r}, {url!r}, {generator!r}, config=InvertConfig(
                       inversion={dict(SLOW_SHARDS.inversion)!r}, shard_size=2),
                       execution=ExecutionOptions(cluster={cluster.scheduler_address!r}))
    """)
    env = {**os.environ, "PREFECT_API_URL": prefect_harness, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}
    coordinator = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done_before = _wait_until_some_done(url, coordinator, total=12)
    os.killpg(coordinator.pid, signal.SIGKILL)  # the coordinator dies holding the lease, shards in flight
    coordinator.wait()
    _wait_until_idle(client)  # shards it had started finish on the workers (and write: its lease still stands)
    before = store_arrays(url)
    pending = int((before["status"] == Status.PENDING).sum())
    assert 0 < pending < 12 and (before["status"] == Status.DONE).sum() >= done_before
    held = LatentStore.open(url).lease_holder()
    assert held is None  # the dead run held the lease on this host and its pid is gone: no --force needed
    summary = invert_dataset(str(images), url, generator, config=SLOW_SHARDS, execution=on(cluster))
    after = store_arrays(url)
    assert summary.this_run.items == pending and summary.counts["done"] == 12
    was_done = before["status"] == Status.DONE
    assert np.array_equal(after["ws"][was_done], before["ws"][was_done])  # finished items were not redone
    assert after["attempts"].tolist() == [1] * 12


def _wait_until_some_done(url: str, process: subprocess.Popen, *, total: int, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the flow process ended before it could be killed: {process.stderr.read().decode()[-2000:]}")
        try:
            done = LatentStore.open(url).status_counts()["done"]
        except (FileNotFoundError, KeyError, ValueError):  # not created yet, or half-way through creation
            done = 0
        if 0 < done < total:
            return done
        time.sleep(0.05)
    pytest.fail("no shard finished in time")


def _wait_until_idle(client, timeout: float = 120) -> None:
    """Until no worker runs a task body, including bodies of tasks the scheduler forgot (their client died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(client.run(lambda dask_worker: len(dask_worker.state.executing)).values()):
            return
        time.sleep(0.2)
    pytest.fail("workers still busy")


def test_rerun_appends_new_images_and_inverts_only_them(dask, generator, tmp_path):
    from flows.invert_dataset import invert_dataset

    images, url = tmp_path / "incoming", str(tmp_path / "nightly.zarr")
    write_good_images(images, 3)
    fast = InvertConfig(inversion=FAST, shard_size=2)
    first = invert_dataset(str(images), url, generator, config=fast, execution=on(dask[0]))
    again = invert_dataset(str(images), url, generator, config=fast, execution=on(dask[0]))
    write_good_images(images, 2, start=3)
    shutil.copyfile(images / "good000.png", images / "renamed.png")  # known content under a new name
    nightly = invert_dataset(str(images), url, generator, config=fast, execution=on(dask[0]))
    assert (first.added, first.this_run.items, again.this_run.items, again.added) == (3, 3, 0, 0)
    assert (nightly.added, nightly.this_run.items, nightly.counts["done"]) == (2, 2, 5)
    arrays = store_arrays(url)
    assert arrays["attempts"].tolist() == [1] * 5 and arrays["image_id"].tolist()[3:] == ["good003.png",
                                                                                          "good004.png"]


def test_rerun_hashes_only_new_or_changed_files(dask, generator, tmp_path):
    from flows.invert_dataset import invert_dataset

    images, url = tmp_path / "nightly", str(tmp_path / "hashed.zarr")
    paths = write_good_images(images, 3)
    run = lambda: invert_dataset(str(images), url, generator, config=InvertConfig(  # noqa: E731
        inversion=FAST, shard_size=2), execution=on(dask[0]))
    first, again = run(), run()
    _later_mtime(paths[0])  # touched (a sync tool): read again, same hash, nothing new
    write_good_images(images, 1, start=3)
    touched = run()
    assert [(s.hashed, s.reused) for s in (first, again, touched)] == [(3, 0), (0, 3), (2, 2)]
    assert (again.added, touched.added, touched.counts["done"]) == (0, 1, 4)
    paths[1].write_bytes(paths[1].read_bytes() + b"edited")  # new content and size under a known image_id
    _later_mtime(paths[1])
    with pytest.raises(ValueError, match="good001.png"):  # the store notices the edit only if the scan rehashes it
        run()


def _later_mtime(path: Path) -> None:
    later = path.stat().st_mtime_ns + 10**9  # past any coarse filesystem clock
    os.utime(path, ns=(later, later))


def test_second_run_on_a_leased_store_is_refused_until_forced(dask, generator, tmp_path):
    from flows.invert_dataset import invert_dataset

    write_good_images(tmp_path / "imgs", 1)
    fast = InvertConfig(inversion=FAST, shard_size=4)
    store = prepare_store(tmp_path / "imgs", tmp_path / "leased.zarr", generator, fast)
    store.acquire_lease("someone-elses-run", ttl_s=600)
    with pytest.raises(LeaseHeldError, match="someone-elses-run"):
        invert_dataset(str(tmp_path / "imgs"), store.url, generator, config=fast, execution=on(dask[0]))
    summary = invert_dataset(str(tmp_path / "imgs"), store.url, generator, config=fast,
                             execution=on(dask[0], force=True))
    assert summary.counts["done"] == 1


def test_store_made_with_other_settings_is_refused(generator, prefect_harness, tmp_path):
    from flows.invert_dataset import invert_dataset

    write_good_images(tmp_path / "imgs", 1)
    prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, InvertConfig(inversion=FAST))
    with pytest.raises(StoreMismatchError, match="num_steps: stored 4, given 5"):
        invert_dataset(str(tmp_path / "imgs"), str(tmp_path / "s.zarr"), generator,
                       config=InvertConfig(inversion={**FAST, "num_steps": 5}, shard_size=4))
    other = save_tiny_generator(tmp_path, seed=3)
    with pytest.raises(StoreMismatchError, match="holds codes of generator"):
        invert_dataset(str(tmp_path / "imgs"), str(tmp_path / "s.zarr"), other,
                       config=InvertConfig(inversion=FAST, shard_size=4))


def test_retries_are_for_transient_failures_only():
    from prefect.states import Failed

    from tasks.policy import transient

    assert transient(None, None, Failed(data=OSError("connection reset by the bucket")))
    assert transient(None, None, Failed(data=RuntimeError("CUDA error: an illegal memory access")))
    for permanent in (StoreMismatchError("other config"), LeaseHeldError("leased"), NoImagesError("no images"),
                      TypeError("a bug")):
        assert not transient(None, None, Failed(data=permanent))
