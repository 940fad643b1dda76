"""InterFaceGAN boundaries, conditional projection and sampling, on planted data and a tiny generator."""

import json

import numpy as np
import pytest
import torch

from ganinv.directions.interfacegan import (fit_directions, project_boundary, sample_and_score, train_boundary,
                                            train_layer_boundaries)


def planted(num=4000, dim=32, *, noise=0.05, seed=0):
    """Codes, scores = <code, normal> + noise, and the planted unit normal."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=dim)
    normal /= np.linalg.norm(normal)
    codes = rng.normal(size=(num, dim))
    return codes, codes @ normal + noise * rng.normal(size=num), normal


def unit(v):
    return v / np.linalg.norm(v)


def dot(a, b):
    return float(np.sum(a * b))


@pytest.mark.parametrize("svm", ["linear_svc", "svc"])
def test_boundary_recovers_planted_normal(svm):
    codes, scores, normal = planted()
    fit = train_boundary(codes, scores, chosen_num_or_ratio=0.1, svm=svm)
    assert fit.boundary.shape == (1, 32)
    assert np.linalg.norm(fit.boundary) == pytest.approx(1, abs=1e-6)
    assert float(fit.boundary[0] @ normal) >= 0.99  # also: the positive side is the high-score side
    assert fit.val_accuracy >= 0.99 and fit.remaining_accuracy >= 0.8  # middle codes sit near the plane


def test_boundary_accepts_torch_and_column_scores():
    codes, scores, normal = planted()
    fit = train_boundary(torch.from_numpy(codes), torch.from_numpy(scores)[:, None], chosen_num_or_ratio=0.1)
    assert float(fit.boundary[0] @ normal) >= 0.99


def test_w_plus_codes_are_fitted_flattened_and_returned_per_layer():
    codes, scores, normal = planted(dim=3 * 8)
    fit = train_boundary(codes.reshape(-1, 3, 8), scores, chosen_num_or_ratio=0.1)
    assert fit.boundary.shape == (1, 3, 8)
    assert float(fit.boundary.reshape(-1) @ normal) >= 0.99


def test_per_layer_boundaries_find_the_layer_that_carries_the_attribute():
    codes, scores, normal = planted(dim=8)
    rng = np.random.default_rng(9)
    ws = np.stack([rng.normal(size=codes.shape), codes, rng.normal(size=codes.shape)], axis=1)  # only row 1 counts
    fits = train_layer_boundaries(torch.from_numpy(ws), scores, chosen_num_or_ratio=0.1)
    assert [fit.boundary.shape for fit in fits] == [(1, 8)] * 3
    assert float(fits[1].boundary[0] @ normal) >= 0.99
    assert fits[1].val_accuracy > 0.95 > max(fits[0].val_accuracy, fits[2].val_accuracy)
    with pytest.raises(ValueError, match="W\\+"):
        train_layer_boundaries(codes, scores)


def test_offset_places_the_hyperplane_between_the_classes():
    codes, scores, normal = planted()
    fit = train_boundary(codes + 5 * normal, scores, chosen_num_or_ratio=0.1)  # shift the data along the normal
    assert fit.offset == pytest.approx(-5, abs=0.3)


@pytest.mark.parametrize("invalid_value", [999.0, float("nan")])
def test_invalid_scores_are_dropped(invalid_value):
    codes, scores, normal = planted()
    codes[:300] = -10 * normal  # poison: would be the top codes if their scores were used
    scores[:300] = invalid_value
    fit = train_boundary(codes, scores, chosen_num_or_ratio=0.1, invalid_value=invalid_value)
    assert float(fit.boundary[0] @ normal) >= 0.99
    assert fit.num_train + fit.num_val == int(3700 * 0.1)


@pytest.mark.parametrize("chosen, expected_per_side", [(0.1, 100), (1.0, 500), (37, 37), (5000, 500)])
def test_chosen_num_or_ratio_is_a_share_up_to_one_else_a_count_capped_at_half(chosen, expected_per_side):
    codes, scores, _ = planted(num=1000)
    fit = train_boundary(codes, scores, chosen_num_or_ratio=chosen, split_ratio=0.7)
    assert fit.num_train == int(expected_per_side * 0.7)
    assert fit.num_train + fit.num_val == expected_per_side


def test_split_ratio_one_leaves_no_validation():
    codes, scores, _ = planted(num=1000)
    fit = train_boundary(codes, scores, chosen_num_or_ratio=0.1, split_ratio=1.0)
    assert fit.num_val == 0 and fit.val_accuracy is None


def test_same_seed_gives_the_same_boundary():
    codes, scores, _ = planted(noise=1.0)
    a, b = (train_boundary(codes, scores, chosen_num_or_ratio=0.2, seed=3) for _ in range(2))
    np.testing.assert_array_equal(a.boundary, b.boundary)


@pytest.mark.parametrize("codes_shape, scores_shape, kwargs, match", [
    ((10,), (10,), {}, "latent_codes"),
    ((10, 4), (9,), {}, "scores"),
    ((10, 4), (10, 2), {}, "scores"),
    ((10, 4), (10,), dict(chosen_num_or_ratio=0), "chosen_num_or_ratio"),
    ((10, 4), (10,), dict(split_ratio=0), "split_ratio"),
    ((10, 4), (10,), dict(svm="rbf"), "svm"),
    ((10, 4), (10,), dict(chosen_num_or_ratio=0.01), "no training data"),
])
def test_bad_input_is_rejected_with_its_name(codes_shape, scores_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_boundary(np.random.rand(*codes_shape), np.random.rand(*scores_shape), **kwargs)


def test_nan_scores_need_invalid_value():
    codes, scores, _ = planted(num=100)
    scores[3] = np.nan
    with pytest.raises(ValueError, match="invalid_value"):
        train_boundary(codes, scores)


def test_projection_on_one_condition_is_orthogonal_and_keeps_the_sign():
    rng = np.random.default_rng(1)
    n1, n2 = unit(rng.normal(size=(1, 16))), unit(rng.normal(size=(1, 16)))
    n2 = unit(n2 + 0.8 * n1)  # strongly correlated
    new = project_boundary(n1, n2)
    assert abs(dot(new, n2)) < 1e-6
    assert dot(new, n1) > 0
    np.testing.assert_allclose(new, unit(n1 - dot(n1, n2) * n2), atol=1e-6)  # InterFaceGAN Sec. 2.2


def test_projection_on_two_conditions_matches_the_papers_closed_form():
    rng = np.random.default_rng(2)
    p, c1, c2 = (unit(rng.normal(size=(1, 16))) for _ in range(3))
    a, b, r = dot(p, c1), dot(p, c2), dot(c1, c2)
    alpha, beta = (a - b * r) / (1 - r ** 2), (b - a * r) / (1 - r ** 2)
    np.testing.assert_allclose(project_boundary(p, c1, c2), unit(p - alpha * c1 - beta * c2), atol=1e-6)


def test_projection_on_many_dependent_conditions_is_orthogonal_to_each():
    rng = np.random.default_rng(3)
    primal = unit(rng.normal(size=(1, 16)))
    conditions = [unit(rng.normal(size=(1, 16))) for _ in range(5)]
    conditions.append(unit(conditions[0] + conditions[1]))  # linearly dependent on two others
    new = project_boundary(primal, *conditions)
    assert np.linalg.norm(new) == pytest.approx(1, abs=1e-6)
    for condition in conditions:
        assert abs(dot(new, condition)) < 1e-5
    assert dot(new, primal) > 0


def test_projection_ignores_a_condition_that_depends_on_the_others():
    rng = np.random.default_rng(6)
    primal, c1, c2, c3 = (unit(rng.normal(size=(1, 16))) for _ in range(4))
    for dependent in (c1, 2 * c2 - c3, c1 + 1e-9 * c2 - c3):
        for conditions in ((c1, c2, c3, dependent), (dependent, c1, c2, c3), (c1, dependent, c2, c3)):
            np.testing.assert_allclose(project_boundary(primal, *conditions), project_boundary(primal, c1, c2, c3),
                                       atol=1e-6)


def test_projection_keeps_w_plus_shape():
    rng = np.random.default_rng(4)
    primal, condition = rng.normal(size=(1, 3, 8)), rng.normal(size=(1, 3, 8))
    new = project_boundary(primal, condition)
    assert new.shape == (1, 3, 8)
    assert abs(float(np.sum(new * condition))) < 1e-5


def test_projection_of_a_primal_inside_the_conditions_span_is_an_error():
    rng = np.random.default_rng(5)
    c1, c2 = rng.normal(size=(1, 8)), rng.normal(size=(1, 8))
    with pytest.raises(ValueError, match="span"):
        project_boundary(unit(c1 + 2 * c2), c1, c2)
    with pytest.raises(ValueError, match="same space"):
        project_boundary(c1, rng.normal(size=(1, 9)))


def mean_brightness(images):
    return images.mean(dim=(1, 2, 3))


@pytest.mark.parametrize("space", ["z", "w", "w+"])
def test_sample_and_score_returns_codes_of_the_space_and_their_images_scores(family_generator, space):
    G = family_generator
    shape = (10, G.num_ws, 16) if space == "w+" else (10, 16)
    latents, scores = sample_and_score(G, mean_brightness, 10, seed=1, batch_size=4, space=space)
    assert latents.shape == shape and latents.dtype == np.float32
    assert list(scores) == ["score"] and scores["score"].shape == (10,)
    z, _ = sample_and_score(G, mean_brightness, 10, seed=1, batch_size=4, space="z")
    with torch.no_grad():  # the scores belong to the truncated images of these z
        ws = G.mapping(torch.from_numpy(z), None, truncation_psi=0.7)
        expected = mean_brightness(G.synthesis(ws)).numpy()
    np.testing.assert_allclose(scores["score"], expected, atol=1e-5)


def test_sample_and_score_does_not_depend_on_batch_size(family_generator):
    a, sa = sample_and_score(family_generator, mean_brightness, 9, seed=2, batch_size=2)
    b, sb = sample_and_score(family_generator, mean_brightness, 9, seed=2, batch_size=9)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(sa["score"], sb["score"], atol=1e-5)


def test_sample_and_score_selects_and_names_attributes(tiny_generator):
    def dict_scorer(images):
        return {"bright": mean_brightness(images), "red": images[:, 0].mean(dim=(1, 2)), "unused": images[:, 0, 0, 0]}

    _, scores = sample_and_score(tiny_generator, dict_scorer, 4, attributes=["red", "bright"])
    assert list(scores) == ["red", "bright"]
    _, scores = sample_and_score(tiny_generator, lambda img: img.mean(dim=(2, 3)), 4, attributes=["r", "g", "b"])
    assert list(scores) == ["r", "g", "b"]
    with pytest.raises(KeyError, match="smile"):
        sample_and_score(tiny_generator, dict_scorer, 4, attributes=["smile"])


def test_fit_directions_adds_conditional_boundaries_with_provenance():
    codes, score_a, normal_a = planted(seed=6)
    rng = np.random.default_rng(7)
    normal_b = unit(normal_a + rng.normal(size=32))
    scores = {"a": score_a, "b": codes @ normal_b}
    directions = fit_directions(codes, scores, conditions={"a": ["b"]}, chosen_num_or_ratio=0.1,
                                provenance=dict(generator="tiny"))
    by_name = {d.name: d for d in directions}
    assert list(by_name) == ["interfacegan-a", "interfacegan-b", "interfacegan-a|b"]
    conditional = by_name["interfacegan-a|b"]
    assert abs(float(conditional.vector @ by_name["interfacegan-b"].vector)) < 1e-5
    assert conditional.provenance["conditions"] == ["b"] and conditional.provenance["attribute"] == "a"
    assert by_name["interfacegan-a"].provenance["val_accuracy"] >= 0.99
    assert by_name["interfacegan-a"].provenance["generator"] == "tiny"
    json.dumps([d.attrs() for d in directions])
    with pytest.raises(KeyError, match="smile"):
        fit_directions(codes, scores, conditions={"a": ["smile"]}, chosen_num_or_ratio=0.1)

