"""Counterfactual-invariance training of the attribute classifier, and the leakage benchmark that measures it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from cli.app import app
from ganinv.datasets import procedural_faces as pf
from ganinv.models.attributes import (AttributeClassifier, ClassifierConfig, load_classifier, read_metadata,
                                      save_classifier)
from ganinv.training.checkpoint import parse_settings
from ganinv.training.train_classifier import (MIRROR_NEGATES, TrainClassifierConfig, _blur, _lr_at, apply_augment,
                                              augment, classifier_loss, draw_augment, invariance_loss, render_pool,
                                              render_twins, train_classifier)
from ganinv.utils.images import to_model_input

BINARY = [a.name for a in pf.ATTRIBUTES if a.kind == "binary"]


def test_a_twin_flips_exactly_one_binary_attribute_and_keeps_the_style():
    images, attrs = render_pool(3, 6, workers=1, version=2)
    twin_images, twin_attrs, toggled = render_twins(3, 6, workers=1, version=2)
    differs = (twin_attrs != attrs)
    assert differs.sum(1).tolist() == [1] * 6 and differs.nonzero()[:, 1].tolist() == toggled.tolist()
    assert all(pf.ATTRIBUTE_NAMES[j] in BINARY for j in toggled.tolist())
    assert all(not torch.equal(a, b) for a, b in zip(images, twin_images))
    for i in range(6):  # the twin is the same face (style) with the new attributes, drawn by the renderer itself
        vector = twin_attrs[i].tolist()
        same_style = pf.render(dict(zip(pf.ATTRIBUTE_NAMES, vector)), style=pf.sample_style(3, i), version=2)
        assert np.array_equal(np.asarray(same_style), twin_images[i].permute(1, 2, 0).numpy())


def test_twins_are_the_same_for_any_worker_count():
    one = render_twins(4, 5, workers=1, version=2)
    two = render_twins(4, 5, workers=2, version=2)
    assert all(torch.equal(a, b) for a, b in zip(one, two))


def test_the_toggles_use_every_binary_attribute():
    toggles = {pf.counterfactual_toggle(0, i) for i in range(200)}
    assert toggles == set(BINARY)


def test_continuous_twins_change_any_attribute_by_half_its_range_and_keep_the_rest():
    toggles = [pf.counterfactual_toggle(0, i, continuous=True) for i in range(300)]
    assert set(toggles) == set(pf.ATTRIBUTE_NAMES)
    assert [pf.counterfactual_toggle(0, i) for i in range(50)] == [pf.counterfactual_toggle(0, i, continuous=False)
                                                                   for i in range(50)]  # binary twins as before
    images, attrs = render_pool(5, 12, workers=1, version=2)
    twin_images, twin_attrs, toggled = render_twins(5, 12, workers=1, version=2, continuous=True)
    differs = twin_attrs != attrs
    assert differs.sum(1).tolist() == [1] * 12 and differs.nonzero()[:, 1].tolist() == toggled.tolist()
    assert any(pf.ATTRIBUTE_NAMES[j] not in BINARY for j in toggled.tolist())
    for i, j in enumerate(toggled.tolist()):
        attr = pf.ATTRIBUTES[j]
        if attr.kind == "binary":
            assert twin_attrs[i, j] == 1 - attrs[i, j]
        else:  # half the range away, wrapping around inside it
            lo, hi = attr.range
            step = ((twin_attrs[i, j] - attrs[i, j]).item() / (hi - lo)) % 1.0
            assert step == pytest.approx(0.5, abs=1e-3) and lo <= twin_attrs[i, j] <= hi
        same_style = pf.render(dict(zip(pf.ATTRIBUTE_NAMES, twin_attrs[i].tolist())), style=pf.sample_style(5, i),
                               version=2)
        assert np.array_equal(np.asarray(same_style), twin_images[i].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="unknown attribute 'beard'"):
        pf.render_counterfactual(0, 0, "beard")
    assert parse_settings(["invariance_continuous=True"], TrainClassifierConfig) == dict(invariance_continuous=True)


def test_a_face_and_its_twin_share_every_augmentation_draw():
    g = torch.Generator().manual_seed(5)
    for _ in range(8):  # some batches blur, some do not
        x, y = torch.rand(6, 3, 16, 16) * 2 - 1, torch.rand(6, len(pf.ATTRIBUTE_NAMES))
        rows = torch.tensor([4, 0, 2])
        draws = draw_augment(x.shape, g)
        out, out_y = apply_augment(torch.cat([x, x[rows]]), torch.cat([y, y[rows]]), draws.cat(draws.take(rows)))
        assert torch.equal(out[6:], out[rows]) and torch.equal(out_y[6:], out_y[rows])
        assert not torch.equal(out[0], out[1])


def _augment_before_pairs(x, attrs, g):
    """`augment` as it was before twins shared its draws: the reference that training without invariance must match."""
    n = x.shape[0]
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    negate = torch.tensor([name in MIRROR_NEGATES for name in pf.ATTRIBUTE_NAMES])
    attrs = torch.where(flip[:, None] & negate, -attrs, attrs)
    dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
    x = F.pad(x, (2, 2, 2, 2), mode="replicate")[:, :, 2 + dy:2 + dy + x.shape[2], 2 + dx:2 + dx + x.shape[3]]
    if torch.rand(1, generator=g).item() < 0.3:
        x = _blur(x, sigma=0.3 + 0.6 * torch.rand(1, generator=g).item())
    gain = 1 + 0.03 * (2 * torch.rand(n, 3, 1, 1, generator=g) - 1)
    contrast = 1 + 0.07 * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
    bright = 0.05 * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + bright
    x = x * gain + 0.04 * torch.rand(n, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return x.clamp(-1, 1), attrs


def test_augmentation_draws_what_it_drew_before_twins_existed():
    x, y = torch.rand(16, 3, 64, 64) * 2 - 1, torch.rand(16, len(pf.ATTRIBUTE_NAMES))
    for seed in range(12):
        new = augment(x, y, torch.Generator().manual_seed(seed))
        old = _augment_before_pairs(x, y, torch.Generator().manual_seed(seed))
        assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[1])


def test_training_without_invariance_is_the_training_before_it(tmp_path):
    """The training loop as it was (reference below) and train_classifier at invariance_weight 0 write the same
    weights, bit for bit."""
    cfg = TrainClassifierConfig(n_train=48, n_eval=16, steps=5, batch_size=8, eval_every=100, warmup_steps=2)
    record = train_classifier(cfg, tmp_path / "now.safetensors")
    assert "invariance_log" not in record
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.torch_seed)
        train_x, train_y = render_pool(cfg.seed, cfg.n_train)
        model = AttributeClassifier(ClassifierConfig.from_world()).to(memory_format=torch.channels_last).train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        g = torch.Generator().manual_seed(cfg.torch_seed)
        for step in range(cfg.steps):
            idx = torch.randint(0, len(train_x), (cfg.batch_size,), generator=g)
            x, y = _augment_before_pairs(to_model_input(train_x[idx]), train_y[idx], g)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, cfg)
            loss = classifier_loss(model, model(x.contiguous(memory_format=torch.channels_last)), y,
                                   continuous_weight=cfg.continuous_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    save_classifier(model.eval().to(memory_format=torch.contiguous_format), tmp_path / "before.safetensors")
    now, before = load_classifier(tmp_path / "now.safetensors"), load_classifier(tmp_path / "before.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(now.state_dict().values(), before.state_dict().values()))


def test_invariance_loss_ignores_the_toggled_attribute():
    raw, twin = torch.zeros(2, 4), torch.zeros(2, 4)
    twin[0, 1], twin[1, 3] = 10.0, 10.0  # only the toggled columns differ
    assert invariance_loss(raw, twin, torch.tensor([1, 3])).item() == 0
    twin[0, 2] = 2.0
    assert invariance_loss(raw, twin, torch.tensor([1, 3])).item() == pytest.approx(4 / 6)


def _heldout_invariance(path, n=24):
    clf = load_classifier(path)
    images, _ = render_pool(7, n, workers=1, version=2)
    twins, _, toggled = render_twins(7, n, workers=1, version=2)
    with torch.no_grad():
        return invariance_loss(clf(to_model_input(images)), clf(to_model_input(twins)), toggled).item()


def test_invariance_training_logs_its_term_and_makes_twins_agree(tmp_path):
    base = dict(n_train=64, n_eval=16, steps=60, batch_size=16, eval_every=1000, world_version=2, warmup_steps=10)
    plain = train_classifier(TrainClassifierConfig(**base), tmp_path / "plain.safetensors")
    invariant = train_classifier(TrainClassifierConfig(**base, invariance_weight=10.0),
                                 tmp_path / "invariant.safetensors")
    assert "invariance_log" not in plain
    logged = invariant["invariance_log"]
    assert [step for step, _ in logged] == [0, 50] and 0 < logged[1][1] < logged[0][1]  # logged, and it falls
    assert invariant["train_config"]["invariance_weight"] == 10.0
    assert _heldout_invariance(tmp_path / "invariant.safetensors") < 0.5 * _heldout_invariance(
        tmp_path / "plain.safetensors")


def test_invariance_settings_are_checked_and_read_as_overrides():
    assert parse_settings(["invariance_weight=1.0", "invariance_share=0.5"], TrainClassifierConfig) == dict(
        invariance_weight=1.0, invariance_share=0.5)
    assert TrainClassifierConfig(n_train=10, invariance_weight=1.0, invariance_share=0.5).n_pairs == 5
    assert TrainClassifierConfig(n_train=10, invariance_share=0.5).n_pairs == 0
    with pytest.raises(ValueError, match="dataset_dir"):
        TrainClassifierConfig(invariance_weight=1.0, dataset_dir="faces")
    with pytest.raises(ValueError, match="invariance_share"):
        TrainClassifierConfig(invariance_weight=1.0, invariance_share=0.0)


def test_leakage_benchmark_runs_tiny_and_writes_every_table(tmp_path):
    from benchmarks import classifier_leakage

    out = tmp_path / "leak.json"
    classifier_leakage.main(["--n", "8", "--n-tail", "200", "--workers", "1", "--out", str(out)])
    payload = json.loads(out.read_text())
    assert {"date", "device", "command", "world_version", "results"} <= set(payload)
    [result] = payload["results"]
    assert result["classifier"] == "builtin" and payload["world_version"] == pf.world(None).version
    shifts, tails = result["counterfactual_shifts"], result["score_tails"]
    assert len(shifts) == len(BINARY) * (len(pf.ATTRIBUTES) - 1)
    assert all(r["toggled"] != r["attribute"] and r["sd_shift_sd"] >= 0 for r in shifts)
    assert all(0 <= r["decisions_changed"] <= 1 for r in shifts if r["kind"] == "binary")
    assert len(tails) == len(BINARY) * (len(BINARY) - 1)
    for r in tails:  # the overall rate is the mix of the rates given the score attribute's true value
        assert min(r["rate_given_0"], r["rate_given_1"]) - 1e-9 <= r["rate_overall"] <= max(
            r["rate_given_0"], r["rate_given_1"]) + 1e-9
        assert r["excess_high"] == pytest.approx(r["rate_high"] - r["rate_given_1"])
    assert result["summary"]["max_decisions_changed"] == max(r["decisions_changed"] for r in shifts
                                                             if r["kind"] == "binary")


def test_train_classifier_command_takes_the_invariance_flags_and_refuses_a_bad_one(tmp_path):
    runner = CliRunner()
    refused = runner.invoke(app, ["train-classifier", "--out", str(tmp_path / "c.safetensors"),
                                  "--invariance-weight", "-1"])
    assert refused.exit_code == 2 and "invariance_weight" in refused.output and not (tmp_path / "c.safetensors").exists()
    done = runner.invoke(app, ["train-classifier", "--out", str(tmp_path / "c.safetensors"), "--n-train", "16",
                               "--n-eval", "8", "--steps", "2", "--batch-size", "8", "--world-version", "2",
                               "--invariance-weight", "1.5", "--invariance-share", "0.5", "--invariance-continuous"])
    assert done.exit_code == 0, done.output
    record = read_metadata(tmp_path / "c.safetensors")["metrics"]
    assert record["train_config"]["invariance_weight"] == 1.5 and record["train_config"]["invariance_share"] == 0.5
    assert record["train_config"]["invariance_continuous"] is True
    assert [step for step, _ in record["invariance_log"]] == [0]
