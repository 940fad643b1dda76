"""The shard worker as a plain function (no Prefect, no Dask): decode, invert, write one shard of a real store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _flow_helpers import FAST, prepare_store, save_tiny_encoder, save_tiny_generator, store_arrays
from _image_files import write_bad_inputs, write_good_images
from ganinv.datasets.folder import decode_image
from ganinv.inversion import encode
from ganinv.models.encoder import load_encoder
from storage import LatentStore, Status
from tasks import worker
from tasks.spec import FACES64_HYBRID, InversionSpec, known_encoder


@pytest.fixture(scope="module")
def generator(tiny_generator_file):
    """The session's saved tiny generator (conftest), under this module's short name."""
    return tiny_generator_file


def _run_all(store: LatentStore, spec: InversionSpec, generator: str, **kwargs) -> list[dict]:
    return [worker.run_shard(store.url, shard.index, spec.to_dict(), generator=generator, threads=1, **kwargs)
            for shard in store.pending_shards()]


def test_shard_writes_codes_metrics_thumbnails_and_reasons(tmp_path, generator):
    write_good_images(tmp_path / "imgs", 3)
    expected = write_bad_inputs(tmp_path / "imgs" / "bad")
    spec = InversionSpec.for_generator(generator, **FAST)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, spec)
    reports = _run_all(store, spec, generator)
    assert sum(r["items"] for r in reports) == len(store)
    arrays = store_arrays(store.url)
    for image_id, status, error, ws, psnr, thumb in zip(arrays["image_id"], arrays["status"], arrays["error"],
                                                       arrays["ws"], arrays["metrics/psnr"], arrays["thumbnails"]):
        outcome, reason = expected.get(str(image_id).removeprefix("bad/"), ("done", ""))
        assert Status(status).name.lower() == outcome, (image_id, error)
        if outcome == "done":
            assert error == "" and np.isfinite(ws).all() and psnr > 5 and thumb.std() > 0
        else:
            assert str(error).startswith(reason) and np.isnan(ws).all()
    assert arrays["metrics/steps"][arrays["status"] == Status.DONE].tolist() == [FAST["num_steps"]] * 8
    assert store.attributes.inversion["mode"] == "optimize" and store.layout.thumbnail_size == 16


def test_rerunning_a_shard_writes_the_same_bytes(tmp_path, generator):
    write_good_images(tmp_path / "imgs", 5)
    spec = InversionSpec.for_generator(generator, **FAST)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, spec)
    _run_all(store, spec, generator)
    first = store_arrays(store.url)
    store.array("status")[:] = np.zeros(len(store), np.uint8)  # as if no run had written (attempts stay)
    _run_all(store, spec, generator)
    second = store_arrays(store.url)
    assert np.array_equal(first["ws"], second["ws"])
    assert np.array_equal(first["thumbnails"], second["thumbnails"])
    assert second["attempts"].tolist() == [2] * 5


def test_item_seed_follows_its_id_not_its_shard(tmp_path, generator):
    write_good_images(tmp_path / "imgs", 4)
    spec = InversionSpec.for_generator(generator, **FAST)
    big = prepare_store(tmp_path / "imgs", tmp_path / "big.zarr", generator, spec, chunk_items=4)
    small = prepare_store(tmp_path / "imgs", tmp_path / "small.zarr", generator, spec, chunk_items=1)
    _run_all(big, spec, generator)
    _run_all(small, spec, generator)
    # other batches, same per-image seeds: equal up to the float rounding of batched kernels
    np.testing.assert_allclose(store_arrays(big.url)["ws"], store_arrays(small.url)["ws"], atol=1e-4)
    other_seed = InversionSpec.for_generator(generator, seed=1, **FAST)
    third = prepare_store(tmp_path / "imgs", tmp_path / "seed1.zarr", generator, other_seed)
    _run_all(third, other_seed, generator)
    assert not np.allclose(store_arrays(big.url)["ws"], store_arrays(third.url)["ws"], atol=1e-4)


@pytest.mark.parametrize("mode", ["encoder", "hybrid"])
def test_encoder_modes_record_their_mode_and_steps(tmp_path, generator, mode):
    write_good_images(tmp_path / "imgs", 2)
    encoder = save_tiny_encoder(tmp_path, generator)
    spec = InversionSpec.for_generator(generator, mode=mode, encoder=encoder, **FAST)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, spec)
    _run_all(store, spec, generator)
    arrays = store_arrays(store.url)
    assert arrays["status"].tolist() == [Status.DONE] * 2
    assert arrays["metrics/steps"].tolist() == [0 if mode == "encoder" else FAST["num_steps"]] * 2
    config = store.attributes.inversion
    assert config["mode"] == mode and config["encoder"]["source"] == encoder and len(config["encoder"]["sha256"]) == 64
    if mode == "encoder":  # the stored codes are exactly the encoder's output for the decoded batch
        policy = spec.decode_policy(16)
        target = torch.stack([decode_image(tmp_path / "imgs" / f"good00{i}.png", policy) for i in range(2)])
        assert torch.equal(encode(load_encoder(encoder), target), torch.from_numpy(arrays["ws"]))


def test_worker_refuses_a_generator_other_than_the_stores(tmp_path, generator):
    write_good_images(tmp_path / "imgs", 1)
    spec = InversionSpec.for_generator(generator, **FAST)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, spec)
    other = save_tiny_generator(tmp_path, seed=1)
    with pytest.raises(worker.WorkerSetupError, match="every worker must see the same generator file"):
        worker.run_shard(store.url, 0, spec.to_dict(), generator=other)
    assert LatentStore.open(store.url).status_counts()["pending"] == 1


def test_models_are_loaded_once_per_process(generator):
    first = worker.load_models(generator, None, torch.device("cpu"))
    assert worker.load_models(generator, None, torch.device("cpu")) is first
    assert [key[:4] for key in worker.cached_model_keys()].count(("models", generator, None, "cpu")) == 1


def test_identity_comes_from_the_copy_loaded_on_another_device_not_a_second_cpu_load(tmp_path):
    from ganinv.generators import read_generator_metadata
    from tasks import models

    path = save_tiny_generator(tmp_path, seed=2)  # a file nothing else in this process has loaded
    models.generator(path, "meta")
    assert models.identity(path)["identity"] == read_generator_metadata(path)["identity"]
    assert [key[:3] for key in models.cached_model_keys() if key[0] == "generator" and key[1] == path] == [
        ("generator", path, "meta")]


def test_defaults_follow_the_generator():
    faces = InversionSpec.for_generator("faces64")
    assert (faces.mode, faces.encoder, faces.config) == ("hybrid", "faces64", FACES64_HYBRID)
    assert faces.config.loss == "clf-perceptual" and not faces.config.optimize_noise
    other = InversionSpec.for_generator("my.pkl", num_steps=300, space="w+")
    assert (other.mode, other.encoder, other.config.num_steps, other.config.loss) == ("optimize", None, 300,
                                                                                      "lpips-vgg")
    assert known_encoder("my.pkl") is None
    assert InversionSpec.for_generator("faces64", mode="optimize").config.initial_learning_rate == 0.1
    with pytest.raises(ValueError, match="needs an encoder"):
        InversionSpec.for_generator("my.pkl", mode="hybrid")
    with pytest.raises(ValueError, match=r"unknown inversion settings \['stpes'\]"):
        InversionSpec.for_generator("faces64", stpes=3)
    assert InversionSpec.from_dict(faces.to_dict()) == faces


def test_metric_names_say_which_perceptual_distance():
    assert worker.metric_names("clf-perceptual+0.1*mse") == ("mse", "psnr", "ssim", "clf-perceptual", "final_loss",
                                                             "steps", "seconds")
    assert "lpips-vgg" in worker.metric_names("lpips-vgg") and "lpips" not in worker.metric_names("mse")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_dask_malloc_trim_setting_is_undone_once_per_worker_process():
    script = "from tasks.worker import tune_malloc; print(tune_malloc(), tune_malloc())"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    as_dask_sets_it = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                     env={**env, "MALLOC_TRIM_THRESHOLD_": "65536"})
    unset = {k: v for k, v in env.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=unset)
    assert as_dask_sets_it.stdout.split() == ["True", "False"] and plain.stdout.split() == ["False", "False"]


def test_prefetching_the_next_batch_changes_no_byte(tmp_path, generator):
    write_good_images(tmp_path / "imgs", 7)
    write_bad_inputs(tmp_path / "imgs" / "bad")  # undecodable items between good ones: batches re-form around them
    spec = InversionSpec.for_generator(generator, **FAST)
    first = prepare_store(tmp_path / "imgs", tmp_path / "a.zarr", generator, spec, chunk_items=64)
    second = prepare_store(tmp_path / "imgs", tmp_path / "b.zarr", generator, spec, chunk_items=64)
    assert len(first.shards()) == 1 and len(first) > 9  # one shard of several batches of 3
    reports = [_run_all(store, spec, generator, batch_size=3, prefetch=prefetch)[0]
               for store, prefetch in ((first, True), (second, False))]
    assert reports[0]["done"] == reports[1]["done"] >= 7 and reports[0]["failed"] == reports[1]["failed"] > 0
    with_prefetch, without = store_arrays(first.url), store_arrays(second.url)
    for name in with_prefetch.keys() - {"metrics/seconds"}:  # seconds are timings
        np.testing.assert_array_equal(with_prefetch[name], without[name], err_msg=name)


def test_batches_do_not_depend_on_how_decoding_is_chunked(tmp_path, generator):
    write_good_images(tmp_path / "imgs", 5)
    write_bad_inputs(tmp_path / "imgs" / "bad")
    spec = InversionSpec.for_generator(generator, **FAST)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, spec, chunk_items=64)
    inputs = store.read_shard_inputs(store.shard(0))
    models = worker.load_models(generator, None, "cpu")
    policy = spec.decode_policy(models.G.img_resolution)
    whole = [worker.decode_chunk(inputs, range(len(inputs)), policy=policy)]  # decode everything, then batch
    single = [worker.decode_chunk(inputs, [i], policy=policy) for i in range(len(inputs))]
    results = [worker.invert_items(models, spec, inputs.image_ids, chunks, layout=store.layout, batch_size=2)[0]
               for chunks in (whole, single)]
    np.testing.assert_array_equal(results[0].ws, results[1].ws)
    assert results[0].error == results[1].error and (results[0].status == results[1].status).all()


def test_batch_size_auto_probes_the_gpu_once_and_falls_back_to_the_default_elsewhere(generator, monkeypatch):
    import ganinv.inversion

    models = worker.load_models(generator, None, torch.device("cpu"))
    spec = InversionSpec.for_generator(generator, **FAST)
    assert worker.resolve_batch_size(models, spec, None, generator=generator) == worker.DEFAULT_BATCH["cpu"]
    assert worker.resolve_batch_size(models, spec, 5, generator=generator) == 5
    assert worker.resolve_batch_size(models, spec, worker.AUTO_BATCH, generator=generator) == worker.DEFAULT_BATCH["cpu"]
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        worker.resolve_batch_size(models, spec, -4, generator=generator)

    probes = []
    monkeypatch.setattr(ganinv.inversion, "auto_batch_size", lambda G, config: probes.append(config) or 48)
    monkeypatch.setattr(worker, "_AUTO_BATCHES", {})
    on_gpu = worker.Models(G=models.G, identity=models.identity, E=None, device=torch.device("cuda"))
    for _ in range(2):
        assert worker.resolve_batch_size(on_gpu, spec, worker.AUTO_BATCH, generator=generator) == 48
    assert probes == [spec.config]  # probed once per (generator, device, config), then reused
