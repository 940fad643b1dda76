"""Degradations for restoration by inversion: shapes, gradients, configs, baselines, and inversion through each."""

import json

import pytest
import torch
from torch import nn

from ganinv.inversion import (AddNoise, Compose, Downsample, Grayscale, Mask, degradation_from_config, hybrid,
                              invert)
from ganinv.inversion.degradations import TASKS, task_config
from ganinv.inversion.masks import CenterBox, RandomBoxes

IDS = ["a.png", "b.png", "c.png"]
FAST = dict(loss="mse", w_avg_samples=500)


def images(n=3, size=16, seed=0):
    return torch.rand([n, 3, size, size], generator=torch.Generator().manual_seed(seed)) * 2 - 1


def every_degradation():
    """One of each kind, and a composition, for 16 px images of the ids in IDS."""
    box = Mask.from_source(CenterBox(0.25), IDS, 16)
    return {"mask": box, "downsample": Downsample(4), "grayscale": Grayscale(), "add-noise": AddNoise(0.2),
            "compose": Mask.from_source(RandomBoxes(seed=3), IDS, 16) | Grayscale() | Downsample(2)}


@pytest.mark.parametrize("name", list(every_degradation()))
def test_degradation_keeps_batch_and_lifts_back_to_image_size(name):
    d, x = every_degradation()[name], images()
    y = d.degrade(x)
    assert tuple(y.shape[1:]) == d.observed_shape((3, 16, 16)) and y.shape[0] == 3
    assert d.degraded_view(x).shape == d.observed_view(y).shape == d.baseline(y).shape == x.shape
    assert d.baseline(y).abs().max() <= 1


def test_observed_sizes_and_values():
    x = images()
    assert Downsample(4).degrade(x).shape == (3, 3, 4, 4)
    torch.testing.assert_close(Downsample(4).degrade(x)[:, :, 1, 2], x[:, :, 4:8, 8:12].mean(dim=(2, 3)))
    gray = Grayscale().degrade(x)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    torch.testing.assert_close(gray[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    assert torch.equal(AddNoise(0.1).degrade(x), x)
    mask = Mask.from_source(CenterBox(0.25), IDS, 16)
    assert (mask.degrade(x)[:, :, 6:10, 6:10] == 0).all() and torch.equal(mask.degrade(x)[:, :, :4], x[:, :, :4])


@pytest.mark.parametrize("name", list(every_degradation()))
def test_degradation_is_differentiable(name):
    d = every_degradation()[name]
    x = images().requires_grad_(True)
    d.degraded_view(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_gradient_never_reaches_a_hole():
    d = Mask.from_source(CenterBox(0.25), IDS, 16)
    x = images().requires_grad_(True)
    d.degraded_view(x).sum().backward()
    assert torch.equal(x.grad, d.mask.expand_as(x))


@pytest.mark.parametrize("name", list(every_degradation()))
def test_config_round_trip_gives_the_same_degradation(name):
    d = every_degradation()[name]
    config = json.loads(json.dumps(d.to_config()))  # what a store's attributes hold
    again = degradation_from_config(config, image_ids=IDS, resolution=16)
    assert again.to_config() == d.to_config() and repr(again) == repr(d)
    x = images()
    assert torch.equal(again.degrade(x), d.degrade(x))
    assert torch.equal(again.simulate(x, seed=4), d.simulate(x, seed=4))


def test_mask_from_a_tensor_works_but_cannot_be_recorded():
    mask = Mask(torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match="cannot be recorded"):
        mask.to_config()
    with pytest.raises(ValueError, match="mask must be 0/1"):
        Mask(torch.full([2, 1, 8, 8], 0.5))
    with pytest.raises(ValueError, match="unknown degradation kind 'blur'"):
        degradation_from_config({"kind": "blur"})
    with pytest.raises(ValueError, match="pass image_ids and resolution"):
        degradation_from_config({"kind": "mask", "source": CenterBox().to_config()})


def test_noise_is_drawn_per_image_from_its_seed_at_the_known_sigma():
    x = torch.zeros(3, 3, 32, 32)
    d = AddNoise(0.1)
    together = d.simulate(x, seed=[7, 8, 9])
    assert torch.equal(together[1:2], d.simulate(x[1:2], seed=[8]))
    assert not torch.equal(together[0], together[1])
    assert abs(together.std().item() - 0.1) < 0.01
    assert torch.equal(Downsample(2).simulate(x), Downsample(2).degrade(x))  # nothing random to draw


def test_projection_removes_what_the_degradation_cannot_see():
    x, garbage = images(), images(seed=1)
    mask = Mask.from_source(CenterBox(0.25), IDS, 16)
    observed = torch.where(mask.mask.bool(), x, garbage)
    assert torch.equal(mask.project(observed), mask.degrade(x))
    gray = Grayscale().degrade(x)
    torch.testing.assert_close(Grayscale().project(gray), gray)  # a grey RGB photo is its own observation
    chain = mask | Downsample(2) | Grayscale()
    small = chain.degrade(x)
    torch.testing.assert_close(chain.project(small), small)  # the mask saw 16 px images: only grayscale projects


def test_composition_is_flat_and_applies_in_order():
    chain = Mask.from_source(CenterBox(0.25), IDS, 16) | Downsample(2) | Grayscale()
    assert isinstance(chain, Compose) and [p.kind for p in chain.parts] == ["mask", "downsample", "grayscale"]
    x = images()
    expected = Grayscale().degrade(Downsample(2).degrade(chain.parts[0].degrade(x)))
    assert torch.equal(chain.degrade(x), expected) and chain.observed_shape((3, 16, 16)) == (3, 8, 8)
    assert chain.resizes and not Compose([Grayscale(), AddNoise(0.1)]).resizes


def test_baselines_are_the_plain_restorations():
    x = images()
    mask = Mask.from_source(CenterBox(0.25), IDS, 16)
    filled = mask.baseline(mask.degrade(x))
    visible_mean = (x * mask.mask).sum(dim=(2, 3)) / mask.mask.sum(dim=(2, 3))
    torch.testing.assert_close(filled[:, :, 8, 8], visible_mean)
    flat = torch.full([1, 3, 16, 16], 0.3)
    torch.testing.assert_close(Downsample(4).baseline(Downsample(4).degrade(flat)), flat)
    noisy = AddNoise(0.2).simulate(flat.expand(3, -1, -1, -1))
    blurred = AddNoise(0.2).baseline(noisy)
    assert (blurred - flat).square().mean() < 0.5 * (noisy - flat).square().mean()


@pytest.mark.parametrize("name", ["mask", "downsample", "grayscale"])
def test_keeping_the_observation_makes_the_restoration_explain_it_exactly(name):
    d = every_degradation()[name]
    truth, restored = 0.5 * images(), 0.5 * images(seed=1)  # away from the clamp at +-1
    observed = d.degrade(truth)
    kept = d.keep_observed(restored, observed)
    torch.testing.assert_close(d.degrade(kept), d.project(observed))
    assert (kept - restored).abs().max() > 0.01
    assert torch.equal(AddNoise(0.1).keep_observed(restored, observed), restored)  # noise says nothing exactly


def test_bad_sizes_and_parameters_are_refused_with_their_names():
    with pytest.raises(ValueError, match="Downsample factor"):
        Downsample(1.5)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        AddNoise(0)
    with pytest.raises(ValueError, match=r"Downsample\(3\) needs images whose size divides by 3"):
        Downsample(3).check(1, (3, 16, 16))
    with pytest.raises(ValueError, match="shape \\[3, 3, 16, 16\\] or \\[3, 1, 16, 16\\]"):
        Mask(torch.ones(2, 1, 16, 16)).check(3, (3, 16, 16))


def test_each_task_names_its_degradation():
    configs = {task: task_config(task, mask_source=CenterBox(0.4), factor=4, sigma=0.2) for task in TASKS}
    assert configs == {"inpaint": {"kind": "mask", "source": {"kind": "center-box", "area": 0.4}},
                       "super-resolution": {"kind": "downsample", "factor": 4},
                       "colorize": {"kind": "grayscale"},
                       "denoise": {"kind": "add-noise", "sigma": 0.2, "blur_sigma": 1.0}}
    with pytest.raises(ValueError, match="needs masks"):
        task_config("inpaint")
    with pytest.raises(ValueError, match="unknown restoration task 'deblur'"):
        task_config("deblur")


# --- inversion through a degradation -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(every_degradation()))
def test_inversion_through_each_degradation_lowers_the_loss_in_observed_space(inversion_G, inversion_targets, name):
    G, targets = inversion_G, inversion_targets
    d = every_degradation()[name]
    observed = d.simulate(targets, seed=[1, 2, 3])
    start = invert(G, observed, degradation=d, num_steps=1, **FAST)  # step 0 has learning rate 0
    end = invert(G, observed, degradation=d, num_steps=40, **FAST)
    assert end.images.shape == targets.shape  # the restored image, at full size
    assert (end.losses < 0.8 * start.losses).all(), (start.losses, end.losses)
    torch.testing.assert_close(end.losses, (d.degraded_view(end.images) - d.observed_view(observed))
                               .square().mean(dim=(1, 2, 3)), rtol=1e-4, atol=1e-6)


def test_mask_argument_is_the_mask_degradation(inversion_G, inversion_targets):
    G, targets = inversion_G, inversion_targets
    mask = CenterBox(0.25).masks(IDS, 16)
    by_argument = invert(G, targets, mask=mask, num_steps=10, **FAST)
    by_object = invert(G, targets, degradation=Mask(mask), num_steps=10, **FAST)
    assert torch.equal(by_argument.ws, by_object.ws)
    both = invert(G, Downsample(2).degrade(targets), mask=mask, degradation=Downsample(2), num_steps=2, **FAST)
    assert both.images.shape == targets.shape


def test_observation_of_the_wrong_size_names_the_degradation(inversion_G, inversion_targets):
    with pytest.raises(ValueError, match=r"target must be a float tensor \[N, 3, 4, 4\] \(the generator's images "
                                         r"through Downsample\(factor=4\)\)"):
        invert(inversion_G, inversion_targets, degradation=Downsample(4), num_steps=1, **FAST)


class RecordingEncoder(nn.Module):
    """Returns w_avg in every layer and remembers what it was shown."""

    def __init__(self, G):
        super().__init__()
        self.register_buffer("w_avg", G.mapping.w_avg.clone())
        self.num_ws, self.seen = G.num_ws, []

    def forward(self, x):
        self.seen.append(x.clone())
        return self.w_avg.expand(x.shape[0], self.num_ws, -1)


def test_hybrid_encodes_the_plain_restoration_of_the_observation(inversion_G, inversion_targets):
    G, targets = inversion_G, inversion_targets
    E, d = RecordingEncoder(G), Downsample(4)
    observed = d.degrade(targets)
    result = hybrid(G, E, observed, degradation=d, num_steps=2, **FAST)
    torch.testing.assert_close(E.seen[0], d.baseline(observed))
    assert result.images.shape == targets.shape
