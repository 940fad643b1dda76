"""Refinement: more steps for stored codes, continuing the schedule and the random streams of the run that made them."""

import dataclasses

import pytest
import torch

from ganinv.inversion import InversionConfig, continued_config, invert, refine
from test_inversion_hybrid import world  # noqa: F401 - the fixture: a tiny generator, 3 reachable W+ targets

SEEDS = [11, 12, 13]
FAST = dict(loss="mse", w_avg_samples=500, optimize_noise=False)


def test_continuing_resumes_the_longer_schedule_and_the_same_noise_draws(world):
    """With a learning rate of 0 the latent stays put, so each step's objective depends only on the step's latent
    noise (its std from the schedule, its draw from the image's stream): the refinement's steps S..T-1 must see
    exactly what steps S..T-1 of the one-go run saw."""
    G, targets = world[:2]
    config = InversionConfig(space="w+", num_steps=12, initial_learning_rate=0.0, initial_noise_factor=0.5,
                             noise_ramp_length=1.0, history_every=1, **FAST)
    start = G.mapping(torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(1)), None)
    refined = refine(G, targets, start, config, more_steps=8, seed=SEEDS)
    one_go = invert(G, targets, continued_config(config, 8), init=start, seed=SEEDS)
    assert refined.history_steps == list(range(12, 20)) and refined.config.num_steps == 20
    assert torch.equal(refined.history, one_go.history[12:])


@pytest.mark.parametrize("space", ["w", "w+"])
def test_s_plus_s_steps_are_no_worse_than_2s_in_one_go(world, space):
    """The refinement goal (issue 23): within 1 % of the one-go run's reconstruction. Restarting Adam's moments may
    land better (a second ramp-down); it must not land worse."""
    G, targets = world[:2]
    config = InversionConfig(space=space, num_steps=20, **FAST)
    first = invert(G, targets, config, seed=SEEDS)
    refined = refine(G, targets, first.ws, config, more_steps=20, seed=SEEDS)
    one_go = invert(G, targets, continued_config(config, 20), seed=SEEDS)
    assert refined.metrics["psnr"].mean() >= 0.99 * one_go.metrics["psnr"].mean()
    assert refined.metrics["ssim"].mean() >= 0.99 * one_go.metrics["ssim"].mean()
    assert (refined.losses < first.losses).all()  # the extra steps helped every image


def test_refinement_is_deterministic_and_independent_of_the_batch(world):
    G, targets = world[:2]
    config = InversionConfig(space="w+", num_steps=10, **FAST)
    first = invert(G, targets, config, seed=SEEDS)
    again = [refine(G, targets, first.ws, config, more_steps=10, seed=SEEDS) for _ in range(2)]
    assert torch.equal(again[0].ws, again[1].ws)
    alone = refine(G, targets[1:2], first.ws[1:2], config, more_steps=10, seed=SEEDS[1:2])
    assert torch.allclose(alone.ws, again[0].ws[1:2], atol=1e-4)


def test_a_run_that_optimised_noise_maps_continues_only_with_them(world):
    G, targets = world[:2]
    if not G.has_noise_inputs:
        pytest.skip("this generator family has no noise inputs (StyleGAN3)")
    config = InversionConfig(space="w", num_steps=6, **{**FAST, "optimize_noise": True})
    first = invert(G, targets, config, seed=SEEDS)
    with pytest.raises(ValueError, match="noise maps"):
        refine(G, targets, first.ws, config, more_steps=4, seed=SEEDS)
    refined = refine(G, targets, first.ws, config, more_steps=4, seed=SEEDS, noise=first.noise)
    assert refined.noise is not None and (refined.losses < first.losses).all()
    with pytest.raises(ValueError, match="W or W\\+"):
        refine(G, targets, first.ws, dataclasses.replace(config, space="z"), more_steps=4, seed=SEEDS)


def test_hybrids_in_domain_term_keeps_its_anchor_through_refinement(world):
    G, targets = world[:2]
    anchor = G.mapping(torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(2)), None)
    config = InversionConfig(space="w+", num_steps=10, regularize_encoder_weight=1e4, **FAST)
    codes = anchor + 0.5 * torch.randn(anchor.shape, generator=torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match="anchor_ws"):
        refine(G, targets, codes, config, more_steps=10, seed=SEEDS)
    refined = refine(G, targets, codes, config, more_steps=10, seed=SEEDS, anchor_ws=anchor)
    distance = lambda ws, ref: (ws - ref).square().mean().item()  # noqa: E731
    assert distance(refined.ws, anchor) < 0.5 * distance(codes, anchor)  # pulled to the encoder's output
