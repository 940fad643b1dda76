"""The batched optimization engine: per-image independence, determinism, spaces, masks, schedule, noise handling."""

import math

import numpy as np
import pytest
import torch

from conftest import generated_targets, make_tiny_family_generator
from ganinv.inversion import InversionConfig, invert, latent_noise_std, learning_rate
from ganinv.inversion.optimize import history_steps

FAST = dict(loss="mse", w_avg_samples=500, num_steps=30)


def trajectory_atol(G) -> float:
    """How far one image's trajectory alone and in a batch may differ. Batched kernels round differently (gradients
    agree to ~1e-5 relative) and Adam divides each coordinate's step by its own gradient scale, so small coordinates
    carry that rounding into the trajectory: for the tiny StyleGAN3 it grows to ~1e-3 in 20 steps. A real coupling
    between images moves them by the step size (0.1)."""
    return 1e-5 if G.family == "stylegan2" else 5e-3


@pytest.fixture(scope="module")
def G(family_generator):
    """Each family: the engine's contract holds for StyleGAN2 and StyleGAN3 alike."""
    return family_generator


@pytest.fixture(scope="module")
def targets(G):
    return generated_targets(G)


@pytest.mark.parametrize("space", ["z", "w", "w+"])
def test_image_follows_the_same_trajectory_alone_and_in_a_batch(G, targets, space):
    a, b = targets[:1], targets[1:2]
    cfg = dict(FAST, space=space, num_steps=20)
    together = invert(G, torch.cat([a, b]), seed=[11, 22], **cfg)
    alone_a = invert(G, a, seed=[11], **cfg)
    alone_b = invert(G, b, seed=[22], **cfg)
    atol = trajectory_atol(G)
    for i, alone in enumerate([alone_a, alone_b]):
        torch.testing.assert_close(together.ws[i:i + 1], alone.ws, rtol=1e-4, atol=atol)
        torch.testing.assert_close(together.history[:, i:i + 1], alone.history, rtol=1e-4, atol=atol)
        for buf_batch, buf_alone in zip(together.noise or [], alone.noise or []):
            torch.testing.assert_close(buf_batch[i:i + 1], buf_alone, rtol=1e-4, atol=1e-4)


def test_image_seed_changes_its_trajectory(G, targets):
    first = invert(G, targets[:1], seed=[11], **FAST)
    other = invert(G, targets[:1], seed=[12], **FAST)
    assert (first.ws - other.ws).abs().max() > 1e-3


def test_int_seed_gives_image_i_seed_plus_i(G, targets):
    batch = invert(G, targets[:2], seed=np.int64(5), **FAST)
    second_alone = invert(G, targets[1:2], seed=[6], **FAST)
    assert batch.seeds == [5, 6]
    torch.testing.assert_close(batch.ws[1:], second_alone.ws, rtol=1e-4, atol=trajectory_atol(G))


@pytest.mark.parametrize("space", ["z", "w", "w+"])
def test_same_inputs_give_bitwise_identical_results(G, targets, space):
    first = invert(G, targets, space=space, seed=3, **FAST)
    second = invert(G, targets, space=space, seed=3, **FAST)
    assert torch.equal(first.ws, second.ws) and torch.equal(first.history, second.history)
    assert all(torch.equal(x, y) for x, y in zip(first.noise or [], second.noise or []))


@pytest.mark.parametrize("space", ["z", "w", "w+"])
def test_each_space_lowers_every_images_loss(G, targets, space):
    start = invert(G, targets, space=space, **{**FAST, "num_steps": 1})  # step 0 has learning rate 0
    end = invert(G, targets, space=space, **{**FAST, "num_steps": 60})
    assert (end.losses < 0.8 * start.losses).all(), (start.losses, end.losses)


def test_w_space_uses_one_w_for_every_layer_and_w_plus_does_not(G, targets):
    w = invert(G, targets[:2], space="w", **FAST)
    w_plus = invert(G, targets[:2], space="w+", **FAST)
    assert w.ws.shape == w_plus.ws.shape == (2, G.num_ws, G.w_dim)
    assert torch.equal(w.ws, w.ws[:, :1].expand_as(w.ws))
    assert (w_plus.ws - w_plus.ws[:, :1]).abs().max() > 1e-4


def test_z_space_returns_z_whose_mapping_gives_ws(G, targets):
    result = invert(G, targets[:2], space="z", **FAST)
    assert result.z.shape == (2, G.z_dim)
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(result.z, None), result.ws)


def test_mask_makes_target_outside_it_irrelevant(G, targets):
    mask = torch.zeros_like(targets[:, :1])
    mask[..., :, :8] = 1
    scrambled = torch.where(mask.bool(), targets, torch.rand_like(targets) * 2 - 1)
    masked = invert(G, targets, mask=mask, **FAST)
    masked_scrambled = invert(G, scrambled, mask=mask, **FAST)
    unmasked = invert(G, targets, **FAST)
    assert torch.equal(masked.ws, masked_scrambled.ws)
    assert (masked.ws - unmasked.ws).abs().max() > 1e-4


def test_mask_with_image_channels_is_accepted_and_bad_masks_are_refused(G, targets):
    full = torch.ones_like(targets)
    invert(G, targets, mask=full, **{**FAST, "num_steps": 2})
    with pytest.raises(ValueError, match="mask must be 0/1"):
        invert(G, targets, mask=full * 0.5, **FAST)


def test_learning_rate_and_latent_noise_follow_the_projector_schedule():
    cfg = InversionConfig(num_steps=1000)
    assert learning_rate(0, cfg) == 0.0
    assert learning_rate(25, cfg) == pytest.approx(0.05)                 # linear ramp-up, half way
    assert learning_rate(500, cfg) == pytest.approx(0.1)                 # plateau
    assert learning_rate(875, cfg) == pytest.approx(0.05)                # cosine ramp-down, half way
    assert latent_noise_std(0, cfg, 2.0) == pytest.approx(2.0 * 0.05)
    assert latent_noise_std(375, cfg, 2.0) == pytest.approx(2.0 * 0.05 * 0.25)
    assert latent_noise_std(750, cfg, 2.0) == 0.0


def test_noise_maps_end_normalised_per_image(inversion_G, inversion_targets):
    G, targets = inversion_G, inversion_targets  # StyleGAN2: it has noise inputs
    result = invert(G, targets, **FAST)
    assert len(result.noise) == len(G.synthesis.noise_layers())
    for buf, layer in zip(result.noise, G.synthesis.noise_layers()):
        assert buf.shape == (3, 1, layer.resolution, layer.resolution)
        torch.testing.assert_close(buf.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(buf.square().mean(dim=(1, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)


def test_without_noise_optimisation_ws_alone_reproduce_the_result(G, targets):
    result = invert(G, targets, optimize_noise=False, **FAST)
    assert result.noise is None
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(result.ws, noise_mode="const"), result.images, rtol=1e-4, atol=1e-4)


def test_with_noise_optimisation_ws_and_noise_reproduce_the_result(G, targets):
    result = invert(G, targets, **FAST)
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(result.ws, noise=result.noise), result.images, rtol=1e-4, atol=1e-4)


def test_generator_without_noise_inputs_optimises_the_latent_alone():
    G = make_tiny_family_generator("stylegan3", seed=1)
    targets = generated_targets(G)
    config = InversionConfig(**FAST)
    assert config.optimize_noise and config.regularize_noise_weight > 0  # asked for, but there is nothing to optimise
    result = invert(G, targets, config, space="w+")
    assert result.noise is None and not G.has_noise_inputs
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(result.ws), result.images, rtol=1e-4, atol=1e-4)
    assert (result.losses < invert(G, targets, config, space="w+", num_steps=1).losses).all()


@pytest.mark.parametrize("space, shape", [("w+", "ws"), ("w", "w"), ("z", "z")])
def test_init_is_the_starting_point(G, targets, space, shape):
    n = targets.shape[0]
    init = {"ws": torch.randn(n, G.num_ws, G.w_dim), "w": torch.randn(n, G.w_dim), "z": torch.randn(n, G.z_dim)}[shape]
    result = invert(G, targets, space=space, init=init, **{**FAST, "num_steps": 1})
    expected = init.unsqueeze(1).expand(-1, G.num_ws, -1) if shape == "w" else init
    assert torch.equal(result.z if space == "z" else result.ws, expected)


def test_history_records_every_k_steps_and_the_last(G, targets):
    result = invert(G, targets, history_every=7, **FAST)
    assert result.history_steps == [0, 7, 14, 21, 28, 29] == history_steps(result.config)
    assert result.history.shape == (6, 3) and torch.isfinite(result.history).all()


def test_metrics_are_per_image(G, targets):
    result = invert(G, targets, **FAST)
    assert set(result.metrics) == {"mse", "psnr", "ssim"}
    assert all(v.shape == (3,) for v in result.metrics.values())


@pytest.mark.parametrize("bad, message", [
    (lambda t: t[:, :, :8], "target must be a float tensor"),
    (lambda t: t * 255, "target must be in"),
])
def test_bad_targets_are_refused_with_a_clear_message(G, targets, bad, message):
    with pytest.raises(ValueError, match=message):
        invert(G, bad(targets), **FAST)


def test_encoder_regularisation_without_init_is_refused(G, targets):
    with pytest.raises(ValueError, match="pass init"):
        invert(G, targets, regularize_encoder_weight=1.0, **FAST)


def test_config_round_trips_and_spells_losses_one_way():
    cfg = InversionConfig(space="w+", loss=["lpips-vgg", "0.10*mse"])
    assert cfg.loss == "lpips-vgg+0.1*mse"
    assert InversionConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="space must be one of"):
        InversionConfig(space="s")
    assert math.isclose(cfg.regularize_noise_weight, 1e5) and cfg.num_steps == 1000
