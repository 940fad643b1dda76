"""The `StyleGenerator` contract that inversion, directions and edits rely on, checked for every implementation:
StyleGAN2 and StyleGAN3 (configs T and R)."""

from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_generator, make_tiny_sg3_generator
from ganinv.generators import GENERATOR_CLASSES, StyleGenerator, generator_identity, load_generator_and_identity, \
    read_generator_metadata, save_generator
from ganinv.utils.precision import autocast

MAKERS = {
    "stylegan2": lambda: make_tiny_generator(seed=3),
    "stylegan3-t": lambda: make_tiny_sg3_generator(seed=3),
    "stylegan3-r": lambda: make_tiny_sg3_generator(seed=3, radial=True),
}


@pytest.fixture(scope="module", params=list(MAKERS))
def G(request):
    G = MAKERS[request.param]()
    assert G.architecture == request.param
    return G


@pytest.fixture(scope="module")
def ws(G):
    return G.mapping(torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(0)), None)


def test_is_a_style_generator_registered_under_its_family(G):
    assert isinstance(G, StyleGenerator)
    assert GENERATOR_CLASSES[G.family] is type(G)


def test_mapping_gives_num_ws_rows_and_truncation_zero_gives_w_avg(G, ws):
    assert ws.shape == (3, G.num_ws, G.w_dim)
    truncated = G.mapping(torch.randn(2, G.z_dim), None, truncation_psi=0)
    torch.testing.assert_close(truncated, G.w_avg.expand(2, G.num_ws, -1))
    assert torch.equal(G.w_avg, G.mapping.w_avg)


def test_synthesis_takes_every_option_downstream_code_passes(G, ws):
    with torch.no_grad():
        reference = G.synthesis(ws)
        variants = [G.synthesis(ws, noise_mode="const", fused_modconv=False, noise=None, force_fp32=True),
                    G.synthesis(ws, noise_mode="const", channels_last=True)]
    assert reference.shape == (3, G.img_channels, G.img_resolution, G.img_resolution)
    for image in variants:
        torch.testing.assert_close(image, reference, atol=1e-5, rtol=0)


def test_bf16_autocast_synthesis_stays_close_to_fp32(G, ws):
    with torch.no_grad():
        reference = G.synthesis(ws, fused_modconv=False)
        with autocast("bf16", "cpu"):
            bf16 = G.synthesis(ws, fused_modconv=False, force_fp32=True)
    assert bf16.dtype == torch.float32
    assert (bf16 - reference).abs().mean() < 0.02 * reference.abs().mean()


def test_each_image_depends_only_on_its_own_ws(G, ws):
    with torch.no_grad():
        batch = G.synthesis(ws, fused_modconv=False)
        alone = torch.cat([G.synthesis(ws[i:i + 1], fused_modconv=False) for i in range(len(ws))])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=0)


def test_ws_resolutions_describe_every_row(G):
    res = G.ws_resolutions
    assert len(res) == G.num_ws and res == sorted(res) and res[-1] == G.img_resolution and res[0] >= 4


def test_style_layers_read_their_ws_row_through_an_affine_of_w(G, ws):
    rows = G.synthesis.style_layers()
    assert rows and all(0 <= k < G.num_ws - 1 for k in rows)
    for k, layer in rows.items():
        assert layer.affine.weight.shape[1] == G.w_dim
        bumped = ws.clone()
        bumped[:, k] += 1.0
        with torch.no_grad():
            assert not torch.allclose(G.synthesis(bumped), G.synthesis(ws))  # the row changes the image


def test_noise_capability_matches_the_noise_layers(G):
    assert G.has_noise_inputs == (G.family == "stylegan2") == bool(G.synthesis.noise_layers())


def test_w_stats_are_deterministic_for_a_seed(G):
    w_avg, w_std = G.w_stats(200, seed=5, batch_size=64)
    again = G.w_stats(200, seed=5, batch_size=200)
    assert w_avg.shape == (G.w_dim,) and w_std > 0
    torch.testing.assert_close(again[0], w_avg, atol=1e-5, rtol=0)


def test_native_file_round_trip_keeps_family_identity_and_images(G, ws, tmp_path):
    path = save_generator(G, tmp_path / "g.safetensors")
    loaded, identity = load_generator_and_identity(path)
    assert type(loaded) is type(G) and identity == generator_identity(G)
    assert read_generator_metadata(path)["family"] == G.family
    with torch.no_grad():
        assert torch.equal(loaded.synthesis(ws), G.synthesis(ws))
