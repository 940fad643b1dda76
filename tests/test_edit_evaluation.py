"""Edit evaluation: exact flip rates on a generator whose images are linear in w, and the whole chain
(sample, score, fit boundaries, evaluate) on a tiny StyleGAN2."""

import math

import numpy as np
import pytest
import torch

from ganinv.directions import Direction
from ganinv.directions.evaluate import evaluate_edits
from ganinv.directions.interfacegan import fit_directions, project_boundary, sample_and_score
from ganinv.directions.sampling import iter_latents
from ganinv.directions.synthetic import SyntheticAttributes


class LinearSynthesis(torch.nn.Module):
    """image = reshape(mean over ws rows of w @ P): 4x4 px, so SyntheticAttributes' logits are affine in w."""

    def __init__(self, w_dim: int, seed: int):
        super().__init__()
        self.P = torch.nn.Parameter(torch.randn(w_dim, 3 * 4 * 4, generator=torch.Generator().manual_seed(seed)))

    def forward(self, ws, noise_mode="const"):
        return (ws.mean(dim=1) @ self.P).view(-1, 3, 4, 4)


class LinearGenerator(torch.nn.Module):
    def __init__(self, w_dim=8, num_ws=4, seed=0):
        super().__init__()
        self.w_dim, self.num_ws = w_dim, num_ws
        self.synthesis = LinearSynthesis(w_dim, seed)


@pytest.fixture(scope="module")
def linear_world():
    """A linear generator, attributes a, b (correlated with a, rho 0.8), c; their exact normals in w; items."""
    G = LinearGenerator().requires_grad_(False)
    ws, calibration = (torch.randn(300, 1, 8, generator=torch.Generator().manual_seed(seed)).repeat(1, 4, 1)
                       for seed in (1, 2))
    with torch.no_grad():
        attrs = SyntheticAttributes(["a", "b", "c"], G.synthesis(calibration), correlated={"b": ("a", 0.8)})
        # logit_k(w) = <w, normal_k> + const_k
        normals = (G.synthesis.P @ attrs.readout / attrs.spread * attrs.sharpness).T.numpy()
    return G, attrs, ws, normals


def direction(name, vector, **provenance):
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)
    return Direction(name=name, method="interfacegan", space="w", vector=vector / np.linalg.norm(vector),
                     provenance=provenance)


def test_flip_rate_counts_the_items_that_cross_in_the_edits_direction(linear_world):
    G, attrs, ws, normals = linear_world
    d = direction("interfacegan-a", normals[0], attribute="a")
    rows = evaluate_edits(G, attrs, ws, [d], [-1.0, 0.5, 2.0], batch_size=64)
    logits = torch.logit(attrs(G.synthesis(ws))["a"].double()).numpy()
    step = float(d.vector @ normals[0])  # logit change per unit strength
    for row, s in zip(rows, [-1.0, 0.5, 2.0]):
        eligible = logits < 0 if s > 0 else logits >= 0
        crossed = (logits + s * step >= 0) if s > 0 else (logits + s * step < 0)
        assert row["num_eligible"] == eligible.sum()
        assert row["flip_rate"] == pytest.approx((eligible & crossed).sum() / eligible.sum(), abs=1e-9)
        assert math.copysign(1, row["target_delta"]) == math.copysign(1, s)
    assert 0 < rows[1]["flip_rate"] < rows[2]["flip_rate"] < 1  # a partial flip, more with more strength


def test_conditional_boundary_leaves_the_correlated_attribute_alone(linear_world):
    G, attrs, ws, normals = linear_world
    primal = direction("interfacegan-a", normals[0], attribute="a")
    conditional = direction("interfacegan-a|b", project_boundary(normals[0][None], normals[1][None]), attribute="a")
    plain_row, conditional_row = evaluate_edits(G, attrs, ws, [primal, conditional], [1.5])
    assert plain_row["change:b"] > 0.1  # the correlated attribute follows the plain edit ...
    assert conditional_row["change:b"] == 0 and conditional_row["dscore:b"] < 1e-5  # ... not the conditional one
    assert conditional_row["flip_rate"] > 0.5  # which still edits the target
    assert conditional_row["interference_score"] < plain_row["interference_score"]


def test_strength_zero_changes_nothing(linear_world):
    G, attrs, ws, normals = linear_world
    [row] = evaluate_edits(G, attrs, ws[:20], [direction("x", normals[2], attribute="c")], [0.0],
                           perceptual=lambda a, b: (a - b).square().mean(dim=(1, 2, 3)))
    assert math.isnan(row["flip_rate"]) and row["num_eligible"] == 0
    assert row["pixel_change"] == 0 and row["perceptual_change"] == 0 and row["interference"] == 0


def test_directions_without_target_measure_every_attribute(linear_world):
    G, attrs, ws, _ = linear_world
    d = Direction(name="sefa-0", method="sefa", space="w", vector=np.eye(8)[0], layers=(0, 1))
    [row] = evaluate_edits(G, attrs, ws[:50], [d], [3.0])
    assert row["target"] is None and math.isnan(row["flip_rate"])
    assert {"change:a", "change:b", "change:c"} <= set(row)


def test_unknown_target_and_bad_codes_are_errors(linear_world):
    G, attrs, ws, normals = linear_world
    with pytest.raises(KeyError, match="smile"):
        evaluate_edits(G, attrs, ws[:4], [direction("x", normals[0])], [1.0], targets={"x": "smile"})
    with pytest.raises(ValueError, match="Z"):
        evaluate_edits(G, attrs, ws[:4], [Direction(name="z", method="interfacegan", space="z", vector=np.eye(8)[0])],
                       [1.0])
    with pytest.raises(ValueError, match=r"\[N, 4, 8\]"):
        evaluate_edits(G, attrs, ws[:4, :2], [direction("x", normals[0])], [1.0])


def test_sample_fit_evaluate_chain_on_a_tiny_stylegan(tiny_generator):
    G = tiny_generator
    _, ws = next(iter_latents(G, 128, seed=11, batch_size=128, truncation_psi=0.7))
    with torch.no_grad():
        attrs = SyntheticAttributes(["a", "b", "c"], G.synthesis(ws), correlated={"b": ("a", 0.8)})
    latents, scores = sample_and_score(G, attrs, 600, seed=0, batch_size=200)
    directions = fit_directions(latents, scores, conditions={"a": ["b"]}, chosen_num_or_ratio=0.25,
                                provenance=dict(truncation_psi=0.7))
    assert all(d.provenance["val_accuracy"] > 0.8 for d in directions)
    _, items = next(iter_latents(G, 60, seed=12, batch_size=60, truncation_psi=0.7))
    rows = evaluate_edits(G, attrs, items, directions[:3], [-0.5, 0.5], batch_size=30)
    assert len(rows) == 6
    for row in rows:  # every boundary moves its own attribute the way it points
        assert 0 <= row["flip_rate"] <= 1 and row["pixel_change"] > 0
        assert math.copysign(1, row["target_delta"]) == math.copysign(1, row["strength"])


def test_a_per_item_renderer_draws_every_image_and_knows_its_items(linear_world):
    """`render(ws, items)`: what pivotal tuning's per-item generators need; base and edited images both use it."""
    G, attrs, ws, normals = linear_world
    d = direction("interfacegan-a", normals[0], attribute="a")
    seen = []

    def plain(codes, items):
        seen.append((items.start, items.stop, len(codes)))
        return G.synthesis(codes)

    assert evaluate_edits(G, attrs, ws, [d], [1.0], batch_size=128, render=plain) == \
        evaluate_edits(G, attrs, ws, [d], [1.0], batch_size=128)
    assert seen == [(0, 128, 128), (0, 128, 128), (128, 256, 128), (128, 256, 128), (256, 300, 44), (256, 300, 44)]
    offsets = torch.randn(len(ws), 3, 4, 4, generator=torch.Generator().manual_seed(5))  # one "generator" per item
    [row] = evaluate_edits(G, attrs, ws, [d], [0.0], batch_size=128,
                           render=lambda codes, items: G.synthesis(codes) + offsets[items])
    assert row["pixel_change"] == 0 and row["interference"] == 0  # the item's own offset in base and edit alike
    per_item = lambda codes, items: G.synthesis(codes) + offsets[items]  # noqa: E731
    [shifted] = evaluate_edits(G, attrs, ws, [d], [1.0], render=per_item)
    assert shifted["num_eligible"] != evaluate_edits(G, attrs, ws, [d], [1.0])[0]["num_eligible"]
