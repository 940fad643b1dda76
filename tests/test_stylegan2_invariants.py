"""What the official fixture does not cover, checked against the generator's own invariants (StyleGAN2 paper,
StyleGAN2-ADA code conventions): conditioning, clamping, mapping depths, resolutions, noise, truncation, w_avg, fp16."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import make_tiny_generator
from ganinv.generators import Generator, generator_identity, load_generator, save_generator
from ganinv.generators.layers import modulated_conv2d, setup_filter

TOLERANCE = 1e-5


def _z(G: Generator, n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ conditioning

def test_conditional_generator_embeds_c_and_different_c_give_different_w():
    G = make_tiny_generator(c_dim=5)
    assert G.mapping.embed.weight.shape == (G.w_dim, 5)  # embed_features defaults to w_dim
    assert G.mapping.fc0.weight.shape[1] == G.z_dim + G.w_dim  # fc0 sees [normalize(z), normalize(embed(c))]
    z = _z(G, 1).repeat(5, 1)
    with torch.no_grad():
        ws = G.mapping(z, torch.eye(5))
        again = G.mapping(z, torch.eye(5))
    assert torch.equal(ws, again)
    distances = torch.cdist(ws[:, 0], ws[:, 0])
    assert (distances + torch.eye(5)).min() > 1e-3  # every pair of classes differs


def test_conditional_generator_survives_save_and_load(tmp_path):
    G = make_tiny_generator(c_dim=3)
    loaded = load_generator(save_generator(G, tmp_path / "cond.safetensors"))
    z, c = _z(G), torch.eye(3)
    with torch.no_grad():
        assert torch.equal(loaded(z, c), G(z, c))
    assert generator_identity(loaded) == generator_identity(G)


def test_unconditional_generator_has_no_embed_layer():
    assert not hasattr(make_tiny_generator(c_dim=0).mapping, "embed")


# ----------------------------------------------------------------------------------------------------- clamping

def test_conv_clamp_bounds_every_torgb_output_and_none_disables_it():
    clamp = 0.05
    unclamped = make_tiny_generator(conv_clamp=None)
    clamped = make_tiny_generator(conv_clamp=clamp)
    clamped.load_state_dict(unclamped.state_dict())
    ws = unclamped.mapping(_z(unclamped), None)
    with torch.no_grad():
        img_none, img_clamped = unclamped.synthesis(ws), clamped.synthesis(ws)
    # img = sum over blocks of upsampled toRGB outputs, each in [-clamp, clamp]; the [1,3,3,1] upsampling is convex.
    num_blocks = len(clamped.synthesis.block_resolutions)
    assert img_clamped.abs().max() <= num_blocks * clamp + 1e-6
    assert img_none.abs().max() > num_blocks * clamp
    assert unclamped.init_kwargs["synthesis_kwargs"]["conv_clamp"] is None


# ------------------------------------------------------------------------------------- mapping depth, resolution

@pytest.mark.parametrize("num_layers", [1, 8])
def test_mapping_depth_sets_number_of_layers_and_survives_save_and_load(tmp_path, num_layers):
    G = make_tiny_generator(mapping_layers=num_layers)
    assert [name for name, _ in G.mapping.named_children()] == [f"fc{i}" for i in range(num_layers)]
    loaded = load_generator(save_generator(G, tmp_path / "g.safetensors"))
    z = _z(G)
    with torch.no_grad():
        ws = loaded.mapping(z, None)
        assert torch.equal(ws, G.mapping(z, None))
    assert ws.shape == (3, G.num_ws, G.w_dim)


@pytest.mark.parametrize("resolution", [8, 64, 128])
def test_resolution_sets_blocks_num_ws_and_image_size(resolution):
    G = make_tiny_generator(resolution=resolution, channel_base=128, channel_max=8)
    log2 = int(math.log2(resolution))
    assert G.synthesis.block_resolutions == [2 ** i for i in range(2, log2 + 1)]
    assert G.num_ws == 2 * log2 - 2  # two convs per block (one at 4x4) + the last toRGB
    assert len(G.synthesis.noise_layers()) == 2 * log2 - 3
    with torch.no_grad():
        img = G(_z(G, 2), None)
    assert img.shape == (2, 3, resolution, resolution)
    assert torch.isfinite(img).all() and img.std() > 0


@pytest.mark.parametrize("resolution", [2, 12, 48])
def test_resolution_that_is_not_a_power_of_two_from_4_is_refused(resolution):
    with pytest.raises(ValueError, match="power of two"):
        make_tiny_generator(resolution=resolution)


# -------------------------------------------------------------------------------------- fused modconv, noise

@pytest.mark.parametrize("resolution, batch", [(8, 1), (16, 3), (64, 2)])
def test_fused_and_unfused_modulated_convolutions_agree(resolution, batch):
    G = make_tiny_generator(resolution=resolution, channel_base=128, channel_max=8)
    ws = torch.randn(batch, G.num_ws, G.w_dim)  # W+: a different w per layer
    with torch.no_grad():
        fused = G.synthesis(ws, fused_modconv=True)
        unfused = G.synthesis(ws, fused_modconv=False)
    assert (fused - unfused).abs().max() <= TOLERANCE


def test_noise_mode_random_differs_per_call_while_const_and_none_are_deterministic():
    G = make_tiny_generator()
    ws = G.mapping(_z(G), None)
    with torch.no_grad():
        random1, random2 = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
        const1, const2 = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
        none1, none2 = G.synthesis(ws, noise_mode="none"), G.synthesis(ws, noise_mode="none")
    assert not torch.equal(random1, random2)
    assert torch.equal(const1, const2) and torch.equal(none1, none2)
    assert not torch.equal(const1, none1)  # noise strengths are non-zero, so noise matters


def test_explicit_zero_noise_equals_noise_mode_none_and_const_buffers_equal_const():
    G = make_tiny_generator()
    ws = G.mapping(_z(G), None)
    layers = G.synthesis.noise_layers()
    zeros = [torch.zeros(3, 1, layer.resolution, layer.resolution) for layer in layers]
    consts = [layer.noise_const.expand(3, 1, -1, -1) for layer in layers]
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws, noise=zeros), G.synthesis(ws, noise_mode="none"))
        assert (G.synthesis(ws, noise=consts) - G.synthesis(ws, noise_mode="const")).abs().max() <= TOLERANCE


def test_unknown_noise_mode_is_refused():
    G = make_tiny_generator()
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(G.mapping(_z(G), None), noise_mode="loud")


# ------------------------------------------------------------------------------------------- truncation, w_avg

def test_truncation_psi_zero_gives_w_avg_in_every_layer():
    G = make_tiny_generator()
    with torch.no_grad():
        ws = G.mapping(_z(G), None, truncation_psi=0)
    assert torch.allclose(ws, G.mapping.w_avg.expand_as(ws), atol=1e-6)


def test_truncation_cutoff_truncates_only_the_first_layers():
    G = make_tiny_generator()
    z = _z(G)
    with torch.no_grad():
        full = G.mapping(z, None)
        cut = G.mapping(z, None, truncation_psi=0, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], G.mapping.w_avg.expand(3, 2, -1), atol=1e-6)
    assert torch.equal(cut[:, 2:], full[:, 2:])


def test_w_avg_tracks_the_moving_average_in_train_mode_only():
    G = make_tiny_generator()
    beta = G.mapping.w_avg_beta
    z = _z(G, 8)
    w_avg = G.mapping.w_avg.clone()
    with torch.no_grad():
        G.mapping(z, None)  # eval: no update
        assert torch.equal(G.mapping.w_avg, w_avg)
        G.mapping.train()
        w = G.mapping(z, None)[:, 0]
        expected = w.mean(0).lerp(w_avg, beta)  # w_avg <- beta * w_avg + (1 - beta) * mean(w)
        assert torch.allclose(G.mapping.w_avg, expected, atol=1e-7)
        G.mapping(z, None, skip_w_avg_update=True)
        assert torch.allclose(G.mapping.w_avg, expected, atol=1e-7)


# -------------------------------------------------------------------------------------------- architectures

@pytest.mark.parametrize("architecture", ["orig", "resnet"])
def test_unsupported_architecture_gets_clear_error(architecture):
    with pytest.raises(ValueError, match=f"{architecture}.*not supported.*skip"):
        Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                  synthesis_kwargs=dict(channel_base=64, channel_max=8, architecture=architecture))


# ------------------------------------------------------------------------------------------------------ fp16

def test_fp16_blocks_run_in_fp32_on_cpu_like_force_fp32():
    fp32 = make_tiny_generator()
    fp16 = Generator(**{**fp32.init_kwargs,
                        "synthesis_kwargs": {**fp32.init_kwargs["synthesis_kwargs"], "num_fp16_res": 2}})
    fp16.load_state_dict(fp32.state_dict())
    fp16.eval()
    assert [b.use_fp16 for b in fp16.synthesis.blocks()] == [False, True, True]  # the top two resolutions
    ws = fp32.mapping(_z(fp32), None)
    with torch.no_grad():
        out = fp16.synthesis(ws)
        assert out.dtype == torch.float32
        assert torch.equal(out, fp16.synthesis(ws, force_fp32=True))
        assert torch.equal(out, fp32.synthesis(ws))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up", [1, 2])
def test_fp16_modulated_conv_stays_close_to_fp32(fused, up):
    # The fp16 branch pre-normalises weight and styles to avoid overflow; demodulation must undo it exactly.
    gen = torch.Generator().manual_seed(0)
    x, weight = torch.randn(2, 8, 8, 8, generator=gen), torch.randn(16, 8, 3, 3, generator=gen)
    styles = 30 * torch.randn(2, 8, generator=gen)  # large styles: would overflow fp16 without the pre-normalisation
    kwargs = dict(padding=1, up=up, resample_filter=setup_filter(), fused_modconv=fused)
    ref = modulated_conv2d(x, weight, styles, **kwargs)
    half = modulated_conv2d(x.half(), weight, styles, **kwargs)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert ((half.float() - ref).norm() / ref.norm()).item() < 5e-3
