"""The CPU inversion step's shortcuts (`layers.frozen_derived`, clamps skipped when in range) change no bit of any
result, and never serve a value derived from weights that have changed since."""

import pytest
import torch

from conftest import make_tiny_generator
from ganinv.generators import layers
from ganinv.generators.layers import bias_act, frozen_derived
from ganinv.inversion import invert


def _energy_counting(calls: list):
    def energy(w: torch.Tensor) -> torch.Tensor:
        calls.append(w)
        return w.square().sum(dim=[2, 3])
    return energy


def test_a_frozen_derivation_is_reused_until_the_weight_changes_in_place_or_is_replaced():
    w, calls = torch.randn(4, 3, 3, 3), []
    energy = _energy_counting(calls)
    first = frozen_derived(w, "energy", energy)
    assert frozen_derived(w, "energy", energy) is first and len(calls) == 1
    with torch.no_grad():
        w.mul_(2)  # what load_state_dict and optimiser steps do
    assert torch.equal(frozen_derived(w, "energy", energy), w.square().sum(dim=[2, 3])) and len(calls) == 2
    w.data = torch.randn(4, 3, 3, 3)  # no version bump: the data pointer tells
    assert torch.equal(frozen_derived(w, "energy", energy), w.square().sum(dim=[2, 3])) and len(calls) == 3


def test_a_weight_that_trains_or_inference_mode_is_derived_at_every_call():
    w, calls = torch.nn.Parameter(torch.randn(4, 3, 3, 3)), []
    energy = _energy_counting(calls)
    assert frozen_derived(w, "energy", energy).requires_grad  # the gradient reaches the weight
    frozen_derived(w, "energy", energy)
    frozen = torch.randn(4, 3, 3, 3)
    with torch.inference_mode():
        frozen_derived(frozen, "energy", energy)
    frozen_derived(frozen, "energy", energy)  # not the inference tensor, which a backward could not save
    assert len(calls) == 4


def test_a_generator_renders_its_new_weights_after_load_state_dict():
    G, other = make_tiny_generator(seed=0), make_tiny_generator(seed=1)
    ws = torch.randn(2, G.num_ws, G.w_dim, requires_grad=True)  # grad on: the inversion path, derivations kept
    G.synthesis(ws, fused_modconv=False).sum().backward()
    G.load_state_dict(other.state_dict())
    assert torch.equal(G.synthesis(ws, fused_modconv=False), other.synthesis(ws, fused_modconv=False))


@pytest.mark.parametrize("scale", [0.5, 3.0, float("nan")])
def test_a_skipped_clamp_gives_the_clamps_values_and_gradients(scale):
    x = torch.linspace(-1, 1, 64).reshape(1, 4, 4, 4) * scale
    b = torch.randn(4)
    outs, grads = [], []
    for within in (layers._within, lambda x, bound: False):  # the shortcut, and the clamp always applied
        layers_within, layers._within = layers._within, within
        try:
            xi = x.clone().requires_grad_(True)
            out = bias_act(xi, b, act="lrelu", clamp=2.0)
            out.backward(torch.arange(out.numel(), dtype=torch.float32).reshape(out.shape))
        finally:
            layers._within = layers_within
        outs.append(out.detach())
        grads.append(xi.grad)
    assert torch.equal(outs[0], outs[1]) or (scale != scale and torch.isnan(outs[0]).all())
    assert torch.equal(grads[0], grads[1])
    assert not (outs[0].abs() > 2.0).any()


def test_inversion_codes_are_bitwise_those_without_the_shortcuts(monkeypatch):
    G = make_tiny_generator(conv_clamp=1.0)  # a clamp that binds somewhere: both branches of the skip run
    target = G.synthesis(torch.randn(2, G.num_ws, G.w_dim) * 0.3, noise_mode="const").clamp(-1, 1)
    kwargs = dict(space="w+", num_steps=4, optimize_noise=False, loss="mse", w_avg_samples=64, seed=[3, 4])
    fast = invert(G, target, **kwargs)
    monkeypatch.setattr(layers, "frozen_derived", lambda weight, name, compute: compute(weight))
    monkeypatch.setattr(layers, "_within", lambda x, bound: False)
    slow = invert(G, target, **kwargs)
    assert torch.equal(fast.ws, slow.ws) and torch.equal(fast.images, slow.images)
