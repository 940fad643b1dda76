"""Our StyleGAN3 generator against outputs computed by the official code (tests/fixtures/stylegan3_tiny, T and R)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SG3_CONFIGS, load_sg3_tiny, make_tiny_sg3_generator, sg3_tiny_init_kwargs, \
    sg3_tiny_reference, sg3_tiny_state_dict
from ganinv.generators.stylegan3 import Generator, layer_schedule, user_transform

TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=SG3_CONFIGS)
def case(request):
    return request.param, load_sg3_tiny(request.param), sg3_tiny_reference(request.param)


def test_state_dict_keys_and_shapes_match_official(case):
    name, G, _ = case
    official = sg3_tiny_state_dict(name)
    assert list(G.state_dict()) == list(official)
    assert {k: tuple(v.shape) for k, v in G.state_dict().items()} == {k: tuple(v.shape) for k, v in official.items()}


def test_num_ws_and_architecture_match_official(case):
    name, G, ref = case
    assert G.num_ws == ref["ws"].shape[1] == G.init_kwargs["num_layers"] + 2
    assert G.architecture == {"t32": "stylegan3-t", "r32": "stylegan3-r"}[name]


@pytest.mark.parametrize("config", SG3_CONFIGS)
def test_fresh_constructor_designs_the_official_filters(config):
    fresh = Generator(**sg3_tiny_init_kwargs(config)).state_dict()
    official = sg3_tiny_state_dict(config)
    filters = [k for k in official if k.endswith(("up_filter", "down_filter"))]
    assert any(official[k].ndim == 2 for k in filters) == (config == "r32")  # R has radial (2D) down filters
    for key in filters:
        torch.testing.assert_close(fresh[key], official[key], atol=1e-7, rtol=0, msg=key)
    torch.testing.assert_close(fresh["synthesis.input.transform"], torch.eye(3))


@pytest.mark.parametrize("name, kwargs", [
    ("ws", {}), ("ws_psi0.7", dict(truncation_psi=0.7)), ("ws_psi0.5_cutoff4", dict(truncation_psi=0.5,
                                                                                     truncation_cutoff=4))])
def test_mapping_reproduces_official(case, name, kwargs):
    _, G, ref = case
    with torch.no_grad():
        ws = G.mapping(ref["z"], ref["c"], **kwargs)
    assert (ws - ref[name]).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("name, ws_name", [("img", "ws"), ("img_psi0.7", "ws_psi0.7"),
                                           ("img_ws_plus", "ws_plus")])
@pytest.mark.parametrize("fused", [True, False])
def test_synthesis_reproduces_official(case, name, ws_name, fused):
    _, G, ref = case
    with torch.no_grad():
        img = G.synthesis(ref[ws_name], fused_modconv=fused)
    assert (img - ref[name]).abs().max().item() <= TOLERANCE


def test_user_transform_reproduces_gen_images_transform_and_image(case):
    _, G, ref = case
    transform = user_transform(translate=(0.1, -0.05), rotate=10)  # what the fixture was rendered with
    torch.testing.assert_close(transform, ref["transform"], atol=1e-6, rtol=0)
    with torch.no_grad():
        img = G.synthesis(ref["ws"], transform=transform)
    assert (img - ref["img_transformed"]).abs().max().item() <= TOLERANCE


def test_transform_buffer_as_gen_images_writes_it_gives_the_same_image(case):
    name, _, ref = case
    G = load_sg3_tiny(name)  # a copy of our own: the buffer is written
    G.synthesis.input.transform.copy_(ref["transform"])
    with torch.no_grad():
        img = G.synthesis(ref["ws"])
    assert (img - ref["img_transformed"]).abs().max().item() <= TOLERANCE


def test_generator_forward_is_mapping_then_synthesis(case):
    _, G, ref = case
    with torch.no_grad():
        img = G(ref["z"], ref["c"], truncation_psi=0.7)
    assert (img - ref["img_psi0.7"]).abs().max().item() <= TOLERANCE


def test_1024_px_generator_has_the_layers_of_the_released_ffhq_pickles():
    # The layer names (size = sampling rate + 2 * margin 10, then the image size; channels = channel_base / 2 / fc,
    # capped at 512) in the state dicts of the released stylegan3-t-ffhq-1024x1024 pickle.
    with torch.device("meta"):
        G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3)
    assert G.synthesis.layer_names == [
        "L0_36_512", "L1_36_512", "L2_52_512", "L3_52_512", "L4_84_512", "L5_148_512", "L6_148_512", "L7_276_323",
        "L8_276_203", "L9_532_128", "L10_1044_81", "L11_1044_51", "L12_1044_32", "L13_1024_32", "L14_1024_3"]
    schedule = layer_schedule(1024, 3)
    assert schedule[0].cutoff == 2 and schedule[12].cutoff == schedule[14].cutoff == 512  # num_critical = 2


@pytest.mark.parametrize("radial", [False, True])
def test_image_does_not_depend_on_its_batch(radial):
    G = make_tiny_sg3_generator(radial=radial)
    ws = G.mapping(torch.randn(5, G.z_dim), None)
    with torch.no_grad():
        batch = G.synthesis(ws, fused_modconv=False)
        alone = torch.cat([G.synthesis(ws[i:i + 1], fused_modconv=False) for i in range(5)])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=0)


def test_channels_last_gives_the_same_image_in_that_layout():
    G = make_tiny_sg3_generator()
    ws = G.mapping(torch.randn(3, G.z_dim), None)
    with torch.no_grad():
        ref = G.synthesis(ws)
        nhwc = G.synthesis(ws, channels_last=True)
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(nhwc, ref, atol=1e-5, rtol=0)


def test_fp16_layers_run_in_fp32_on_cpu_like_force_fp32():
    G = Generator(**{**sg3_tiny_init_kwargs("t32"), "num_fp16_res": 4})
    G.load_state_dict(sg3_tiny_state_dict("t32"))
    G.eval()
    assert any(layer.use_fp16 for layer in G.synthesis.layers())
    ws = sg3_tiny_reference("t32")["ws"]
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws), G.synthesis(ws, force_fp32=True))


def test_noise_mode_is_accepted_and_ignored_noise_inputs_are_refused():
    G = make_tiny_sg3_generator()
    ws = G.mapping(torch.randn(2, G.z_dim), None)
    with torch.no_grad():
        images = [G.synthesis(ws, noise_mode=mode) for mode in ("const", "random", "none")]
    assert torch.equal(images[0], images[1]) and torch.equal(images[0], images[2])
    assert G.synthesis.noise_layers() == [] and not G.has_noise_inputs
    with pytest.raises(ValueError, match="no noise inputs"):
        G.synthesis(ws, noise=[torch.zeros(2, 1, 4, 4)])
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="sometimes")


def test_integer_translation_of_the_input_grid_shifts_the_image_of_a_translation_equivariant_layer():
    # Config T is translation-equivariant (Sec. 3.2): a translation by whole input samples moves the image by
    # whole pixels. The tiny net's equivariance is approximate (filters are short), so compare inside the frame.
    G = load_sg3_tiny("t32")
    ws = sg3_tiny_reference("t32")["ws"][:2]
    shift_px = 4
    translate = (shift_px / G.img_resolution, 0.0)
    with torch.no_grad():
        ref = G.synthesis(ws)
        moved = G.synthesis(ws, transform=user_transform(translate=translate))
    inner = (moved[..., :, 8:-8] - ref[..., :, 8 - shift_px:-8 - shift_px]).abs().mean()
    unrelated = (moved[..., :, 8:-8] - ref[..., :, 8:-8]).abs().mean()
    assert inner < 0.25 * unrelated, (inner.item(), unrelated.item())


def test_style_layers_are_the_modulated_convolutions_by_ws_row():
    G = make_tiny_sg3_generator()
    rows = G.synthesis.style_layers()
    assert sorted(rows) == list(range(1, G.num_ws - 1))  # row 0: input geometry; last row: ToRGB
    assert all(rows[k] is layer for k, layer in zip(range(1, G.num_ws - 1), G.synthesis.layers()[:-1]))


def test_ws_resolutions_rise_from_4_px_to_the_image_resolution():
    res = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=1024, img_channels=3, channel_base=64,
                    channel_max=8).ws_resolutions
    assert len(res) == 16 and res[0] == 4 and res[-1] == 1024
    assert res == sorted(res)
    assert np.all(np.log2(res) == np.round(np.log2(res)))
