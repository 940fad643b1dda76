"""A corpus built cheaply with an encoder (issue 23): `ganinv train-encoder --generator FILE --images DIR` trains an
encoder for any generator; `ganinv invert --encoder` starts every image from it (the encoder-start preset) and the
store records which encoder, bound to which generator; an encoder of another generator is refused (exit 2) before
any server starts."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _flow_helpers import FAST, prepare_store, save_tiny_generator
from _image_files import write_good_images
from cli.app import app
from ganinv.inversion import ENCODER_START_CONFIG
from ganinv.models.encoder import load_encoder
from runtime import models
from runtime.config import InvertConfig
from runtime.presets import inversion_preset
from runtime.coordinator import check_settings, open_store
from runtime.shard import run_shard
from storage import LatentStore, StoreMismatchError
from storage.scan import scan_images

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tiny_generator_file, tmp_path_factory):
    """(generator file, encoder file, images folder): an encoder trained by the command for the tiny generator on
    generated images and a folder of the user's images."""
    folder = tmp_path_factory.mktemp("encoder")
    write_good_images(folder / "photos", 6)
    encoder = folder / "e.safetensors"
    result = runner.invoke(app, ["train-encoder", "--generator", tiny_generator_file, "--images",
                                 str(folder / "photos"), "--run-dir", str(folder / "run"), "--minutes", "10",
                                 "--steps", "2", "--batch-size", "4", "--perceptual", "none", "--device", "cpu",
                                 "--out", str(encoder)])
    assert result.exit_code == 0, result.output
    assert "2 of 2 steps" in result.output and "perceptual term: none" in result.output
    return tiny_generator_file, str(encoder), folder


def test_train_encoder_trains_for_a_generator_file_on_its_images_and_binds_the_encoder_to_it(trained):
    generator, encoder, folder = trained
    G = models.generator(generator, "cpu")
    E = load_encoder(encoder, generator=G)  # refused for any other generator
    assert E.generator_identity == models.identity(generator)["identity"]
    assert E(torch.zeros(2, 3, G.img_resolution, G.img_resolution)).shape == (2, G.num_ws, G.w_dim)
    run = json.loads((folder / "run" / "run.json").read_text())
    assert run["generator"] == generator and run["images"]["count"] == 6 and run["steps"] == 2


@pytest.mark.parametrize("args, expected", [
    ([], "--generator SOURCE or --gan-run RUN"),
    (["--generator", "G", "--gan-run", "R"], "--generator SOURCE or --gan-run RUN"),
    (["--generator", "faces64", "--images", "procedural:many:1"], "procedural:N:SEED"),
    (["--generator", "faces64", "--perceptual", "lpips"], "expected one of"),
])
def test_train_encoder_refuses_bad_flags_with_exit_2(tmp_path, args, expected):
    result = runner.invoke(app, ["train-encoder", "--run-dir", str(tmp_path / "run"), "--minutes", "1", *args])
    assert result.exit_code == 2 and expected in " ".join(result.output.replace("│", " ").split()), result.output
    assert not (tmp_path / "run").exists()  # nothing started


def test_train_encoder_names_an_images_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    for images, expected in ((tmp_path / "empty", "no image files"), (tmp_path / "missing", "no such folder")):
        result = runner.invoke(app, ["train-encoder", "--generator", "faces64", "--images", str(images),
                                     "--run-dir", str(tmp_path / "run"), "--minutes", "1"])
        assert result.exit_code == 2 and expected in result.output and str(images) in result.output, result.output


def test_an_encoder_start_uses_the_encoder_preset_and_the_store_records_the_bound_encoder(trained, tmp_path):
    generator, encoder, folder = trained
    config = InvertConfig(encoder=encoder, inversion={"num_steps": 2, "loss": "mse"}, thumbnail_size=8)
    settings = check_settings(generator, config)
    assert settings.spec.mode == "hybrid"  # auto: hybrid when an encoder is given
    preset = inversion_preset("hybrid", encoder, generator=generator)
    assert preset == dataclasses.replace(ENCODER_START_CONFIG, optimize_noise=False)
    assert settings.spec.config == dataclasses.replace(preset, num_steps=2, loss="mse")
    store = prepare_store(folder / "photos", tmp_path / "s.zarr", generator, config, chunk_items=8)
    assert run_shard(store.url, 0, generator=generator).done == 6
    recorded = LatentStore.open(store.url).attributes.inversion["encoder"]
    assert recorded == {"source": encoder, "sha256": settings.encoder_sha256,
                        "generator_identity": models.identity(generator)["identity"]}
    # the hybrid store keeps what the encoder alone made of each image, beside the optimised codes
    metrics = LatentStore.open(store.url).metrics(["encoder_psnr", "psnr"])
    assert np.isfinite(metrics["encoder_psnr"]).all()


def test_invert_refuses_an_encoder_of_another_generator_with_exit_2_before_any_server(trained, tmp_path):
    _, encoder, folder = trained
    other = save_tiny_generator(tmp_path, seed=9)
    result = runner.invoke(app, ["invert", str(folder / "photos"), "--store", str(tmp_path / "s.zarr"),
                                 "--generator", other, "--encoder", encoder, "--loss", "mse"])
    assert result.exit_code == 2 and "was trained for generator" in result.output, result.output
    assert not (tmp_path / "s.zarr").exists()  # refused before anything was written


def test_hybrid_preset_is_the_measured_encoder_start():
    preset = inversion_preset("hybrid", "faces64")
    assert (preset.space, preset.num_steps, preset.initial_learning_rate, preset.betas, preset.initial_noise_factor,
            preset.lr_rampup_length, preset.loss, preset.optimize_noise) == ("w+", 100, 0.1, (0.7, 0.7), 0.0, 0.0,
                                                                             "clf-perceptual", False)
    assert inversion_preset("optimize", None).initial_learning_rate == 0.1  # the projector's, from w_avg
    assert inversion_preset("optimize", None).betas == (0.9, 0.999)
    assert inversion_preset("hybrid", "mine.safetensors", generator="faces64").loss == "clf-perceptual"


def test_a_store_keeps_the_preset_it_was_made_with(tmp_path, monkeypatch):
    """A store compares its inversion record on every run. When a later version moves a preset, a rerun that sets
    nothing (a scheduled deployment) goes on with the store's own preset; a field set to another value is refused."""
    write_good_images(tmp_path / "photos", 2)
    old = dataclasses.replace(inversion_preset("hybrid", "faces64"), initial_learning_rate=0.03, betas=(0.9, 0.999))
    with monkeypatch.context() as m:  # the store is made by a version whose preset was `old`
        m.setattr("runtime.presets.inversion_preset", lambda *a, **k: old)
        prepare_store(tmp_path / "photos", tmp_path / "s.zarr", "faces64", InvertConfig())
    record = LatentStore.open(str(tmp_path / "s.zarr")).attributes.inversion
    assert record["inversion"]["initial_learning_rate"] == 0.03 and "betas" not in record["inversion"]

    url, manifest = str(tmp_path / "s.zarr"), scan_images(str(tmp_path / "photos")).manifest
    settings = check_settings("faces64", InvertConfig(), store=url)
    assert settings.spec.config == old  # not today's preset
    open_store(url, manifest, settings, chunk_items=None)  # accepted: the record matches
    fresh = check_settings("faces64", InvertConfig(), store=str(tmp_path / "new.zarr"))
    assert fresh.spec.config == inversion_preset("hybrid", "faces64")  # a new store gets today's
    asked = check_settings("faces64", InvertConfig(inversion={"num_steps": 7}), store=url)
    with pytest.raises(StoreMismatchError, match="num_steps"):
        open_store(url, manifest, asked, chunk_items=None)


def test_a_refined_store_keeps_the_refinement_it_was_made_with(tmp_path, monkeypatch):
    """`--refine pivotal` likewise: a rerun that sets no refinement field goes on with the store's recorded one, not
    this version's PTI defaults; a field set to another value is still refused."""
    from ganinv.inversion.pivotal import PivotalConfig
    from runtime.presets import refine_preset

    write_good_images(tmp_path / "photos", 2)
    today = refine_preset(inversion_preset("hybrid", "faces64"), {})
    old = dataclasses.replace(today, num_steps=today.num_steps + 7, rank=today.rank + 1)
    with monkeypatch.context() as m:  # the store is made by a version whose refinement preset was `old`
        m.setattr("runtime.presets.refine_preset", lambda *a, **k: old)
        prepare_store(tmp_path / "photos", tmp_path / "s.zarr", "faces64", InvertConfig(refine={}))
    url, manifest = str(tmp_path / "s.zarr"), scan_images(str(tmp_path / "photos")).manifest
    settings = check_settings("faces64", InvertConfig(refine={}), store=url)
    assert settings.spec.refine == old != today  # not today's
    open_store(url, manifest, settings, chunk_items=None)  # accepted: the record matches
    assert check_settings("faces64", InvertConfig(refine={}), store=str(tmp_path / "new.zarr")).spec.refine == today
    asked = check_settings("faces64", InvertConfig(refine={"num_steps": 3}), store=url)
    assert isinstance(asked.spec.refine, PivotalConfig) and asked.spec.refine.rank == old.rank
    with pytest.raises(StoreMismatchError, match="num_steps"):
        open_store(url, manifest, asked, chunk_items=None)
