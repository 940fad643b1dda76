"""The GPU-chunk tools around training: the separability early warning and train_chunk's export/install."""

import dataclasses
import re

import numpy as np
import pytest

from benchmarks.separability import separability
from benchmarks.common import export_run, install_run
from benchmarks.train_chunk import RUN_FILES, chunk_config
from ganinv.training.train_classifier import TrainClassifierConfig
from ganinv.training.train_gan import GANTrainConfig, GANTrainer, parse_settings

from _gan_helpers import TINY, blob_images


def test_separability_tells_a_linear_attribute_from_an_unencoded_one():
    rng = np.random.default_rng(0)
    w = rng.standard_normal([4000, 16])
    scores = {"linear": 1 / (1 + np.exp(-4 * w[:, 3])),  # a hyperplane in W
              "unencoded": rng.uniform(size=4000),  # nothing of W decides it
              "level": w[:, 5] + 0.1 * rng.standard_normal(4000)}
    rows = {r["attribute"]: r for r in separability(w, scores, {"linear": "binary", "unencoded": "binary",
                                                                "level": "continuous"})}
    assert rows["linear"]["linear_accuracy"] > 0.97 and rows["linear"]["extremes_accuracy"] > 0.97
    assert rows["unencoded"]["linear_accuracy"] < rows["unencoded"]["majority"] + 0.05
    assert rows["level"]["linear_accuracy"] > 0.95  # R^2


def test_new_run_settings_are_cast_to_the_field_types(tmp_path):
    def new_run_config(settings):
        return chunk_config(tmp_path / "new", parse_settings(settings))
    config = new_run_config(["mapping_layers=2", "g_lr=0.002", "conv_clamp=None", "data=procedural:10:1"])
    assert config.mapping_layers == 2 and config.g_lr == 0.002 and config.conv_clamp is None
    assert config.data == "procedural:10:1" and config.batch_size == GANTrainConfig().batch_size
    config = new_run_config(["mixed_precision=False", "betas=(0.0, 0.9)"])  # bool("False") would be True
    assert config.mixed_precision is False and config.betas == (0.0, 0.9)
    config = new_run_config(["classifier=builtin", "correlated_pairs=(('eyeglasses', 'blond_hair'),)"])
    assert config.classifier == "builtin" and config.correlated_pairs == (("eyeglasses", "blond_hair"),)
    with pytest.raises(SystemExit, match="batch size given twice: 8 and batch_size=16"):
        chunk_config(tmp_path / "new", parse_settings(["batch_size=16"]), batch_size=8)
    assert chunk_config(tmp_path / "new", parse_settings(["batch_size=8"]), batch_size=8).batch_size == 8
    for bad in ("not_a_field=1", "mapping_layers"):
        with pytest.raises(ValueError, match=f"{bad}.*KEY=VALUE.*mapping_layers"):
            new_run_config([bad])


def test_a_value_that_is_no_literal_is_refused_for_a_field_that_takes_no_string():
    """A misspelt number would otherwise reach the trainer as a string and fail after the set-up (minutes of a
    device call); a field that takes strings still reads one."""
    for bad, field_type in (("g_lr=0.0O2", "float"), ("batch_size=64k", "int"), ("conv_clamp=none", "float | None"),
                            ("betas=(0.0, O.99)", "tuple[float, float]")):
        with pytest.raises(ValueError, match=rf"{re.escape(bad)}.*takes {re.escape(field_type)}.*no Python literal"):
            parse_settings([bad])
    assert parse_settings(["classifier=runs/clf.safetensors", "data=procedural:8:0:v2"]) == dict(
        classifier="runs/clf.safetensors", data="procedural:8:0:v2")


def test_classifier_overrides_are_read_as_literals_of_its_config():
    """gpu/classifier.py's KEY=VALUE: floats and booleans too (int() refused lr=1e-3 and augment=False)."""
    assert parse_settings(["lr=1e-3", "augment=False", "n_train=128", "dataset_dir=faces"], TrainClassifierConfig) \
        == dict(lr=1e-3, augment=False, n_train=128, dataset_dir="faces")
    with pytest.raises(ValueError, match="KEY=VALUE with KEY a TrainClassifierConfig field.*n_train"):
        parse_settings(["n_trian=128"], TrainClassifierConfig)


def test_a_list_is_read_as_the_tuple_a_resumed_run_stored(tmp_path):
    trainer = GANTrainer(TINY, tmp_path, device="cpu", images=blob_images())
    trainer.save()
    changes = parse_settings([f"betas={list(TINY.betas)}", "correlated_pairs=[['eyeglasses', 'blond_hair']]"])
    assert changes == dict(betas=TINY.betas, correlated_pairs=(("eyeglasses", "blond_hair"),))
    assert chunk_config(tmp_path, changes).betas == TINY.betas  # the same betas: not refused as a change


def test_a_resumed_chunk_takes_the_regulariser_settings_and_refuses_others(tmp_path):
    trainer = GANTrainer(TINY, tmp_path, device="cpu", images=blob_images())
    trainer.save()
    config = chunk_config(tmp_path, parse_settings(["classifier=builtin", "edit_weight=0.5", "z_dim=16"]),
                          batch_size=4)
    assert config == dataclasses.replace(TINY, classifier="builtin", edit_weight=0.5, batch_size=4)  # z_dim: as stored
    with pytest.raises(SystemExit, match=r"z_dim differ.*may change only .*edit_weight"):
        chunk_config(tmp_path, parse_settings(["edit_weight=0.5", "z_dim=32"]))


def test_an_exported_chunk_installs_into_a_run_that_resumes_where_it_stopped(tmp_path):
    images = blob_images()
    trainer = GANTrainer(TINY, tmp_path / "device_run", device="cpu", images=images)
    for _ in range(2):
        trainer.train_step()
    trainer.save()
    files = export_run(tmp_path / "device_run", tmp_path / "out", files=RUN_FILES)  # what $OUT brings back
    assert all(f.parent == tmp_path / "out" for f in files)
    trainer.train_step()  # the uninterrupted run goes on (before the resumed one: both draw from torch's global RNG)
    (tmp_path / "repo_run" / "checkpoint").mkdir(parents=True)
    (tmp_path / "repo_run" / "checkpoint" / "stale.safetensors").write_bytes(b"old")
    install_run(tmp_path / "out", tmp_path / "repo_run", files=RUN_FILES)
    assert not (tmp_path / "repo_run" / "checkpoint" / "stale.safetensors").exists()
    resumed = GANTrainer(TINY, tmp_path / "repo_run", device="cpu", images=images)
    assert resumed.step == 2
    resumed.train_step()
    for a, b in zip(trainer.G_ema.state_dict().values(), resumed.G_ema.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())
    with pytest.raises(FileNotFoundError, match="not an exported run"):
        install_run(tmp_path / "device_run", tmp_path / "other")


def test_a_run_is_measured_on_its_own_world_and_classifier(tmp_path):
    import dataclasses

    from ganinv.training.train_gan import RUN_CLASSIFIER, run_world

    images = blob_images()
    for data, version in (("procedural:8:0:v2", 2), ("procedural:8:0", None), ("faces.npy", None)):
        run = tmp_path / data.replace(":", "_")
        GANTrainer(dataclasses.replace(TINY, data=data), run, device="cpu", images=images).save()
        assert run_world(run) == (version, "builtin")
    (run / RUN_CLASSIFIER).write_bytes(b"weights")  # the run folder's own classifier wins over the built-in one
    assert run_world(run) == (None, str(run / RUN_CLASSIFIER))
