"""`ganinv train-encoder` (and the GAN run folders it reads) on a tiny GAN run."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli.app import app
from ganinv.models.attributes import load_classifier
from ganinv.models.encoder import load_encoder
from ganinv.training.checkpoint import load_checkpoint
from ganinv.training.train_encoder import EncoderTrainConfig, RunConfigMismatch
from ganinv.training.train_gan import GANTrainer, generator_from_checkpoint
from test_train_gan import TINY, blob_images

runner = CliRunner()
TINY32 = dataclasses.replace(TINY, resolution=32)


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("gan") / "run"
    GANTrainer(TINY32, run, device="cpu", images=blob_images(size=32)).save()
    return run


def test_train_encoder_command_trains_checkpoints_and_exports(gan_run, tmp_path):
    data = tmp_path / "real.npy"
    np.save(data, np.random.default_rng(0).integers(0, 255, [8, 32, 32, 3], dtype=np.uint8))
    # The command line of the model card and BENCHMARKS.md, with --data (small real set) and --out.
    result = runner.invoke(app, ["train-encoder", "--gan-run", str(gan_run), "--run-dir", str(tmp_path / "enc"),
                                 "--minutes", "10", "--steps", "2", "--data", str(data), "--perceptual", "none",
                                 "--out", str(tmp_path / "e.safetensors")])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "enc" / "checkpoint")["step"] == 2  # stopped by --steps, not the clock
    E = load_encoder(tmp_path / "e.safetensors")
    G = generator_from_checkpoint(gan_run)
    assert E(torch.zeros(1, 3, 32, 32)).shape == (1, G.num_ws, G.w_dim)


def test_train_encoder_command_names_a_missing_gan_run_and_a_bad_perceptual_term(tmp_path):
    missing = runner.invoke(app, ["train-encoder", "--gan-run", str(tmp_path / "nope"), "--run-dir",
                                  str(tmp_path / "enc"), "--minutes", "1", "--perceptual", "none"])
    assert missing.exit_code == 2 and "nope" in missing.output
    bad = runner.invoke(app, ["train-encoder", "--gan-run", str(tmp_path), "--run-dir", str(tmp_path / "enc"),
                              "--minutes", "1", "--perceptual", "lpips"])
    assert bad.exit_code == 2 and "classifier" in bad.output


def test_a_resumed_encoder_run_keeps_its_schedule_and_refuses_another_length(gan_run, tmp_path):
    data = tmp_path / "real.npy"
    np.save(data, np.random.default_rng(0).integers(0, 255, [8, 32, 32, 3], dtype=np.uint8))
    first = ["train-encoder", "--gan-run", str(gan_run), "--run-dir", str(tmp_path / "enc"), "--minutes", "10"]
    assert runner.invoke(app, first + ["--steps", "2", "--data", str(data), "--perceptual", "none"]).exit_code == 0
    clash = runner.invoke(app, first + ["--steps", "5"])
    assert clash.exit_code == 2 and "total_steps=2 (asked 5)" in clash.stderr
    assert load_checkpoint(tmp_path / "enc" / "checkpoint")["step"] == 2  # nothing trained, nothing overwritten
    resumed = runner.invoke(app, first)  # no options: the run's own steps, data and perceptual term
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(tmp_path / "enc" / "checkpoint")["config"]["total_steps"] == 2


def test_train_encoder_init_from_warm_starts_a_new_run_and_is_fixed_for_its_resumption(gan_run, tmp_path):
    base = ["train-encoder", "--gan-run", str(gan_run), "--minutes", "10", "--perceptual", "none"]
    assert runner.invoke(app, base + ["--run-dir", str(tmp_path / "a"), "--steps", "2"]).exit_code == 0
    assert runner.invoke(app, base + ["--run-dir", str(tmp_path / "b"), "--steps", "2"]).exit_code == 0
    warm = base + ["--run-dir", str(tmp_path / "warm"), "--steps", "4", "--init-from"]
    result = runner.invoke(app, warm + [str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "warm start from" in result.output
    config = load_checkpoint(tmp_path / "warm" / "checkpoint")["config"]
    assert config["init_from"] == str(tmp_path / "a") and len(config["init_from_sha256"]) == 64
    clash = runner.invoke(app, warm + [str(tmp_path / "b")])
    assert clash.exit_code == 2 and "init_from=" in clash.stderr and "start a new --run-dir" in clash.stderr
    missing = runner.invoke(app, base + ["--run-dir", str(tmp_path / "new"), "--init-from", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "nope" in missing.output


def test_train_gan_set_is_refused_before_a_resumed_run_is_touched(gan_run):
    before = {p.name: p.read_bytes() for p in (gan_run / "checkpoint").iterdir()}
    result = runner.invoke(app, ["train-gan", "--run-dir", str(gan_run), "--minutes", "1", "--set", "z_dim=32"])
    assert result.exit_code == 2 and "z_dim differ" in result.output and "edit_weight" in result.output
    result = runner.invoke(app, ["train-gan", "--run-dir", str(gan_run), "--minutes", "1", "--set", "edit_weigth=1"])
    assert result.exit_code == 2 and "edit_weigth" in result.output and "GANTrainConfig field" in result.output
    assert {p.name: p.read_bytes() for p in (gan_run / "checkpoint").iterdir()} == before
    result = runner.invoke(app, ["train-gan", "--run-dir", str(gan_run.parent / "new"), "--minutes", "1",
                                 "--data", "procedural:100:0", "--set", "data=procedural:100:0:v2"])
    assert result.exit_code == 2 and "disagree" in result.output and not (gan_run.parent / "new").exists()


def test_train_gan_set_configures_a_new_run(tmp_path):
    data = tmp_path / "real.npy"
    np.save(data, blob_images(size=16))
    tiny = {f.name: getattr(TINY, f.name) for f in dataclasses.fields(TINY) if f.name != "data"}
    settings = [arg for key, value in tiny.items() for arg in ("--set", f"{key}={value!r}")]
    result = runner.invoke(app, ["train-gan", "--run-dir", str(tmp_path / "run"), "--minutes", "0.01",
                                 "--data", str(data), *settings, "--set", "edit_sigmas=(0.5, 2.0)"])
    assert result.exit_code == 0, result.output
    stored = load_checkpoint(tmp_path / "run" / "checkpoint")["config"]
    assert {key: stored[key] for key in ("z_dim", "resolution", "mixed_precision")} == dict(
        z_dim=TINY.z_dim, resolution=16, mixed_precision=False)
    assert tuple(stored["edit_sigmas"]) == (0.5, 2.0)


def classifier_of(loss: torch.nn.Module) -> torch.nn.Module:
    from ganinv.losses.classifier_perceptual import ClassifierPerceptualLoss
    return next(m for m in loss.modules() if isinstance(m, ClassifierPerceptualLoss)).classifier


def test_an_encoder_for_a_run_with_its_own_classifier_measures_with_that_classifier(tmp_path):
    from ganinv.models.attributes import AttributeClassifier, ClassifierConfig, save_classifier
    from ganinv.training.train_encoder import train_encoder
    from ganinv.training.train_gan import RUN_CLASSIFIER

    run = tmp_path / "gan"
    GANTrainer(TINY32, run, device="cpu", images=blob_images(size=32)).save()
    torch.manual_seed(1)
    own = AttributeClassifier(ClassifierConfig.from_world())  # an untrained one: unlike the built-in in every weight
    save_classifier(own, run / RUN_CLASSIFIER, half=False)
    small = EncoderTrainConfig(checkpoint_every=2)
    trainer = train_encoder(tmp_path / "enc", gan_run=run, perceptual="clf-perceptual", steps=4, batch_size=2,
                            device="cpu", stop_at=2, config=small)
    used = classifier_of(trainer.perceptual).state_dict()
    assert all(torch.equal(used[k], v) for k, v in own.state_dict().items())
    assert trainer.config.perceptual_classifier == hashlib.sha256((run / RUN_CLASSIFIER).read_bytes()).hexdigest()
    torch.manual_seed(2)  # the run folder's classifier is replaced mid-run: the encoder run refuses to go on
    save_classifier(AttributeClassifier(ClassifierConfig.from_world()), run / RUN_CLASSIFIER, half=False)
    with pytest.raises(RunConfigMismatch, match="clf-perceptual with the classifier"):
        train_encoder(tmp_path / "enc", gan_run=run, device="cpu", stop_at=4)
    shutil.rmtree(run / "checkpoint")  # a run without its own classifier: the built-in one, as before
    (run / RUN_CLASSIFIER).unlink()
    GANTrainer(TINY32, run, device="cpu", images=blob_images(size=32)).save()
    trainer = train_encoder(tmp_path / "enc2", gan_run=run, perceptual="clf-perceptual", steps=4, batch_size=2,
                            device="cpu", stop_at=4)
    builtin, used = load_classifier("builtin").state_dict(), classifier_of(trainer.perceptual).state_dict()
    assert all(torch.equal(used[k], v) for k, v in builtin.items())
