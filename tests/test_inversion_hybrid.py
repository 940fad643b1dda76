"""Encoder inversion and hybrid inversion (encoder output as the starting point, optional in-domain term)."""

import pytest
import torch
from torch import nn

from conftest import FAMILIES, make_tiny_family_generator
from ganinv.inversion import encode, hybrid, invert

FAST = dict(loss="mse", w_avg_samples=500)


class NoisyOracleEncoder(nn.Module):
    """Maps the known targets to their true ws plus a fixed error: a stand-in for a trained encoder."""

    def __init__(self, targets, ws, error=0.3):
        super().__init__()
        self.register_buffer("targets", targets)
        self.register_buffer("ws", ws + error * torch.randn(ws.shape, generator=torch.Generator().manual_seed(9)))
        self.scale = nn.Parameter(torch.ones([]))

    def forward(self, images):
        index = (images[:, None] - self.targets[None]).flatten(2).abs().sum(-1).argmin(1)
        return self.ws[index] * self.scale


def tame_generator(family, seed):
    """A tiny random generator whose images mostly stay inside [-1, 1], so generated targets are reachable."""
    G = make_tiny_family_generator(family, seed=seed)
    torgb_layers = [block.torgb for block in G.synthesis.blocks()] if family == "stylegan2" \
        else G.synthesis.layers()[-1:]
    with torch.no_grad():
        for layer in torgb_layers:
            layer.weight.mul_(0.2)
            layer.bias.mul_(0.2)
    return G


@pytest.fixture(scope="module", params=FAMILIES)
def world(request):
    G = tame_generator(request.param, seed=4)
    with torch.no_grad():
        ws = G.mapping(torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(5)), None)
        ws = ws + 0.3 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(6))  # a W+ target
        targets = G.synthesis(ws)
    assert targets.abs().max() <= 1, "the test world's targets should not need clamping"
    return G, targets, ws, NoisyOracleEncoder(targets, ws)


def test_encode_returns_the_encoders_ws(world):
    G, targets, ws, E = world
    assert torch.equal(encode(E, targets), E(targets))


def test_encode_refuses_encoders_that_do_not_return_ws():
    with pytest.raises(ValueError, match="num_ws, w_dim"):
        encode(nn.Flatten(), torch.zeros(2, 3, 4, 4))


def test_hybrid_starts_at_the_encoders_output(world):
    G, targets, ws, E = world
    result = hybrid(G, E, targets, num_steps=1, **FAST)  # step 0 has learning rate 0
    assert torch.equal(result.ws, E(targets)) and torch.equal(result.init_ws, E(targets))
    assert result.config.space == "w+"


def test_hybrid_beats_optimisation_from_w_avg_at_equal_steps(world):
    G, targets, ws, E = world
    from_encoder = hybrid(G, E, targets, num_steps=30, **FAST)
    from_w_avg = invert(G, targets, space="w+", num_steps=30, **FAST)
    assert (from_encoder.losses < from_w_avg.losses).all(), (from_encoder.losses, from_w_avg.losses)


def test_in_domain_term_keeps_ws_near_the_encoders_output(world):
    G, targets, ws, E = world
    free = hybrid(G, E, targets, num_steps=30, **FAST)
    anchored = hybrid(G, E, targets, num_steps=30, regularize_encoder_weight=100.0, **FAST)
    distance = lambda r: (r.ws - r.init_ws).square().mean(dim=(1, 2))  # noqa: E731
    assert (distance(anchored) < 0.5 * distance(free)).all()
