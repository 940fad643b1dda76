"""The linear-attribute regulariser (ganinv/training/linear_attributes.py) in a toy world: a 16 px G, a stand-in
classifier that reads three binary attributes and one continuous one from region colours, and data in which glasses
depends on blond. Every part is compared with the same run with its weight 0 (same seed, same start).

The runs share a 40-step start (the regulariser on with every weight 0: its probe fitted, nothing pulled), then go on
for 60 steps each, resumed from that checkpoint with one more weight switched on, as a GPU chunk would:
base (all 0) -> joint -> + linearity -> + orthogonality; + linearity -> + edit -> + conditional edits.
Measurements are on G_ema, on fresh codes.
"""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganinv.directions.interfacegan import project_boundary
from ganinv.training.checkpoint import load_checkpoint
from ganinv.training.linear_attributes import LinearAttributes, attribute_pairs, attribute_statistics
from ganinv.training.train_gan import GANTrainConfig, GANTrainer, run_config

from _gan_helpers import TINY, RegionClassifier, region_images

SMILE, BLOND, GLASSES = 0, 1, 2
INDEPENDENT = [(SMILE, BLOND), (SMILE, GLASSES)]
TOY = dataclasses.replace(TINY, classifier="regions", attr_interval=1, attr_batch_shrink=1, probe_lr=0.03,
                          probe_warmup=20, pl_weight=0, r1_gamma=0, correlated_pairs=(("glasses", "blond"),))
LINEAR = dict(joint_weight=3.0, linearity_weight=3.0)
RUNS = {"base": {}, "joint": dict(joint_weight=3.0), "linear": LINEAR,
        "orthogonal": dict(LINEAR, probe_orthogonality=10.0), "edit": dict(LINEAR, edit_weight=10.0),
        "conditional": dict(LINEAR, edit_weight=10.0, edit_conditional=1.0)}
START_STEPS, STEPS = 40, 60
STRENGTHS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)  # sigmas of the codes' projections


@pytest.fixture(scope="module")
def images():
    return region_images()


@pytest.fixture(scope="module")
def run(tmp_path_factory, images):
    """run(name) -> the trainer of RUNS[name] after its 60 steps (trained once per module)."""
    root = tmp_path_factory.mktemp("linear_attributes")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the toy's trajectories are chaotic: one summation order, whatever the test threads
    start = GANTrainer(TOY, root / "start", device="cpu", images=images, classifier=RegionClassifier())
    for _ in range(START_STEPS):
        start.train_step()
    start.save()
    done = {}

    def trained(name: str) -> GANTrainer:
        if name not in done:
            shutil.copytree(root / "start", root / name)
            trainer = GANTrainer(dataclasses.replace(TOY, **RUNS[name]), root / name, device="cpu", images=images,
                                 classifier=RegionClassifier())
            assert trainer.step == START_STEPS and trainer.attributes.updates == START_STEPS  # resumed, probe too
            trained.logs[name] = [trainer.train_step() for _ in range(STEPS)][-1]
            done[name] = trainer
        return done[name]
    trained.logs = {}
    yield trained
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ measurements
@torch.no_grad()
def read(trainer: GANTrainer, w: torch.Tensor) -> torch.Tensor:
    G = trainer.G_ema
    return trainer.attributes.classifier(G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="const"))


@torch.no_grad()
def sample(trainer: GANTrainer, n: int = 2000, seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh codes w `[n, w_dim]` of G_ema and the classifier's readings `[n, A]` of their images."""
    z = torch.randn([n, trainer.G_ema.z_dim], generator=torch.Generator().manual_seed(seed))
    w = trainer.G_ema.mapping(z, None)[:, 0]
    return w, read(trainer, w)


def fit_hyperplanes(w: torch.Tensor, decisions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression of each binary decision on w (a fresh look at G, independent of the trainer's probe):
    weights `[B, w_dim]`, biases `[B]`."""
    mean, std = w.mean(0), w.std(0)
    linear = torch.nn.Linear(w.shape[1], decisions.shape[1])
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(linear((w - mean) / std), decisions.float())
        (loss + 1e-3 * linear.weight.square().sum()).backward()
        return loss
    opt.step(closure)
    weight = linear.weight.detach() / std
    return weight, linear.bias.detach() - weight @ mean


def edit_curve(trainer, w, before, direction, side, target, held) -> tuple[np.ndarray, np.ndarray]:
    """Move every code along the unit `direction` toward the other side of its hyperplane (`side` [n]: +1 on the
    positive side) at each of STRENGTHS (in sigmas of the codes' projections): flip rate of `target` and the share of
    the `held` decisions that changed, per strength."""
    sigma = (w @ direction).std()
    flips, changes = [], []
    for strength in STRENGTHS:
        after = read(trainer, w - (side * strength * sigma)[:, None] * direction) > 0
        flips.append((after[:, target] != before[:, target]).float().mean().item())
        changes.append((after[:, held] != before[:, held]).float().mean().item())
    return np.array(flips), np.array(changes)


def at_flip(curve: tuple[np.ndarray, np.ndarray], level: float) -> float:
    """Change of the held decisions at the strength where the flip rate reaches `level` (interpolated)."""
    flips, changes = curve
    flips = np.maximum.accumulate(flips)
    assert flips[-1] >= level, f"the edit never reaches a flip rate of {level} (at most {flips[-1]:.2f})"
    return float(np.interp(level, flips, changes))


# ------------------------------------------------------------------------------------------------ the parts
def test_linearity_pull_makes_the_classifier_agree_with_the_linear_probe(run):
    agreement, separability = {}, {}
    for name in ("joint", "linear"):  # the same but for linearity_weight
        trainer = run(name)
        w, raw = sample(trainer)
        decisions = raw[:, :3] > 0
        probe = trainer.attributes.probe(w)[:, :3] > trainer.attributes.thresholds[:3]
        agreement[name] = (probe == decisions).float().mean().item()
        weight, bias = fit_hyperplanes(w[:1000], decisions[:1000])  # and a fresh linear fit, held out
        separability[name] = ((w[1000:] @ weight.T + bias > 0) == decisions[1000:]).float().mean().item()
    print("probe agreement", agreement, "fresh linear accuracy", separability)
    assert agreement["linear"] > agreement["joint"] + 0.03
    assert separability["linear"] > separability["joint"] + 0.03


def test_probe_orthogonality_makes_independent_normals_orthogonal_in_G(run):
    cosine = {}
    for name in ("linear", "orthogonal"):
        w, raw = sample(run(name))
        normals = F.normalize(fit_hyperplanes(w, raw[:, :3] > 0)[0], dim=1)  # G's, not the probe's
        cosine[name] = float(np.mean([abs(normals[i] @ normals[j]).item() for i, j in INDEPENDENT]))
    print("mean |cos| of independent normals", cosine)
    assert cosine["orthogonal"] < 0.8 * cosine["linear"]


def test_joint_pull_brings_the_decision_correlations_to_the_data(run, images):
    data = torch.corrcoef((RegionClassifier()(torch.from_numpy(images).permute(0, 3, 1, 2) / 127.5 - 1)[:, :3] > 0)
                          .float().T)
    upper = torch.triu_indices(3, 3, 1)
    error = {}
    for name in ("base", "joint"):
        _, raw = sample(run(name))
        error[name] = (torch.corrcoef((raw[:, :3] > 0).float().T) - data)[upper[0], upper[1]].abs().mean().item()
    print("mean |correlation - data's|", error, "data", data[upper[0], upper[1]].tolist())
    assert error["joint"] < 0.6 * error["base"]


def test_edit_pull_lowers_interference_at_equal_flip(run):
    interference = {}
    for name in ("linear", "edit"):
        trainer = run(name)
        w, raw = sample(trainer, n=600)
        before = raw[:, :3] > 0
        weight, bias = fit_hyperplanes(w, before)
        normals = F.normalize(weight, dim=1)
        side = torch.sign(w @ weight.T + bias)
        interference[name] = np.mean([
            at_flip(edit_curve(trainer, w, before, normals[a], side[:, a], a,
                               [c for c in range(3) if c != a and (a, c) not in [(BLOND, GLASSES), (GLASSES, BLOND)]]),
                    0.7) for a in range(3)])
    print("interference at 70 % flip", interference)
    assert interference["edit"] < 0.8 * interference["linear"]


def test_conditional_edits_hold_the_partner(run):
    """Glasses edits along each run's own glasses normal and conditional direction (the normal with blond's projected
    out, InterFaceGAN Sec. 2.2): the blond decisions that change, at equal glasses flip. Trained on conditional edits,
    G learns to change glasses without blond (the data ties them: 90 % glasses with blond, 10 % without)."""
    partner_change = {}
    for name in ("edit", "conditional"):
        trainer = run(name)
        w, raw = sample(trainer, n=600)
        probe = trainer.attributes.probe
        normals = F.normalize(probe.weight.detach(), dim=1)
        conditional = F.normalize(normals[GLASSES] - (normals[GLASSES] @ normals[BLOND]) * normals[BLOND], dim=0)
        side = torch.sign(probe(w)[:, GLASSES] - trainer.attributes.thresholds[GLASSES]).detach()
        partner_change[name] = [at_flip(edit_curve(trainer, w, raw > 0, direction, side, GLASSES, [BLOND]), 0.5)
                                for direction in (normals[GLASSES], conditional)]
    print("blond change at 50 % glasses flip (plain, conditional direction)", partner_change)
    assert sum(partner_change["conditional"]) < 0.85 * sum(partner_change["edit"])


def test_every_part_logs_its_loss_into_the_training_log(run, tmp_path, images):
    run("conditional"), run("joint")
    logs = run.logs["conditional"]
    for key in ("probe_fit", "probe_agreement", "probe_cosine", "linearity", "joint", "edit", "edit_flip",
                "edit_interference"):
        assert key in logs and torch.isfinite(logs[key]), key
    assert "linearity" not in run.logs["joint"] and "probe_agreement" in run.logs["joint"]
    config = dataclasses.replace(TOY, attr_interval=3, pl_weight=2.0, edit_weight=1.0)
    GANTrainer(config, tmp_path, device="cpu", images=images, classifier=RegionClassifier()).train(
        stop_at=6, log_every=2)
    entries = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(entries) == 3 and all({"probe_agreement", "edit_interference", "pl_penalty"} <= set(entry)
                                     for entry in entries)  # the lazy ones too: their latest values


# ------------------------------------------------------------------------------------------------ plumbing
def test_the_shipped_classifier_drives_the_regulariser(tmp_path):
    from ganinv.datasets.procedural_faces import ATTRIBUTE_NAMES, render_batch
    images = render_batch(0, range(16), size=64)[0]
    config = dataclasses.replace(TINY, resolution=64, classifier="builtin", attr_interval=1, probe_warmup=0,
                                 linearity_weight=1.0, probe_orthogonality=1.0, joint_weight=1.0, edit_weight=1.0,
                                 edit_conditional=1.0, correlated_pairs=(("eyeglasses", "blond_hair"),))
    trainer = GANTrainer(config, tmp_path, device="cpu", images=images)
    classifier = trainer.attributes.classifier
    assert trainer.attributes.names == list(ATTRIBUTE_NAMES) and not classifier.training
    assert not any(p.requires_grad for p in classifier.parameters())
    before = [p.detach().clone() for p in classifier.parameters()]
    logs = trainer.train_step()
    assert {"linearity", "joint", "edit", "edit_partner_change"} <= set(logs)
    assert all(torch.isfinite(v) for v in logs.values())
    assert all(torch.equal(a, b) for a, b in zip(before, classifier.parameters()))  # frozen


def test_independent_pairs_leave_out_the_correlated_one():
    names, kinds = RegionClassifier.attribute_names, RegionClassifier.attribute_kinds
    pairs, partner = attribute_pairs(names, kinds, [("glasses", "blond")])
    assert pairs == INDEPENDENT
    assert partner[GLASSES, BLOND] and partner[BLOND, GLASSES] and partner.sum() == 2
    with pytest.raises(ValueError, match="two binary attributes"):
        attribute_pairs(names, kinds, [("glasses", "tone")])


PAIRINGS = {"none": (), "one": (("glasses", "blond"),), "two": (("glasses", "blond"), ("smile", "blond"))}


def seeded_attributes(pairs, seed: int) -> tuple[LinearAttributes, torch.Generator]:
    """A regulariser on the toy classifier whose probe and thresholds are random (seeded), as after some training."""
    attributes = LinearAttributes(RegionClassifier(), dataclasses.replace(TOY, correlated_pairs=pairs),
                                  w_dim=TOY.w_dim, device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in attributes.probe.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
    attributes.thresholds = torch.randn(attributes.thresholds.shape, generator=generator)
    return attributes, generator


def conditioning_every_attribute(attributes: LinearAttributes, w, attr, conditional):
    """`_directions` as it was first written: every attribute's conditional normal (its own normal when it has no
    partner), then each code's pick."""
    weight = attributes.probe.weight
    normals = F.normalize(weight, dim=1, eps=1e-12)
    conditioned = []
    for a in range(len(normals)):
        partners = normals[attributes.partner[a]]
        if len(partners) == 0:
            conditioned.append(normals[a])
            continue
        basis = torch.linalg.qr(partners.T).Q
        conditioned.append(F.normalize(normals[a] - basis @ (basis.T @ normals[a]), dim=0, eps=1e-12))
    directions = torch.where(conditional[:, None], torch.stack(conditioned)[attr], normals[attr])
    logit = (attributes.probe(w) - attributes._offsets()).gather(1, attr[:, None])[:, 0]
    return directions, logit, (weight[attr] * directions).sum(1)


@pytest.mark.parametrize("pairing", list(PAIRINGS))
@torch.no_grad()
def test_edit_directions_are_those_of_conditioning_every_attribute(pairing):
    for seed in range(5):
        attributes, generator = seeded_attributes(PAIRINGS[pairing], seed)
        w = torch.randn([64, TOY.w_dim], generator=generator)
        attr = attributes.binary_index[torch.randint(len(attributes.binary_index), [64], generator=generator)]
        conditional = torch.rand([64], generator=generator) < 0.7  # unpartnered ones too: their own normal
        ours = attributes._directions(w, attr, conditional)
        reference = conditioning_every_attribute(attributes, w, attr, conditional)
        for got, expected in zip(ours, reference):
            assert torch.equal(got, expected)  # bit for bit: a run resumed across the change goes on as before


@pytest.mark.parametrize("pairing", ["one", "two"])
@torch.no_grad()
def test_conditional_edit_direction_is_interfacegans_conditional_boundary(pairing):
    """The regulariser's conditional direction and `project_boundary`'s (InterFaceGAN Sec. 2.2) on random normals:
    1 condition (glasses | blond) and 2 (blond | glasses, smile)."""
    compared = 0
    for seed in range(10):
        attributes, _ = seeded_attributes(PAIRINGS[pairing], seed)
        normals = F.normalize(attributes.probe.weight, dim=1)
        for a in attributes.binary_index.tolist():
            attr = torch.tensor([a])
            direction = attributes._directions(torch.zeros([1, TOY.w_dim]), attr, torch.tensor([True]))[0][0]
            partners = attributes.partner[a].nonzero()[:, 0].tolist()
            expected = project_boundary(normals[a], *normals[partners])[0] if partners else normals[a].numpy()
            np.testing.assert_allclose(direction.numpy(), expected, atol=2e-6)
            compared += len(partners) > 0
    assert compared == 10 * (2 if pairing == "one" else 3)


def test_data_statistics_are_the_classifier_readings_of_the_images(images):
    stats = attribute_statistics(RegionClassifier(), torch.from_numpy(images).permute(0, 3, 1, 2), batch_size=100)
    raw = RegionClassifier()(torch.from_numpy(images).permute(0, 3, 1, 2) / 127.5 - 1)
    assert torch.allclose(stats["rates"][:3], (raw[:, :3] > 0).float().mean(0))
    assert stats["rates"][3] == 0 and torch.allclose(stats["mean"][3], raw[:, 3].mean(), atol=1e-6)
    assert stats["cov"][BLOND, GLASSES] > 0.1 > abs(stats["cov"][SMILE, GLASSES])  # the data's dependency


def test_the_checkpoint_carries_the_regulariser(tmp_path, images):
    # (that a resumed run continues bit for bit, regulariser on: test_train_gan.py)
    config = dataclasses.replace(TOY, **RUNS["conditional"])
    a = GANTrainer(config, tmp_path, device="cpu", images=images, classifier=RegionClassifier())
    for _ in range(2):
        a.train_step()
    a.save()
    stored = load_checkpoint(tmp_path / "checkpoint")
    assert GANTrainConfig.from_dict(stored["config"]) == config  # correlated_pairs back as a tuple of tuples
    state = stored["attributes"]
    assert state["names"] == RegionClassifier.attribute_names and state["updates"] == 2
    assert torch.equal(state["stats"]["cov"], a.attributes.stats["cov"])
    assert torch.equal(state["probe"]["weight"], a.attributes.probe.weight) and state["opt"]["state"]
    assert torch.equal(state["generator"], a.attributes.generator.get_state())
    other = dataclasses.replace(config, classifier="another")  # another classifier: a fresh probe, not this one
    b = GANTrainer(other, tmp_path, device="cpu", images=images, classifier=RegionClassifier())
    assert b.step == 2 and b.attributes.updates == 0 and not b.attributes.probe.weight.any()
    replaced = GANTrainer(config, tmp_path, device="cpu", images=images, classifier=RegionClassifier(sharpness=5.0))
    assert replaced.attributes.updates == 0  # the same path, other weights: another judge, a fresh probe
    assert not torch.equal(replaced.attributes.stats["mean"], a.attributes.stats["mean"])  # the data read again
    retuned = GANTrainer(dataclasses.replace(config, probe_lr=0.001), tmp_path, device="cpu", images=images,
                         classifier=RegionClassifier())  # the probe carries on, at this chunk's learning rate
    assert retuned.attributes.updates == 2 and retuned.attributes.opt.param_groups[0]["lr"] == 0.001


def test_resuming_may_switch_the_regulariser_on_but_not_change_the_network(tmp_path, images):
    a = GANTrainer(TINY, tmp_path, device="cpu", images=images)
    a.train_step()
    a.save()
    switch_on = dict(classifier="regions", attr_interval=1, edit_weight=1.0, correlated_pairs=(("glasses", "blond"),))
    on = run_config(tmp_path, changes=switch_on)
    assert on == dataclasses.replace(TINY, **switch_on)
    b = GANTrainer(on, tmp_path, device="cpu", images=images, classifier=RegionClassifier())
    assert b.step == 1 and b.attributes.updates == 0 and "edit" in b.train_step()
    with pytest.raises(ValueError, match="w_dim differ"):
        run_config(tmp_path, changes=dict(edit_weight=1.0, w_dim=32))
    with pytest.raises(ValueError, match="channel_max differ"):
        GANTrainer(dataclasses.replace(on, channel_max=32), tmp_path, device="cpu", images=images,
                   classifier=RegionClassifier())


def _noise_calls(config, images, tmp_path):
    """The `noise` argument of each synthesis call of one regulariser step, and the trainer."""
    trainer = GANTrainer(config, tmp_path, device="cpu", images=images, classifier=RegionClassifier())
    calls = []
    trainer.G.synthesis.register_forward_pre_hook(lambda _, args, kwargs: calls.append(kwargs.get("noise")),
                                                  with_kwargs=True)
    trainer.attributes.penalty(trainer.G, 6, trainer._autocast)
    return calls, trainer


def test_random_attr_noise_is_drawn_per_code_and_shared_by_the_edited_image(tmp_path, images):
    edit = dict(RUNS["edit"], probe_warmup=0)
    const_calls, _ = _noise_calls(dataclasses.replace(TOY, **edit), images, tmp_path / "const")
    assert const_calls == [None, None]  # G's constant noise for the reading and for the edited reading
    calls, trainer = _noise_calls(dataclasses.replace(TOY, **edit, attr_noise="random"), images, tmp_path / "random")
    assert len(calls) == 2 and calls[0] is calls[1]  # the edited image keeps its code's noise
    layers = trainer.G.synthesis.noise_layers()
    assert [tuple(n.shape) for n in calls[0]] == [(6, 1, layer.resolution, layer.resolution) for layer in layers]
    assert not torch.equal(calls[0][-1][0], calls[0][-1][1])  # fresh per code
    with pytest.raises(ValueError, match="attr_noise must be one of"):
        GANTrainer(dataclasses.replace(TOY, attr_noise="fixed"), tmp_path / "bad", device="cpu", images=images,
                   classifier=RegionClassifier())


def test_the_checkpoint_carries_the_noise_stream(tmp_path, images):
    config = dataclasses.replace(TOY, **RUNS["edit"], attr_noise="random")
    a = GANTrainer(config, tmp_path, device="cpu", images=images, classifier=RegionClassifier())
    a.train_step()
    a.save()
    b = GANTrainer(config, tmp_path, device="cpu", images=images, classifier=RegionClassifier())
    assert torch.equal(b.attributes.noise_generator.get_state(), a.attributes.noise_generator.get_state())
    state = load_checkpoint(tmp_path / "checkpoint")["attributes"]
    del state["noise_generator"]  # a checkpoint from before attr_noise: the stream starts at the run's seed
    fresh = GANTrainer(config, tmp_path / "fresh", device="cpu", images=images, classifier=RegionClassifier())
    assert fresh.attributes.load_state(state)
    assert not torch.equal(fresh.attributes.noise_generator.get_state(), a.attributes.noise_generator.get_state())
