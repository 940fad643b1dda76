"""The GPU-chunk tools around training: the separability early warning and train_chunk's export/install."""

import dataclasses
import json
import sys
import tarfile
import re

import numpy as np
import pytest

from benchmarks.separability import separability
from benchmarks.common import export_run, install_run
from benchmarks import train_chunk
from benchmarks.train_chunk import RUN_FILES, chunk_config, install_chunk
from ganinv.training.checkpoint import parse_settings as parse_config_settings
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
    """gpu/classifier.py's KEY=VALUE (checkpoint.parse_settings, which train_gan's wraps with GANTrainConfig):
    floats and booleans too (int() refused lr=1e-3 and augment=False)."""
    settings = ["lr=1e-3", "augment=False", "n_train=128", "dataset_dir=faces"]
    assert parse_config_settings(settings, TrainClassifierConfig) == dict(lr=1e-3, augment=False, n_train=128,
                                                                          dataset_dir="faces")
    assert parse_settings(settings, TrainClassifierConfig) == parse_config_settings(settings, TrainClassifierConfig)
    with pytest.raises(ValueError, match="KEY=VALUE with KEY a TrainClassifierConfig field.*n_train"):
        parse_config_settings(["n_trian=128"], TrainClassifierConfig)


def test_a_list_is_read_as_the_tuple_a_resumed_run_stored(tmp_path):
    trainer = GANTrainer(TINY, tmp_path, device="cpu", images=blob_images())
    trainer.save()
    changes = parse_settings([f"betas={list(TINY.betas)}", "correlated_pairs=[['eyeglasses', 'blond_hair']]"])
    assert changes == dict(betas=TINY.betas, correlated_pairs=(("eyeglasses", "blond_hair"),))
    assert chunk_config(tmp_path, changes).betas == TINY.betas  # the same betas: not refused as a change


def test_train_chunk_refuses_a_length_given_twice_or_not_at_all_before_anything_is_made(tmp_path, monkeypatch):
    for lengths in ([], ["--minutes", "1", "--until", "2"]):
        monkeypatch.setattr(sys, "argv", ["train_chunk", "--run-dir", str(tmp_path / "run"), *lengths])
        with pytest.raises(SystemExit, match=r"give --minutes or --until \(one of them\)"):
            train_chunk.main()
        assert not (tmp_path / "run").exists()


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


def test_another_judge_of_a_run_must_record_the_runs_world(tmp_path):
    import dataclasses

    from ganinv.models.attributes import AttributeClassifier, ClassifierConfig, builtin_path, save_classifier
    from ganinv.training.train_gan import run_world

    run = tmp_path / "run"
    GANTrainer(dataclasses.replace(TINY, data="procedural:8:0:v2"), run, device="cpu", images=blob_images()).save()
    judge = tmp_path / "judge.safetensors"
    save_classifier(AttributeClassifier(ClassifierConfig.from_world()), judge, metrics={"world_version": 2})
    assert run_world(run, judge) == (2, str(judge))
    with pytest.raises(ValueError, match=r"trained on world 1; the run .* learnt world 2"):
        run_world(run, builtin_path())  # the shipped classifier records no world: world 1


def test_what_a_chunk_call_returns_installs_with_its_evaluations_and_a_history_row(tmp_path):
    device = GANTrainer(TINY, tmp_path / "device_run", device="cpu", images=blob_images())
    for _ in range(2):
        device.train_step()
    device.save()
    (tmp_path / "device_run" / "chunks.md").write_text("device's copy: must not replace the committed one\n")
    files_at = tmp_path / "files_at"  # as gpu/chunk.sh leaves $OUT: the run folder tarred and split, log, evaluations
    files_at.mkdir()
    with tarfile.open(tmp_path / "run.tar", "w") as archive:
        archive.add(tmp_path / "device_run", arcname=".")
    data = (tmp_path / "run.tar").read_bytes()
    (files_at / "run.tar.aa").write_bytes(data[:len(data) // 2])
    (files_at / "run.tar.ab").write_bytes(data[len(data) // 2:])
    (files_at / "chunk.log").write_text("NVIDIA H100 80GB HBM3, 81559 MiB\ntorch 2.11\n"
                                        "chunk: 0.0 kimg, 0.5 train min in all, 312 s wall\n")
    (files_at / "quality_0kimg.json").write_text(json.dumps({"fd_clf_generated_vs_dataset": 12.345}))
    repo_run = tmp_path / "repo" / "faces64v2"
    (repo_run / "checkpoint").mkdir(parents=True)
    (repo_run / "checkpoint" / "stale.safetensors").write_bytes(b"old")
    (repo_run / "classifier.safetensors").write_bytes(b"committed")
    (repo_run / "chunks.md").write_text("| # | date |\n|---|---|\n| 1 | 2026-12-06 | earlier |\n")
    row = install_chunk(files_at, repo_run, results=tmp_path / "results", settings="linearity_weight=1.0")
    assert row.startswith("| 2 | ") and "NVIDIA H100 80GB HBM3" in row and "| linearity_weight=1.0 | 5.2 |" in row
    assert "| 12.35 |" in row and (repo_run / "chunks.md").read_text().endswith(row + "\n")
    assert (repo_run / "classifier.safetensors").read_bytes() == b"committed"
    assert not (repo_run / "checkpoint" / "stale.safetensors").exists()
    assert json.loads((tmp_path / "results" / "faces64v2_0kimg_quality.json").read_text())["fd_clf_generated_vs_dataset"] == 12.345
    assert GANTrainer(TINY, repo_run, device="cpu", images=blob_images()).step == 2
    with pytest.raises(FileNotFoundError, match="no run.tar"):
        install_chunk(tmp_path / "results", repo_run)



def test_an_encoder_run_trained_beside_the_gan_installs_with_it(tmp_path):
    """gpu/chunk.sh's ENC: the encoder run's exported files come back tarred (enc.tar.*) beside run.tar.*; they go
    into the encoder run folder given, and are not silently left behind when none is given."""
    device = GANTrainer(TINY, tmp_path / "device_run", device="cpu", images=blob_images())
    device.train_step()
    device.save()
    encoder_export = tmp_path / "enc_export"  # what `encoder_any_generator train --out` leaves: flat files
    encoder_export.mkdir()
    (encoder_export / "checkpoint-checkpoint.json").write_text('{"shards": [], "state": {}}')
    (encoder_export / "checkpoint-tensors-000.safetensors").write_bytes(b"encoder weights")
    (encoder_export / "run.json").write_text('{"steps": 500}')
    files_at = tmp_path / "files_at"
    files_at.mkdir()
    for name, folder in (("run", tmp_path / "device_run"), ("enc", encoder_export)):
        with tarfile.open(tmp_path / f"{name}.tar", "w") as archive:
            archive.add(folder, arcname=".")
        (files_at / f"{name}.tar.aa").write_bytes((tmp_path / f"{name}.tar").read_bytes())
    repo_run = tmp_path / "repo" / "faces64v2"
    with pytest.raises(ValueError, match="pass --encoder-run"):
        install_chunk(files_at, repo_run, results=tmp_path / "results")
    assert not repo_run.exists()  # refused before anything was replaced
    install_chunk(files_at, repo_run, results=tmp_path / "results", encoder_run=tmp_path / "repo" / "enc")
    assert (tmp_path / "repo" / "enc" / "checkpoint" / "tensors-000.safetensors").read_bytes() == b"encoder weights"
    assert json.loads((tmp_path / "repo" / "enc" / "run.json").read_text()) == {"steps": 500}
    assert GANTrainer(TINY, repo_run, device="cpu", images=blob_images()).step == 1
    (files_at / "enc.tar.aa").unlink()
    with pytest.raises(FileNotFoundError, match="was the chunk run with ENC"):
        install_chunk(files_at, repo_run, results=tmp_path / "results", encoder_run=tmp_path / "repo" / "enc")
