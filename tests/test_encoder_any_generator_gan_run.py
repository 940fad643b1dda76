"""benchmarks/encoder_any_generator for a GAN run of ours (`--gan-run`): chunks train for the run's G_ema with the
run's classifier as the clf-perceptual net, a new run warm-starts from the encoder of the run's earlier checkpoint
(`--init-from`), and the evaluation measures on the run's world (its held-out faces, its classifier)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch

from _gan_helpers import TINY, blob_images
from benchmarks import encoder_any_generator
from benchmarks.common import heldout_faces
from ganinv.generators import generator_identity
from ganinv.metrics import reconstruction_metrics
from ganinv.models.attributes import load_classifier
from ganinv.models.encoder import EncoderGeneratorMismatch, load_encoder
from ganinv.training.checkpoint import load_checkpoint
from ganinv.training.train_classifier import TrainClassifierConfig, train_classifier
from ganinv.training.train_encoder import encoder_from_run
from ganinv.training.train_gan import RUN_CLASSIFIER, GANTrainer, generator_from_checkpoint

CHUNK = ["--steps", "2", "--batch-size", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def world2_run(tmp_path_factory):
    """(a tiny 16 px GAN run on world 2 with its own tiny world-2 classifier, its trainer to move it on)."""
    run = tmp_path_factory.mktemp("gan") / "faces_v2"
    trainer = GANTrainer(dataclasses.replace(TINY, data="procedural:8:0:v2"), run, device="cpu",
                         images=blob_images())
    trainer.train_step()
    trainer.save()
    train_classifier(TrainClassifierConfig(world_version=2, n_train=16, n_eval=8, steps=2, batch_size=4,
                                           eval_every=2, augment=False), run / RUN_CLASSIFIER)
    return run, trainer


def test_a_chunk_trains_for_the_runs_g_ema_with_its_classifier_and_travels_back(world2_run, tmp_path):
    run, _ = world2_run
    summary = encoder_any_generator.main(["train", "--run-dir", str(tmp_path / "enc"), "--gan-run", str(run),
                                          *CHUNK, "--out", str(tmp_path / "out")])
    assert summary["step"] == 2 and summary["generator"] == f"gan-run:{run}"
    assert summary["perceptual"] == "clf-perceptual"  # procedural data: the embedded world's perceptual term...
    config = load_checkpoint(tmp_path / "enc" / "checkpoint")["config"]
    assert config["perceptual_classifier"] == hashlib.sha256((run / RUN_CLASSIFIER).read_bytes()).hexdigest()
    encoder_any_generator.main(["install", "--source", str(tmp_path / "out"), "--run-dir", str(tmp_path / "back")])
    encoder_any_generator.main(["export", "--run-dir", str(tmp_path / "back"), "--to", str(tmp_path / "e.safetensors")])
    assert load_encoder(tmp_path / "e.safetensors", generator=generator_from_checkpoint(run)).num_ws == 6
    with pytest.raises(SystemExit) as refused:  # one generator: a source or a run
        encoder_any_generator.main(["train", "--run-dir", str(tmp_path / "x"), "--generator", "faces64",
                                    "--gan-run", str(run)])
    assert refused.value.code == 2


def test_when_the_gan_moves_on_a_new_encoder_run_warm_starts_from_the_old_one(world2_run, tmp_path):
    run, trainer = world2_run
    old = ["train", "--run-dir", str(tmp_path / "old"), "--gan-run", str(run), *CHUNK]
    encoder_any_generator.main(old)
    before = generator_identity(generator_from_checkpoint(run))
    trainer.train_step()  # the GAN run goes on: its G_ema is another generator
    trainer.save()
    assert generator_identity(generator_from_checkpoint(run)) != before
    with pytest.raises(EncoderGeneratorMismatch):  # the old run belongs to the old G_ema
        encoder_any_generator.main(old)
    summary = encoder_any_generator.main(["train", "--run-dir", str(tmp_path / "new"), "--gan-run", str(run),
                                          "--init-from", str(tmp_path / "old"), *CHUNK])
    assert summary["step"] == 2 and summary["init_from"] == str(tmp_path / "old")
    state = load_checkpoint(tmp_path / "new" / "checkpoint")
    assert state["config"]["init_from_generator"] == before != state["generator_identity"]


def test_evaluate_measures_a_gan_run_on_its_own_world(world2_run, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no LPIPS trunk: the perceptual column is clf-perceptual
    run, _ = world2_run
    encoder_any_generator.main(["train", "--run-dir", str(tmp_path / "enc"), "--gan-run", str(run), *CHUNK])
    payload = encoder_any_generator.main([
        "evaluate", "--gan-run", str(run), "--encoder", f"e={tmp_path / 'enc'}", "--num-images", "3",
        "--batch-size", "3", "--wplus-steps", "1", "--hybrid-steps", "1", "--refine-steps", "1", "--device", "cpu",
        "--out", str(tmp_path / "eval.json")])
    assert (payload["world_version"], payload["classifier"]) == (2, str(run / RUN_CLASSIFIER))
    assert payload["generator"] == f"gan-run:{run}" and payload["perceptual"] == "clf-perceptual"
    G, E = generator_from_checkpoint(run), encoder_from_run(tmp_path / "enc")

    def encoder_psnr(version: int) -> float:
        faces = heldout_faces(3, version=version, size=16)
        with torch.no_grad():
            return reconstruction_metrics(G.synthesis(E(faces), noise_mode="const"), faces)["psnr"].double().mean()

    row = next(r for r in payload["rows"] if r["method"] == "encoder")
    assert row["psnr"] == pytest.approx(float(encoder_psnr(2)), abs=1e-4)  # the run's world's faces...
    assert not np.isclose(float(encoder_psnr(1)), row["psnr"], atol=1e-2)  # ...not the shipped world's
    assert json.loads((tmp_path / "eval.json").read_text())["world_version"] == 2


def test_the_optimisation_loss_measures_with_the_worlds_own_classifier(world2_run):
    run, _ = world2_run
    loss = encoder_any_generator.world_loss("clf-perceptual+0.1*mse", str(run / RUN_CLASSIFIER), torch.device("cpu"))
    assert [t.name for t in loss.terms] == ["clf-perceptual", "mse"] and loss.weights == [1.0, 0.1]
    own, used = load_classifier(run / RUN_CLASSIFIER).state_dict(), loss.terms[0].classifier.state_dict()
    assert all(torch.equal(used[k], v) for k, v in own.items())
    assert encoder_any_generator.world_loss("clf-perceptual", "builtin", torch.device("cpu")) is None
    assert encoder_any_generator.world_loss("mse", str(run / RUN_CLASSIFIER), torch.device("cpu")) is None


def test_edit_evaluation_inverts_a_gan_runs_held_out_faces_with_its_encoder(world2_run, tmp_path):
    """Issue 15's goal 3 on a training run: its world's held-out faces, inverted by an encoder run of its G_ema with
    the hybrid preset and the run's classifier in the loss, are edited beside the sampled items; the codes are
    `hybrid`'s with that preset, loss and encoder, each face seeded by its index."""
    from benchmarks import edit_evaluation
    from ganinv.inversion.hybrid import ENCODER_START_CONFIG, hybrid
    from ganinv.losses import build_loss

    run, _ = world2_run
    encoder_any_generator.main(["train", "--run-dir", str(tmp_path / "enc"), "--gan-run", str(run), *CHUNK])
    common = ["--faces64", "--gan-run", str(run), "--num-fit", "200", "--num-eval", "4", "--psi", "1.0",
              "--ratios", "0.1", "--strengths", "-1", "1", "--num-inverted", "3", "--steps", "2",
              "--start", "encoder-start", "--loss", "clf-perceptual+mse", "--device", "cpu"]
    raw = edit_evaluation.main([*common, "--encoder", str(tmp_path / "enc"), "--batch-size", "2",
                                "--out", str(tmp_path / "edit.json")])
    assert "psi1.0_r0.1_inverted" in raw["rows"] and "psi1.0_r0.1_sampled" in raw["rows"]
    G, E = generator_from_checkpoint(run), encoder_from_run(tmp_path / "enc")
    faces = heldout_faces(3, version=2, size=G.img_resolution)
    config = dataclasses.replace(ENCODER_START_CONFIG, num_steps=2, loss="clf-perceptual+mse", optimize_noise=False)
    loss_fn = build_loss("clf-perceptual+mse", classifier=str(run / RUN_CLASSIFIER))
    alone = torch.cat([hybrid(G, E, faces[i:i + 2], config, seed=[i, i + 1][:len(faces[i:i + 2])],
                              loss_fn=loss_fn).ws for i in (0, 2)])  # the benchmark's batches of 2
    world = edit_evaluation.faces64_world("cpu", argparse.Namespace(
        gan_run=run, encoder=str(tmp_path / "enc"), num_inverted=3, steps=2, start="encoder-start",
        loss="clf-perceptual+mse", batch_size=2, classifier=None))
    torch.testing.assert_close(world.inverted, alone, rtol=0, atol=1e-5)
    without = edit_evaluation.main([*common, "--out", str(tmp_path / "plain.json")])  # no encoder: sampled only
    assert not any(key.endswith("_inverted") for key in without["rows"])


def test_follow_gan_warm_starts_a_new_run_only_when_the_gan_moved_on(world2_run, tmp_path):
    """gpu/chunk.sh's ENC trains `--follow-gan` every chunk: the run of this G_ema resumes; once the GAN moved on,
    it is moved to RUN_prev and a new run warm-starts from it."""
    run, trainer = world2_run
    follow = ["train", "--run-dir", str(tmp_path / "enc"), "--gan-run", str(run), "--follow-gan", *CHUNK]
    assert encoder_any_generator.main(follow)["init_from"] is None  # a new run
    assert encoder_any_generator.follow_gan(tmp_path / "enc", run) is None  # the same G_ema: it resumes
    assert not (tmp_path / "enc_prev").exists()
    before = load_checkpoint(tmp_path / "enc" / "checkpoint")["generator_identity"]
    trainer.train_step()
    trainer.save()
    summary = encoder_any_generator.main(follow)
    assert summary["init_from"] == str(tmp_path / "enc_prev") and summary["step"] == 2
    state = load_checkpoint(tmp_path / "enc" / "checkpoint")
    assert state["config"]["init_from_generator"] == before != state["generator_identity"]
    assert load_checkpoint(tmp_path / "enc_prev" / "checkpoint")["generator_identity"] == before
    # the earlier run's log goes with the new run (the folder committed chunk after chunk keeps its whole history)
    first_log = (tmp_path / "enc_prev" / "log.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in (tmp_path / "enc" / "earlier_runs.jsonl").read_text().splitlines()]
    assert first_log and history == [dict(json.loads(line), generator_identity=before) for line in first_log]
    second = state["generator_identity"]
    trainer.train_step()
    trainer.save()
    encoder_any_generator.main([*follow, "--out", str(tmp_path / "out")])  # the GAN moved on again
    history = [json.loads(line) for line in (tmp_path / "out" / "earlier_runs.jsonl").read_text().splitlines()]
    second_log = (tmp_path / "enc_prev" / "log.jsonl").read_text().splitlines()  # enc_prev is the second run now
    assert [entry["generator_identity"] for entry in history] == [before] * len(first_log) + [second] * len(second_log)
    encoder_any_generator.main(["install", "--source", str(tmp_path / "out"), "--run-dir", str(tmp_path / "back")])
    exported = (tmp_path / "out" / "earlier_runs.jsonl").read_text()
    assert (tmp_path / "back" / "earlier_runs.jsonl").read_text() == exported  # and it travels back
