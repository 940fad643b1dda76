"""The shipped procedural-faces attribute classifier: loading, shapes, predictions on rendered faces, save/load."""

from __future__ import annotations

import pytest
import torch

from ganinv.datasets import procedural_faces as pf
from ganinv.models.attributes import (AttributeClassifier, ClassifierConfig, builtin_path, load_classifier,
                                      read_metadata, save_classifier)
from ganinv.training.train_classifier import TrainClassifierConfig, augment, evaluate, train_classifier
from ganinv.utils.images import to_model_input

GOLDEN_SEED = 123  # neither the training (0) nor the held-out (1) world


@pytest.fixture(scope="module")
def classifier() -> AttributeClassifier:
    return load_classifier()


@pytest.fixture(scope="module")
def faces() -> tuple[torch.Tensor, torch.Tensor]:
    images, attrs = pf.render_batch(GOLDEN_SEED, range(48))
    return to_model_input(torch.from_numpy(images).permute(0, 3, 1, 2)), torch.from_numpy(attrs)


def test_builtin_classifier_ships_inside_the_package_under_5_mb():
    path = builtin_path()
    assert path.is_file() and path.stat().st_size <= 5 * 2 ** 20
    meta = read_metadata(path)
    assert meta["config"].attribute_names == pf.ATTRIBUTE_NAMES
    assert meta["metrics"]["passes"] is True


def test_outputs_have_one_column_per_attribute(classifier, faces):
    x, _ = faces
    assert classifier.attribute_names == list(pf.ATTRIBUTE_NAMES)
    assert classifier.attribute_kinds == [a.kind for a in pf.ATTRIBUTES]
    assert classifier(x[:5]).shape == (5, len(pf.ATTRIBUTES))
    predicted = classifier.predict(x[:5])
    assert list(predicted) == list(pf.ATTRIBUTE_NAMES) and all(v.shape == (5,) for v in predicted.values())


def test_predictions_match_the_ground_truth_of_rendered_faces(classifier, faces):
    x, attrs = faces
    predicted = classifier.predict(x)
    for j, a in enumerate(pf.ATTRIBUTES):
        truth, guess = attrs[:, j], predicted[a.name]
        if a.kind == "binary":
            assert ((guess > 0.5).float() == truth).float().mean() >= 0.9, a.name
            assert ((guess >= 0) & (guess <= 1)).all()
        else:
            lo, hi = a.range
            assert (guess - truth).abs().mean() <= 0.1 * (hi - lo), a.name


def test_held_out_metrics_meet_the_targets(classifier):
    images, attrs = pf.render_batch(1, range(300))
    metrics = evaluate(classifier, torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(attrs))
    for a in pf.ATTRIBUTES:
        assert metrics[a.name] >= (0.93 if a.kind == "binary" else 0.88), (a.name, metrics[a.name])


def test_features_and_embedding_shapes(classifier, faces):
    x, _ = faces
    maps = classifier.features(x[:2])
    assert [tuple(m.shape[1:]) for m in maps] == [(32, 32, 32), (32, 32, 32), (64, 16, 16), (128, 8, 8),
                                                  (128, 4, 4)]
    assert classifier.embedding(x[:2]).shape == (2, classifier.config.embedding_dim)


def test_other_resolutions_are_resized_to_64(classifier, faces):
    x, _ = faces
    big = torch.nn.functional.interpolate(x[:4], scale_factor=2, mode="nearest")
    assert torch.allclose(classifier(big), classifier(x[:4]), atol=1e-4)


def test_missing_file_error_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-classifier"):
        load_classifier(tmp_path / "nowhere.safetensors")


def test_save_and_load_round_trip_config_and_outputs(tmp_path, faces):
    x, _ = faces
    torch.manual_seed(0)
    model = AttributeClassifier(ClassifierConfig.from_world(embedding_dim=32)).eval()
    path = save_classifier(model, tmp_path / "c.safetensors", metrics={"note": 1}, half=False)
    loaded = load_classifier(path)
    assert loaded.config == model.config and read_metadata(path)["metrics"] == {"note": 1}
    assert torch.allclose(loaded(x[:3]), model(x[:3]), atol=1e-6)


def test_mirror_augmentation_negates_yaw_and_lighting_only():
    x = torch.rand(64, 3, 64, 64) * 2 - 1
    attrs = torch.from_numpy(pf.render_batch(0, range(1))[1]).repeat(64, 1)
    out, out_attrs = augment(x, attrs, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    signs = {name: torch.unique(out_attrs[:, j] / attrs[0, j]).tolist()
             for j, name in enumerate(pf.ATTRIBUTE_NAMES) if attrs[0, j] != 0}
    assert all(set(v) == {-1.0, 1.0} if name in ("yaw", "lighting") else v == [1.0] for name, v in signs.items())


def test_training_runs_end_to_end_and_records_held_out_metrics(tmp_path):
    cfg = TrainClassifierConfig(n_train=64, n_eval=32, steps=2, batch_size=16, eval_every=100)
    record = train_classifier(cfg, tmp_path / "tiny.safetensors")
    assert set(record["heldout"]) == set(pf.ATTRIBUTE_NAMES)
    assert read_metadata(tmp_path / "tiny.safetensors")["metrics"]["train_config"]["steps"] == 2
