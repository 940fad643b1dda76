"""Edits along directions, interpolation, style mixing and the coarse/middle/fine layer split."""

import json

import numpy as np
import pytest
import torch

from conftest import make_tiny_generator
from ganinv import edit
from ganinv.directions import Direction
from ganinv.generators import StyleGAN3Generator


def unit(v):
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("resolution", [4, 16, 64])
def test_ws_resolutions_match_the_generators_conv_layers(resolution):
    G = make_tiny_generator(resolution=resolution, channel_max=4)
    resolutions = edit.ws_resolutions(G.num_ws)
    assert len(resolutions) == G.num_ws
    assert resolutions[:-1] == [layer.resolution for layer in G.synthesis.noise_layers()]
    assert resolutions[-1] == G.img_resolution


@pytest.mark.parametrize("num_ws, expected", [
    (18, dict(coarse=(0, 1, 2), middle=(3, 4, 5, 6), fine=tuple(range(7, 18)))),  # 1024 px
    (10, dict(coarse=(0, 1, 2), middle=(3, 4, 5, 6), fine=(7, 8, 9))),  # 64 px (faces64)
    (6, dict(coarse=(0, 1, 2), middle=(3, 4, 5), fine=())),  # 16 px
])
def test_layer_ranges_split_by_resolution(num_ws, expected):
    assert edit.layer_ranges(num_ws) == expected


def test_layer_names_and_indices_resolve():
    assert edit.resolve_layers(None, 6) == edit.resolve_layers("all", 6) == tuple(range(6))
    assert edit.resolve_layers([4, 1, 1], 6) == (1, 4)
    with pytest.raises(ValueError, match="no 'fine' layers"):
        edit.resolve_layers("fine", 6)
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        edit.resolve_layers([6], 6)
    with pytest.raises(ValueError, match="coarse"):
        edit.resolve_layers("hair", 6)
    with pytest.raises(ValueError, match="even"):
        edit.ws_resolutions(7)


def test_stylegan2_generator_reports_the_rows_ws_resolutions_assumes():
    G = make_tiny_generator(resolution=64, channel_max=4)
    assert G.ws_resolutions == edit.ws_resolutions(G.num_ws)


def test_stylegan3_named_ranges_follow_the_generators_band_limits():
    # 1024 px, 14 layers: each row's band limit 2 fc grows from 4 px (input, L0) to 1024 px; rounded to powers of two
    # the module doc's split follows. (Without `resolutions`, the StyleGAN2 rule for 16 rows would assume 512 px.)
    G = StyleGAN3Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=1024, img_channels=3, channel_base=64,
                           channel_max=8)
    res = G.ws_resolutions
    assert edit.layer_ranges(G.num_ws, res) == dict(coarse=(0, 1, 2, 3), middle=(4, 5, 6), fine=tuple(range(7, 16)))
    ws, v = torch.zeros(2, G.num_ws, 8), torch.ones(8)
    edited = edit.apply(ws, v, 1.0, layers="middle", resolutions=res)
    assert edited[0, :, 0].tolist() == [0.0] * 4 + [1.0] * 3 + [0.0] * 9
    mixed = edit.style_mix(ws, torch.ones_like(ws), "coarse", resolutions=res)
    assert mixed[0, :, 0].tolist() == [1.0] * 4 + [0.0] * 12
    with pytest.raises(ValueError, match="one resolution per ws row"):
        edit.resolve_layers("coarse", G.num_ws, res[:-1])


def test_apply_on_w_codes_adds_strength_times_direction():
    ws = torch.randn(4, 8)
    v = torch.from_numpy(unit(np.random.default_rng(0).normal(size=8)).astype(np.float32))
    torch.testing.assert_close(edit.apply(ws, v, 2.5), ws + 2.5 * v)
    many = edit.apply(ws, v[None], [-1.0, 0.0, 3.0])
    assert many.shape == (4, 3, 8)
    torch.testing.assert_close(many[:, 2], ws + 3 * v)
    torch.testing.assert_close(many[:, 1], ws)


def test_apply_keeps_numpy_as_numpy():
    ws = np.random.default_rng(1).normal(size=(2, 8)).astype(np.float32)
    out = edit.apply(ws, np.eye(8, dtype=np.float32)[0], np.array([1.0, 2.0]))
    assert isinstance(out, np.ndarray) and out.shape == (2, 2, 8)
    np.testing.assert_allclose(out[:, 1, 0], ws[:, 0] + 2)


def test_apply_on_w_plus_touches_only_the_chosen_layers():
    ws = torch.randn(3, 6, 8)
    v = torch.zeros(8)
    v[2] = 1
    out = edit.apply(ws, v, 1.5, layers=[1, 4])
    changed = (out - ws).abs().sum(dim=(0, 2)) > 0
    assert changed.tolist() == [False, True, False, False, True, False]
    torch.testing.assert_close(out[:, 4], ws[:, 4] + 1.5 * v)
    coarse = edit.apply(ws, v, 1.0, layers="coarse")
    assert ((coarse - ws).abs().sum(dim=(0, 2)) > 0).tolist() == [True, True, True, False, False, False]


def test_apply_with_a_direction_uses_its_scale_and_layers_unless_overridden():
    v = unit(np.random.default_rng(2).normal(size=8)).astype(np.float32)
    d = Direction(name="ganspace-0", method="ganspace", space="w", vector=v, layers=(0, 1), scale=3.0)
    ws = torch.zeros(2, 6, 8)
    out = edit.apply(ws, d, 2.0)
    torch.testing.assert_close(out[:, 0], torch.from_numpy(6 * v).expand(2, 8))
    assert out[:, 2:].abs().sum() == 0
    overridden = edit.apply(ws, d, 1.0, layers=[5])
    assert overridden[:, :5].abs().sum() == 0 and overridden[:, 5].abs().sum() > 0


def test_apply_with_a_per_layer_direction():
    rng = np.random.default_rng(3)
    vector = unit(rng.normal(size=(6, 8))).astype(np.float32)
    d = Direction(name="interfacegan-x", method="interfacegan", space="w+", vector=vector)
    ws = torch.randn(2, 6, 8)
    torch.testing.assert_close(edit.apply(ws, d, -2.0), ws - 2 * torch.from_numpy(vector))
    torch.testing.assert_close(edit.apply(ws, vector[None], 1.0, layers=[0])[:, 1:], ws[:, 1:])


@pytest.mark.parametrize("ws_shape, direction_shape, kwargs, match", [
    ((2, 8), (8,), dict(layers=[0]), "W\\+ codes"),
    ((2, 8), (6, 8), {}, "per-layer"),
    ((2, 6, 8), (7,), {}, "does not fit"),
    ((2, 6, 8), (5, 8), {}, "does not fit"),
    ((2, 6, 8), (8,), dict(layers=[9]), r"\[0, 5\]"),
    ((8,), (8,), {}, "ws must be"),
])
def test_apply_rejects_shapes_that_do_not_fit(ws_shape, direction_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        edit.apply(torch.zeros(ws_shape), torch.ones(direction_shape), 1.0, **kwargs)


def test_apply_rejects_matrix_strengths():
    with pytest.raises(ValueError, match="strengths"):
        edit.apply(torch.zeros(2, 8), torch.ones(8), [[1.0]])


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_starts_and_ends_at_the_items(method):
    a, b = torch.randn(3, 6, 8), torch.randn(3, 6, 8)
    path = edit.interpolate(a, b, 5, method=method)
    assert path.shape == (3, 5, 6, 8)
    torch.testing.assert_close(path[:, 0], a)
    torch.testing.assert_close(path[:, -1], b)


def test_linear_interpolation_midpoint_is_the_mean():
    a, b = torch.randn(2, 8), torch.randn(2, 8)
    torch.testing.assert_close(edit.interpolate(a, b, 3)[:, 1], (a + b) / 2)


def test_slerp_stays_on_the_sphere_between_equal_norm_codes():
    a, b = (torch.nn.functional.normalize(torch.randn(4, 16), dim=1) for _ in range(2))
    path = edit.interpolate(a, b, 7, method="slerp")
    torch.testing.assert_close(path.norm(dim=-1), torch.ones(4, 7))
    same = edit.interpolate(a, a, 3, method="slerp")  # parallel codes fall back to lerp, no NaN
    torch.testing.assert_close(same[:, 1], a)


def test_interpolation_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        edit.interpolate(torch.zeros(2, 8), torch.zeros(3, 8))
    with pytest.raises(ValueError, match="num_steps"):
        edit.interpolate(torch.zeros(2, 8), torch.zeros(2, 8), 1)
    with pytest.raises(ValueError, match="method"):
        edit.interpolate(torch.zeros(2, 8), torch.zeros(2, 8), method="cubic")


def test_style_mix_takes_the_named_rows_from_the_style_codes():
    content, style = torch.zeros(2, 10, 4), torch.ones(2, 10, 4)
    for name, rows in edit.layer_ranges(10).items():
        mixed = edit.style_mix(content, style, name)
        assert (mixed[:, :, 0] == 1).all(dim=0).nonzero().flatten().tolist() == list(rows)


def test_style_mix_broadcasts_to_a_grid_and_keeps_numpy():
    content, style = np.zeros((3, 6, 4), np.float32), np.ones((5, 6, 4), np.float32)
    grid = edit.style_mix(content[:, None], style[None], [0, 1])
    assert isinstance(grid, np.ndarray) and grid.shape == (3, 5, 6, 4)
    assert grid[:, :, :2].min() == 1 and grid[:, :, 2:].max() == 0
    with pytest.raises(ValueError, match="num_ws"):
        edit.style_mix(content, np.ones((3, 7, 4), np.float32), [0])


def test_direction_validates_and_describes_itself():
    v = unit(np.arange(1, 9, dtype=np.float32))
    d = Direction(name="sefa-0", method="sefa", space="w", vector=v, layers=[0, 1], provenance=dict(eigenvalue=2.0))
    assert d.layers == (0, 1) and not d.vector.flags.writeable
    v[0] = 100  # the record keeps its own copy
    assert d.vector[0] < 1
    attrs = json.loads(json.dumps(d.attrs()))
    assert attrs["shape"] == [8] and attrs["layers"] == [0, 1] and attrs["provenance"] == {"eigenvalue": 2.0}


@pytest.mark.parametrize("kwargs, match", [
    (dict(space="s"), "space"),
    (dict(vector=np.ones(4)), "unit norm"),
    (dict(space="w+"), "2 dimension"),
    (dict(scale=0.0), "scale"),
    (dict(provenance=dict(value=np.float32(1))), "JSON"),
])
def test_direction_rejects_bad_fields(kwargs, match):
    fields = {**dict(name="x", method="sefa", space="w", vector=np.array([0.6, 0.8])), **kwargs}
    with pytest.raises(ValueError, match=match):
        Direction(**fields)
