"""SeFa against a direct numpy eigendecomposition of the official fixture's style weights."""

import numpy as np
import pytest
import torch

from conftest import SG3_CONFIGS, ada_tiny_state_dict, load_sg3_tiny, sg3_tiny_state_dict
from ganinv.directions import DISCOVERY_METHODS, get_discovery_method, sefa
from ganinv.directions.sefa import factorize

# The official state dict's conv layers in forward order: what SeFa's layer indices must mean.
ADA_TINY_CONVS = ["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1", "b32.conv0", "b32.conv1"]


def reference_sefa(conv_names, state=None):
    """Straight from the paper and the official code: stack the style weights `[C, w_dim]` (as numpy, from the
    state dict), unit-normalise each style channel's weight vector, eigendecompose `A^T A` with `np.linalg.eig`."""
    state = ada_tiny_state_dict() if state is None else state
    weight = np.concatenate([state[f"synthesis.{name}.affine.weight"].numpy().T for name in conv_names], axis=1)
    weight = weight.astype(np.float64) / np.linalg.norm(weight, axis=0, keepdims=True)  # [w_dim, sum C]
    values, vectors = np.linalg.eig(weight @ weight.T)
    order = np.argsort(values.real)[::-1]
    return values.real[order], vectors.real[:, order].T


def assert_rows_equal_up_to_sign(a, b, atol):
    signs = np.sign(np.sum(a * b, axis=1, keepdims=True))
    np.testing.assert_allclose(a, b * signs, atol=atol)


def well_separated(values, k, gap=1e-3):
    """Indices among the top k whose eigenvalue is isolated (its eigenvector is then unique up to sign)."""
    return [i for i in range(k) if all(abs(values[i] - values[j]) > gap * values[0] for j in range(len(values))
                                       if j != i)]


def test_factorize_all_matches_numpy_eigendecomposition(ada_tiny):
    result = factorize(ada_tiny)
    values, vectors = reference_sefa(ADA_TINY_CONVS)
    assert result.layers == tuple(range(7))
    assert result.eigenvalues.shape == (64,) and result.directions.shape == (64, 64)
    np.testing.assert_allclose(result.eigenvalues, values, rtol=1e-4)
    keep = well_separated(values, 10)
    assert len(keep) >= 5
    assert_rows_equal_up_to_sign(result.directions[keep], vectors[keep], atol=1e-4)


@pytest.mark.parametrize("index", range(7))
def test_layer_index_selects_exactly_that_conv_layer(ada_tiny, index):
    result = factorize(ada_tiny, layers=[index])
    values, vectors = reference_sefa([ADA_TINY_CONVS[index]])
    np.testing.assert_allclose(result.eigenvalues, values, rtol=1e-4, atol=1e-6)
    keep = well_separated(values, 5)
    assert len(keep) >= 3
    assert_rows_equal_up_to_sign(result.directions[keep], vectors[keep], atol=1e-4)


def test_layer_subsets_are_order_free_and_deduplicated(ada_tiny):
    a = factorize(ada_tiny, layers=[3, 0, 3])
    values, _ = reference_sefa(["b4.conv1", "b16.conv0"])
    assert a.layers == (0, 3)
    np.testing.assert_allclose(a.eigenvalues, values, rtol=1e-4, atol=1e-6)


def test_directions_are_orthonormal_and_eigenvalues_descending_summing_to_channel_count(ada_tiny):
    result = factorize(ada_tiny, layers=[1, 2])
    np.testing.assert_allclose(result.directions @ result.directions.T, np.eye(64), atol=1e-5)
    assert np.all(np.diff(result.eigenvalues) <= 1e-6)
    # trace(A^T A) = sum of squared (unit) row norms = number of style channels
    assert result.eigenvalues.sum() == pytest.approx(2 * 64, rel=1e-5)


def test_style_channel_normalisation_makes_weight_scale_irrelevant(tiny_generator):
    before = factorize(tiny_generator)
    with torch.no_grad():
        tiny_generator.synthesis.b8.conv0.affine.weight[3] *= 100.0  # one style channel
        tiny_generator.synthesis.b16.conv1.affine.weight *= 0.01  # one whole layer
    after = factorize(tiny_generator)
    np.testing.assert_allclose(after.eigenvalues, before.eigenvalues, rtol=1e-5)
    np.testing.assert_allclose(after.directions, before.directions, atol=1e-4)


def test_discover_returns_top_directions_editing_the_factorised_layers(ada_tiny):
    directions = sefa.discover(ada_tiny, num_directions=3, layers=[0, 1], provenance=dict(generator="ada_tiny"))
    result = factorize(ada_tiny, layers=[0, 1])
    assert [d.name for d in directions] == ["sefa-0", "sefa-1", "sefa-2"]
    for k, d in enumerate(directions):
        assert d.layers == (0, 1) and d.space == "w" and d.method == "sefa"
        np.testing.assert_array_equal(d.vector, result.directions[k])
        assert d.provenance["eigenvalue"] == pytest.approx(float(result.eigenvalues[k]))
        assert d.provenance["generator"] == "ada_tiny" and d.provenance["source"] == "generator"


@pytest.mark.parametrize("layers, match", [([7], r"\[0, 6\]"), ([-1], r"\[0, 6\]"), ([], "non-empty"),
                                           ("coarse", "'all'")])
def test_bad_layers_are_rejected(ada_tiny, layers, match):
    with pytest.raises(ValueError, match=match):
        factorize(ada_tiny, layers=layers)


def test_too_many_directions_is_an_error(ada_tiny):
    with pytest.raises(ValueError, match="num_directions"):
        sefa.discover(ada_tiny, num_directions=65)


def test_registry_picks_discovery_methods_by_name():
    assert get_discovery_method("sefa") is sefa.discover
    assert set(DISCOVERY_METHODS) == {"sefa", "ganspace"}
    with pytest.raises(KeyError, match="interfacegan.fit_directions"):
        get_discovery_method("interfacegan")


@pytest.mark.parametrize("config", SG3_CONFIGS)
def test_stylegan3_factorises_the_modulated_convolutions_by_ws_row(config):
    # StyleGAN3: the official fixture's layers L0 ... L5 (rows 1 ... 6) are the style layers; the ToRGB layer (L6,
    # row 7) and the input's geometric affine (row 0) are not.
    G = load_sg3_tiny(config)
    state = sg3_tiny_state_dict(config)
    convs = G.synthesis.layer_names[:-1]
    result = factorize(G)
    values, vectors = reference_sefa(convs, state)
    assert result.layers == tuple(range(1, G.num_ws - 1))
    np.testing.assert_allclose(result.eigenvalues, values, rtol=1e-4, atol=1e-6)
    keep = well_separated(values, 8)
    assert len(keep) >= 3
    assert_rows_equal_up_to_sign(result.directions[keep], vectors[keep], atol=1e-4)
    one = factorize(G, layers=[3])
    np.testing.assert_allclose(one.eigenvalues, reference_sefa([convs[2]], state)[0], rtol=1e-4, atol=1e-6)
    for bad in ([0], [G.num_ws - 1]):
        with pytest.raises(ValueError, match=r"\[1, 6\]"):
            factorize(G, layers=bad)
