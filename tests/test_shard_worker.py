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
from ganinv.inversion import HYBRID_CONFIG, InversionConfig
from runtime import models, shard
from runtime.config import ExecutionOptions, InvertConfig
from runtime.presets import inversion_preset
from runtime.errors import ConfigError, WorkerSetupError
from storage import LatentStore, Status


@pytest.fixture(scope="module")
def generator(tiny_generator_file):
    """The session's saved tiny generator (conftest), under this module's short name."""
    return tiny_generator_file


def _run_all(store: LatentStore, generator: str, **kwargs) -> list[shard.ShardReport]:
    return [shard.run_shard(store.url, s.index, generator=generator, execution=ExecutionOptions(threads=1, **kwargs))
            for s in store.pending_shards()]


def test_shard_writes_codes_metrics_thumbnails_and_reasons(tmp_path, generator):
    write_good_images(tmp_path / "imgs", 3)
    expected = write_bad_inputs(tmp_path / "imgs" / "bad")
    spec = InvertConfig(inversion=FAST)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, spec)
    reports = _run_all(store, generator)
    assert sum(r.items for r in reports) == len(store)
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
    spec = InvertConfig(inversion=FAST)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, spec)
    _run_all(store, generator)
    first = store_arrays(store.url)
    store.array("status")[:] = np.zeros(len(store), np.uint8)  # as if no run had written (attempts stay)
    _run_all(store, generator)
    second = store_arrays(store.url)
    assert np.array_equal(first["ws"], second["ws"])
    assert np.array_equal(first["thumbnails"], second["thumbnails"])
    assert second["attempts"].tolist() == [2] * 5


def test_item_seed_follows_its_id_not_its_shard(tmp_path, generator):
    write_good_images(tmp_path / "imgs", 4)
    spec = InvertConfig(inversion=FAST)
    big = prepare_store(tmp_path / "imgs", tmp_path / "big.zarr", generator, spec, chunk_items=4)
    small = prepare_store(tmp_path / "imgs", tmp_path / "small.zarr", generator, spec, chunk_items=1)
    _run_all(big, generator)
    _run_all(small, generator)
    # other shards and batches, same per-image seeds: on CPU every image is inverted on its own, so bitwise equal
    np.testing.assert_array_equal(store_arrays(big.url)["ws"], store_arrays(small.url)["ws"])
    other_seed = InvertConfig(seed=1, inversion=FAST)
    third = prepare_store(tmp_path / "imgs", tmp_path / "seed1.zarr", generator, other_seed)
    _run_all(third, generator)
    assert not np.allclose(store_arrays(big.url)["ws"], store_arrays(third.url)["ws"], atol=1e-4)


@pytest.mark.parametrize("mode", ["encoder", "hybrid"])
def test_encoder_modes_record_their_mode_and_steps(tmp_path, generator, mode):
    write_good_images(tmp_path / "imgs", 2)
    encoder = save_tiny_encoder(tmp_path, generator)
    spec = InvertConfig(mode=mode, encoder=encoder, inversion=FAST)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, spec)
    _run_all(store, generator)
    arrays = store_arrays(store.url)
    assert arrays["status"].tolist() == [Status.DONE] * 2
    assert arrays["metrics/steps"].tolist() == [0 if mode == "encoder" else FAST["num_steps"]] * 2
    config = store.attributes.inversion
    assert config["mode"] == mode and config["encoder"]["source"] == encoder and len(config["encoder"]["sha256"]) == 64
    if mode == "encoder":  # the stored codes are exactly the encoder's output, image by image (CPU numerics:
        policy = spec.resolve(generator).decode_policy(16)  # runtime/numerics.py, independent of the batch)
        network = load_encoder(encoder)
        codes = [encode(network, decode_image(tmp_path / "imgs" / f"good00{i}.png", policy)[None]) for i in range(2)]
        assert torch.equal(torch.cat(codes), torch.from_numpy(arrays["ws"]))


def test_worker_refuses_a_generator_other_than_the_stores(tmp_path, generator):
    write_good_images(tmp_path / "imgs", 1)
    spec = InvertConfig(inversion=FAST)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, spec)
    other = save_tiny_generator(tmp_path, seed=1)
    with pytest.raises(WorkerSetupError, match="every worker must see the same generator file"):
        shard.run_shard(store.url, 0, generator=other)
    assert LatentStore.open(store.url).status_counts()["pending"] == 1


def test_models_are_loaded_once_per_process(generator):
    first = models.load_models(generator, None, torch.device("cpu"))
    assert models.load_models(generator, None, torch.device("cpu")) is first
    assert [key[:4] for key in models.cached_model_keys()].count(("models", generator, None, "cpu")) == 1


def test_identity_comes_from_the_copy_loaded_on_another_device_not_a_second_cpu_load(tmp_path):
    from ganinv.generators import read_generator_metadata

    path = save_tiny_generator(tmp_path, seed=2)  # a file nothing else in this process has loaded
    models.generator(path, "meta")
    assert models.identity(path)["identity"] == read_generator_metadata(path)["identity"]
    assert [key[:3] for key in models.cached_model_keys() if key[0] == "generator" and key[1] == path] == [
        ("generator", path, "meta")]


def test_defaults_follow_the_generator():
    faces = InvertConfig().resolve("faces64")
    assert (faces.mode, faces.encoder, faces.config) == ("hybrid", "faces64", inversion_preset("hybrid", "faces64"))
    assert faces.config.loss == "clf-perceptual" and not faces.config.optimize_noise
    assert (faces.config.space, faces.config.num_steps) == (HYBRID_CONFIG.space, HYBRID_CONFIG.num_steps)
    other = InvertConfig(inversion={"num_steps": 300, "space": "w+"}).resolve("my.pkl")
    assert (other.mode, other.encoder, other.config.num_steps, other.config.loss) == ("optimize", None, 300,
                                                                                      "lpips-vgg")
    assert other.config == InversionConfig(num_steps=300, space="w+", optimize_noise=False)
    assert InvertConfig(mode="optimize").resolve("faces64").config.initial_learning_rate == 0.1
    with pytest.raises(ConfigError, match="needs an encoder"):
        InvertConfig(mode="hybrid").resolve("my.pkl")
    with pytest.raises(ConfigError, match="stpes"):
        InvertConfig(inversion={"stpes": 3}).resolve("faces64")


def test_a_stored_spec_reloads_into_the_config_that_made_it():
    spec = InvertConfig(seed=3, inversion={"num_steps": 7}, decode={"max_upscale": 2.0}).resolve("faces64")
    record = spec.to_record(resolution=64, encoder_sha256="ab" * 32)
    back = type(spec).from_record(record, thumbnail_size=spec.thumbnail_size)
    assert back == spec and InvertConfig.from_spec(back).resolve("faces64") == spec
    # a store made under an older preset (the projector's Adam betas, which its record leaves out) resumes as made
    old = InvertConfig(inversion={"betas": (0.9, 0.999), "initial_learning_rate": 0.03}).resolve("faces64")
    record = old.to_record(resolution=64, encoder_sha256="ab" * 32)
    assert "betas" not in record["inversion"]
    back = type(old).from_record(record, thumbnail_size=old.thumbnail_size)
    assert InvertConfig.from_spec(back).resolve("faces64") == old


def test_metric_names_say_which_perceptual_distance():
    from ganinv.inversion.batch import item_metric_names

    assert item_metric_names("clf-perceptual+0.1*mse") == ("mse", "psnr", "ssim", "clf-perceptual", "final_loss",
                                                           "steps", "seconds")
    assert "lpips-vgg" in item_metric_names("lpips-vgg") and "lpips" not in item_metric_names("mse")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_dask_malloc_trim_setting_is_undone_once_per_worker_process():
    script = "from runtime.shard import tune_malloc; print(tune_malloc(), tune_malloc())"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    as_dask_sets_it = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                     env={**env, "MALLOC_TRIM_THRESHOLD_": "65536"})
    unset = {k: v for k, v in env.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=unset)
    assert as_dask_sets_it.stdout.split() == ["True", "False"] and plain.stdout.split() == ["False", "False"]


def test_prefetching_the_next_batch_changes_no_byte(tmp_path, generator):
    write_good_images(tmp_path / "imgs", 7)
    write_bad_inputs(tmp_path / "imgs" / "bad")  # undecodable items between good ones: batches re-form around them
    spec = InvertConfig(inversion=FAST)
    first = prepare_store(tmp_path / "imgs", tmp_path / "a.zarr", generator, spec, chunk_items=64)
    second = prepare_store(tmp_path / "imgs", tmp_path / "b.zarr", generator, spec, chunk_items=64)
    assert len(first.shards()) == 1 and len(first) > 9  # one shard of several batches of 3
    reports = [_run_all(store, generator, batch_size=3, prefetch=prefetch)[0]
               for store, prefetch in ((first, True), (second, False))]
    assert reports[0].done == reports[1].done >= 7 and reports[0].failed == reports[1].failed > 0
    with_prefetch, without = store_arrays(first.url), store_arrays(second.url)
    for name in with_prefetch.keys() - {"metrics/seconds"}:  # seconds are timings
        np.testing.assert_array_equal(with_prefetch[name], without[name], err_msg=name)


def test_batches_do_not_depend_on_how_decoding_is_chunked(tmp_path, generator):
    write_good_images(tmp_path / "imgs", 5)
    write_bad_inputs(tmp_path / "imgs" / "bad")
    spec = InvertConfig(inversion=FAST)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, spec, chunk_items=64)
    inputs = store.read_shard_inputs(store.shard(0))
    loaded = models.load_models(generator, None, "cpu")
    spec = spec.resolve(generator)
    policy = spec.decode_policy(loaded.G.img_resolution)
    whole = [shard.decode_chunk(inputs, range(len(inputs)), policy=policy)]  # decode everything, then batch
    single = [shard.decode_chunk(inputs, [i], policy=policy) for i in range(len(inputs))]
    results = [shard.invert_items(loaded, spec, inputs.image_ids, chunks, layout=store.layout, batch_size=2)[0]
               for chunks in (whole, single)]
    np.testing.assert_array_equal(results[0].ws, results[1].ws)
    assert results[0].error == results[1].error and (results[0].status == results[1].status).all()


def test_batch_size_auto_probes_the_gpu_once_and_falls_back_to_the_default_elsewhere(generator, monkeypatch):
    import ganinv.inversion

    loaded = models.load_models(generator, None, torch.device("cpu"))
    spec = InvertConfig(inversion=FAST).resolve(generator)
    assert shard.resolve_batch_size(loaded, spec, None, generator=generator) == shard.DEFAULT_BATCH["cpu"]
    assert shard.resolve_batch_size(loaded, spec, 5, generator=generator) == 5
    assert shard.resolve_batch_size(loaded, spec, "auto", generator=generator) == shard.DEFAULT_BATCH["cpu"]
    for bad in (-4, 0, "many"):
        with pytest.raises(ConfigError, match="batch_size must be a positive number"):
            shard.check_batch_size(bad)

    probes = []
    monkeypatch.setattr(ganinv.inversion, "auto_batch_size", lambda G, config: probes.append(config) or 48)
    monkeypatch.setattr(shard, "_AUTO_BATCHES", {})
    on_gpu = models.Models(G=loaded.G, identity=loaded.identity, E=None, device=torch.device("cuda"))
    for _ in range(2):
        assert shard.resolve_batch_size(on_gpu, spec, "auto", generator=generator) == 48
    assert probes == [spec.config]  # probed once per (generator, device, config), then reused
