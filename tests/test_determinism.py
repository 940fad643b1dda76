"""An item's bytes depend on its image, seed and settings, never on worker count, batch size or shard boundaries
(issue 24 item 5): the store records the numerics (thread count, per-image inversion on CPU, device, torch) and
every later run and worker uses them or is refused; resumes and appends add codes equal to a fresh run's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _flow_helpers import FAST, prepare_store, store_arrays
from _image_files import write_good_images
from runtime import numerics, shard
from runtime.config import ExecutionOptions, InvertConfig
from runtime.errors import ConfigError, WorkerSetupError
from storage import LatentStore

SPEC = InvertConfig(inversion={**FAST, "space": "w+", "num_steps": 6})


def _same_bytes(a: str, b: str) -> None:
    first, second = store_arrays(a), store_arrays(b)
    for name in first.keys() - {"metrics/seconds", "attempts"}:  # seconds are timings, attempts count executions
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def _run(store: LatentStore, generator: str, **execution) -> None:
    for s in store.pending_shards():
        shard.run_shard(store.url, s.index, generator=generator, execution=ExecutionOptions(**execution))


def test_batch_size_and_shard_size_change_no_byte(tmp_path, tiny_generator_file):
    write_good_images(tmp_path / "imgs", 6)
    one = prepare_store(tmp_path / "imgs", tmp_path / "one.zarr", tiny_generator_file, SPEC, chunk_items=6)
    four = prepare_store(tmp_path / "imgs", tmp_path / "four.zarr", tiny_generator_file, SPEC, chunk_items=2)
    _run(one, tiny_generator_file, batch_size=1)
    _run(four, tiny_generator_file, batch_size=4)
    _same_bytes(one.url, four.url)


def test_an_append_and_a_resume_add_codes_equal_to_a_fresh_runs(tmp_path, tiny_generator_file):
    """An append re-batches the last shard; a repair requeues items among done ones: neither changes a byte."""
    write_good_images(tmp_path / "all", 8)
    fresh = prepare_store(tmp_path / "all", tmp_path / "fresh.zarr", tiny_generator_file, SPEC, chunk_items=4)
    _run(fresh, tiny_generator_file, batch_size=4)
    write_good_images(tmp_path / "grown", 6)
    grown = prepare_store(tmp_path / "grown", tmp_path / "grown.zarr", tiny_generator_file, SPEC, chunk_items=4)
    _run(grown, tiny_generator_file, batch_size=4)
    before = grown.ws()
    write_good_images(tmp_path / "grown", 8)  # two more images: they join the half-full last shard
    from runtime.coordinator import plan
    from storage.scan import scan_images

    writer = LatentStore.open(grown.url, "r+")
    assert plan(writer, scan_images(str(tmp_path / "grown")).manifest).added == 2
    writer.array("ws")[1] = np.nan  # damage: verify's repair requeues item 1 between done items 0, 2, 3
    assert writer.verify(repair=True).requeued == (1,)
    _run(writer, tiny_generator_file, batch_size=3)
    np.testing.assert_array_equal(LatentStore.open(grown.url).ws()[[0, 2, 3, 4, 5]], before[[0, 2, 3, 4, 5]])
    _same_bytes(fresh.url, grown.url)


def test_the_recorded_thread_count_is_used_by_every_worker_and_other_settings_are_refused(tmp_path,
                                                                                          tiny_generator_file):
    write_good_images(tmp_path / "imgs", 2)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", tiny_generator_file, SPEC)
    recorded = numerics.Numerics.from_record(LatentStore.open(store.url).attributes.numerics)
    assert recorded.threads == 1 and recorded.batching == "independent-rows" and recorded.device == "cpu"
    torch.set_num_threads(2)
    try:
        _run(store, tiny_generator_file, threads=2)  # a worker set up otherwise takes the store's count
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(1)
    writer = LatentStore.open(store.url, "r+")
    probes = [numerics.probe("cpu")]
    assert numerics.settle(writer, ExecutionOptions(), probes, local_workers=8).threads == 1  # not 2 cores / 8
    with pytest.raises(ConfigError, match=r"threads: the store's 1, here 3.*--threads"):
        numerics.settle(writer, ExecutionOptions(threads=3), probes, local_workers=1)
    other = [{**probes[0], "torch": "9.9.9"}]
    with pytest.raises(ConfigError, match=r"torch: the store's '.*', here '9.9.9'"):
        numerics.settle(writer, ExecutionOptions(), other, local_workers=1)
    with pytest.raises(ConfigError, match="workers compute differently"):
        numerics.settle(writer, ExecutionOptions(), probes + other, local_workers=2)


def test_per_image_stores_keep_their_batching_and_only_one_thread_batches_independent_rows(monkeypatch):
    """Stores recorded before independent rows keep their one-image-at-a-time bytes; rows were verified with one
    thread per worker, so workers of several threads invert per image."""
    facts = numerics.probe("cpu")
    old = numerics.Numerics(device="cpu", device_name=facts["device_name"], threads=1, batching=numerics.PER_IMAGE,
                            torch=facts["torch"])
    assert numerics._chosen(facts, ExecutionOptions(), 1, default=old) == old
    assert numerics._chosen(facts, ExecutionOptions(threads=1), 1, default=None).batching == "independent-rows"
    assert numerics._chosen(facts, ExecutionOptions(threads=2), 1, default=None).batching == "per-image"
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)  # rows rest on oneDNN convolutions
    assert numerics._chosen(facts, ExecutionOptions(threads=1), 1, default=None).batching == "per-image"


def test_a_worker_that_computes_otherwise_refuses_to_write(tmp_path, tiny_generator_file, monkeypatch):
    write_good_images(tmp_path / "imgs", 2)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", tiny_generator_file, SPEC)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "NO_AVX")
    with pytest.raises(WorkerSetupError, match="device_name: the store's .*, here 'x86_64 NO_AVX'|device_name"):
        _run(store, tiny_generator_file)
    assert LatentStore.open(store.url).status_counts()["pending"] == 2


def test_a_store_without_recorded_numerics_is_refused_by_workers(tmp_path, tiny_generator_file):
    from runtime.coordinator import check_settings, open_store, plan
    from storage.scan import scan_images

    write_good_images(tmp_path / "imgs", 1)
    scan = scan_images(str(tmp_path / "imgs"))
    store, _ = open_store(str(tmp_path / "s.zarr"), scan.manifest, check_settings(tiny_generator_file, SPEC),
                          chunk_items=4)
    plan(store, scan.manifest)
    with pytest.raises(WorkerSetupError, match="records no numerics"):
        _run(store, tiny_generator_file)


@pytest.mark.slow
def test_one_worker_at_batch_1_and_two_workers_at_batch_4_write_the_same_bytes(dask_cluster, prefect_harness,
                                                                             tiny_generator_file, tmp_path):
    """Through the flow, Prefect and Dask: a store begun by one local worker inverting one image at a time (its
    thread count, 2 cores / 1 worker, recorded) and finished by two workers at batch 4 after an append, against a
    fresh store made by the two workers in one run."""
    from flows.invert_dataset import invert_dataset

    write_good_images(tmp_path / "imgs", 6)
    config = InvertConfig(inversion=SPEC.inversion, shard_size=4)
    grown = str(tmp_path / "grown.zarr")
    invert_dataset(str(tmp_path / "imgs"), grown, tiny_generator_file, config=config,
                   execution=ExecutionOptions(cluster="local", workers=1, batch_size=1))
    threads = LatentStore.open(grown).attributes.numerics["threads"]
    write_good_images(tmp_path / "imgs", 10)
    two_workers = ExecutionOptions(cluster=dask_cluster[0].scheduler_address, batch_size=4)
    invert_dataset(str(tmp_path / "imgs"), grown, tiny_generator_file, config=config, execution=two_workers)
    fresh = str(tmp_path / "fresh.zarr")
    invert_dataset(str(tmp_path / "imgs"), fresh, tiny_generator_file, config=config,
                   execution=ExecutionOptions(cluster=two_workers.cluster, batch_size=4, threads=threads))
    assert LatentStore.open(grown).attributes.numerics == LatentStore.open(fresh).attributes.numerics
    assert LatentStore.open(grown).status_counts() == {"pending": 0, "done": 10, "failed": 0}
    _same_bytes(grown, fresh)
