"""The embedded-world GAN trainer: losses move, checkpoints are capped and resuming continues the same run."""

import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ganinv.training.checkpoint import load_checkpoint, load_checkpoint_entry, save_checkpoint
from ganinv.training.discriminator import Discriminator
from ganinv.training.train_gan import (RESUMABLE_FIELDS, GANTrainConfig, GANTrainer, checkpoint_config, lazy_ratio,
                                       generator_from_checkpoint, refuse_changes, run_config, train_gan)

from _gan_helpers import REGULARISED, TINY, RegionClassifier, blob_images

def test_discriminator_scores_each_image():
    D = Discriminator(img_resolution=16, channel_base=128, channel_max=16)
    x = torch.randn(8, 3, 16, 16)
    assert D(x).shape == (8, 1)
    # Minibatch std couples images only within their group (of 4: here samples 0, 2, 4, 6 and 1, 3, 5, 7).
    y = x.clone()
    y[7] += 1
    assert torch.allclose(D(x)[0::2], D(y)[0::2])
    assert not torch.allclose(D(x)[1::2], D(y)[1::2])


def test_training_steps_run_every_phase(tmp_path):
    trainer = GANTrainer(TINY, tmp_path, device="cpu", images=blob_images())
    before = [p.clone() for p in trainer.G_ema.parameters()]
    logs = [trainer.train_step() for _ in range(4)]
    assert {"loss_G", "loss_D", "pl_penalty", "r1_penalty"} <= set(logs[0])
    assert all(torch.isfinite(v).all() for entry in logs for v in entry.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.G_ema.parameters()))


@pytest.mark.parametrize("regulariser", [{}, REGULARISED], ids=["plain", "linear-attributes"])
def test_resume_continues_the_same_trajectory(tmp_path, regulariser):
    images = blob_images()
    config = dataclasses.replace(TINY, **regulariser)
    a = GANTrainer(config, tmp_path / "a", device="cpu", images=images, classifier=RegionClassifier())
    for _ in range(3):
        a.train_step()
    a.save()
    for _ in range(3):
        a.train_step()
    b = GANTrainer(config, tmp_path / "a", device="cpu", images=images, classifier=RegionClassifier())  # from step 3
    assert b.step == 3
    for _ in range(3):
        b.train_step()
    for pa, pb in zip(a.G_ema.state_dict().values(), b.G_ema.state_dict().values()):
        assert torch.equal(pa, pb)
    if regulariser:  # the probe, its Adam and its thresholds too
        probes = zip(a.attributes.probe.parameters(), b.attributes.probe.parameters())
        assert all(torch.equal(pa, pb) for pa, pb in probes)
        assert torch.equal(a.attributes.thresholds, b.attributes.thresholds)
        assert a.attributes.opt.state_dict()["state"][0]["step"] == b.attributes.opt.state_dict()["state"][0]["step"]


def test_checkpoint_shards_respect_size_cap(tmp_path):
    state = {"net": {f"w{i}": torch.randn(1000) for i in range(10)}, "step": 7, "pairs": [(1, 2)]}
    save_checkpoint(tmp_path / "ck", state, max_shard_bytes=10_000)
    files = sorted((tmp_path / "ck").glob("*.safetensors"))
    assert len(files) == 5 and all(f.stat().st_size < 11_000 for f in files)
    back = load_checkpoint(tmp_path / "ck")
    assert back["step"] == 7 and all(torch.equal(back["net"][k], v) for k, v in state["net"].items())
    assert load_checkpoint_entry(tmp_path / "ck", "pairs") == [[1, 2]]  # from checkpoint.json alone
    with pytest.raises(KeyError, match="config"):
        load_checkpoint_entry(tmp_path / "ck", "config")


def test_config_roundtrips_through_checkpoint_and_config_json_mirrors_it(tmp_path):
    trainer = GANTrainer(TINY, tmp_path, device="cpu", images=blob_images())
    trainer.save()
    stored = load_checkpoint(tmp_path / "checkpoint")["config"]
    assert GANTrainConfig.from_dict(stored) == TINY
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads(json.dumps(stored))


def test_resumed_run_takes_its_config_from_the_checkpoint_not_config_json(tmp_path):
    a = GANTrainer(TINY, tmp_path, device="cpu", images=blob_images())
    a.save()
    # A run folder of the old format: config.json written at creation and never updated (here: stale and wrong).
    (tmp_path / "config.json").write_text(json.dumps(dict(dataclasses.asdict(TINY), batch_size=99, z_dim=3)))
    other = dataclasses.replace(TINY, z_dim=32)
    assert run_config(tmp_path, other) == TINY  # the checkpoint wins over both the argument and config.json
    assert run_config(tmp_path, other, batch_size=4) == dataclasses.replace(TINY, batch_size=4)
    assert run_config(tmp_path / "new", other) == other
    b = GANTrainer(run_config(tmp_path, batch_size=4), tmp_path, device="cpu", images=blob_images())
    assert b.config.batch_size == 4 and b.step == a.step
    with pytest.raises(ValueError, match="z_dim"):
        GANTrainer(other, tmp_path, device="cpu", images=blob_images())


def test_image_folder_training_data_goes_through_the_inversion_decoder(tmp_path):
    from PIL import Image

    from ganinv.training.train_gan import load_training_images
    wide = np.zeros([20, 40, 3], np.uint8)  # red | green | blue thirds: the centre square is all green
    wide[:, :10, 0], wide[:, 10:30, 1], wide[:, 30:, 2] = 255, 255, 255
    Image.fromarray(wide).save(tmp_path / "a_wide.png")
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(grey, "L").save(tmp_path / "b_grey.png")
    (tmp_path / "._a_wide.png").write_bytes(b"AppleDouble metadata, not an image")  # hidden: skipped
    images = load_training_images(str(tmp_path), 16)
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    # Non-square: centre-cropped, not squashed (squashing would keep the red and blue bands at the sides).
    assert (images[0, ..., 1] == 255).all() and (images[0, ..., [0, 2]] == 0).all()
    # Greyscale: replicated to three channels, pixels unchanged at the run's resolution.
    assert all(np.array_equal(images[1, ..., c], grey) for c in range(3))


def test_a_chunk_ends_at_its_wall_clock_end_whatever_the_set_up_took(tmp_path):
    trainer = GANTrainer(TINY, tmp_path, device="cpu", images=blob_images())
    trainer.train(until=time.time() - 1)  # the set-up ate the chunk's time: no step, but a checkpoint to resume
    assert trainer.step == 0 and (tmp_path / "checkpoint" / "checkpoint.json").exists()
    end = time.time() + 3
    trainer.train(until=end)
    assert trainer.step > 0 and end <= time.time() < end + 60  # trained to its end, not a chunk's length past it
    before = trainer.step
    trainer.train(stop_at=before + 2)  # a chunk of a known number of steps, however fast the machine
    assert trainer.step == before + 2 == load_checkpoint(tmp_path / "checkpoint")["step"]
    start = time.time()
    trainer.train(stop_at=before + 10**6, until=start + 1)  # whichever comes first: here the end
    assert before + 2 < trainer.step < before + 10**6 and time.time() < start + 60
    for lengths in ({}, dict(minutes=1, until=time.time() + 60)):
        with pytest.raises(ValueError, match="minutes= or its end as until="):
            trainer.train(**lengths)
        with pytest.raises(ValueError, match="minutes= or its end as until="):  # before the set-up: nothing made
            train_gan(tmp_path / "refused", config=TINY, device="cpu", **lengths)
        assert not (tmp_path / "refused").exists()


def test_the_committed_faces64v2_run_resumes_with_its_own_config():
    """The GAN run in progress (training/faces64v2, committed): its checkpoint's config parses back to what its
    config.json mirrors, passes the resume comparison, may retune the regulariser and refuses another network; and
    its G_ema builds from the same config."""
    run = Path(__file__).resolve().parents[1] / "training" / "faces64v2"
    stored = checkpoint_config(run)
    assert stored == GANTrainConfig.from_dict(load_checkpoint_entry(run / "checkpoint", "config"))
    assert stored == GANTrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert stored.classifier is not None and stored.correlated_pairs  # the regulariser is on, with its pair
    assert run_config(run) == stored  # the config a resumed chunk trains with: the checkpoint's, compared with itself
    retuned = run_config(run, changes=dict(edit_weight=stored.edit_weight + 1), batch_size=stored.batch_size // 2)
    assert retuned == dataclasses.replace(stored, edit_weight=stored.edit_weight + 1, batch_size=stored.batch_size // 2)
    with pytest.raises(ValueError, match=r"faces64v2 was trained with a different config \(z_dim differ\)"):
        run_config(run, changes=dict(z_dim=stored.z_dim // 2))
    G = generator_from_checkpoint(run)
    assert (G.z_dim, G.w_dim, G.img_resolution) == (stored.z_dim, stored.w_dim, stored.resolution)


def _another_value(value):
    """A value of the same kind as a config field's `value` that differs from it."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        return value + (value[:1] or ("x",))
    assert value is None, value
    return 1


def test_a_resume_may_change_exactly_the_fields_declared_resumable(tmp_path):
    """RESUMABLE_FIELDS is read off the dataclass (the batch size and the regulariser's fields); changing one of them
    passes the resume comparison, changing any other field is refused with a message naming RESUMABLE_FIELDS."""
    declared = {f.name for f in dataclasses.fields(GANTrainConfig) if f.metadata.get("resumable")}
    assert RESUMABLE_FIELDS == declared and {"batch_size", "classifier", "edit_weight"} <= declared
    stored = GANTrainConfig()
    for field in dataclasses.fields(GANTrainConfig):
        changed = dataclasses.replace(stored, **{field.name: _another_value(getattr(stored, field.name))})
        assert changed != stored, field.name
        if field.name in RESUMABLE_FIELDS:
            refuse_changes(stored, changed, tmp_path)
        else:
            with pytest.raises(ValueError, match=rf"\({field.name} differ\).*may change only "
                                                 rf"{re.escape(', '.join(sorted(RESUMABLE_FIELDS)))}:"):
                refuse_changes(stored, changed, tmp_path)


def test_a_resumed_chunk_averages_with_its_own_ema_half_life(tmp_path):
    images, config = blob_images(), dataclasses.replace(TINY, ema_rampup=None)
    a = GANTrainer(config, tmp_path, device="cpu", images=images)
    a.train_step()
    a.save()
    for ema_kimg, follows_G in ((config.ema_kimg, False), (1e-9, True)):  # a vanishing half-life: G_ema becomes G
        b = GANTrainer(run_config(tmp_path, changes=dict(ema_kimg=ema_kimg)), tmp_path, device="cpu", images=images)
        b.train_step()
        assert all(torch.equal(e, p) for e, p in zip(b.G_ema.parameters(), b.G.parameters())) == follows_G


def test_a_resumed_chunk_steps_with_its_own_learning_rates(tmp_path):
    """A late chunk may lower the learning rates: the optimizers step with the new config's, not with those their
    saved state dicts carry, and keep their moments."""
    images = blob_images()
    a = GANTrainer(TINY, tmp_path, device="cpu", images=images)
    a.train_step()
    a.save()
    moments = a.opt_G.state_dict()["state"][0]["exp_avg_sq"].clone()
    b = GANTrainer(run_config(tmp_path, changes=dict(g_lr=TINY.g_lr / 4, d_lr=TINY.d_lr / 2)), tmp_path,
                   device="cpu", images=images)
    b.load()
    assert [g["lr"] for g in b.opt_G.param_groups] == [TINY.g_lr / 4 * lazy_ratio(TINY.pl_interval)]
    assert [g["lr"] for g in b.opt_D.param_groups] == [TINY.d_lr / 2 * lazy_ratio(TINY.r1_interval)]
    torch.testing.assert_close(b.opt_G.state_dict()["state"][0]["exp_avg_sq"], moments, rtol=1e-2, atol=0)
