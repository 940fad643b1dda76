"""Every model shipped in ganinv/assets loads on CPU, has the documented shapes and reproduces golden values.

The golden values were computed once from the shipped files; a change to the files (or to the code that runs them)
shows up here. The identity pins faces64's weights exactly. Shipping a new world replaces the four constants below by
the lines `python -m benchmarks.ship_world` prints (its `golden_values`, checked against these in test_ship_world.py).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from ganinv.builtin_models import builtin_world_version, recorded_world_version
from ganinv.datasets.procedural_faces import SHIPPED_VERSION, render_batch
from ganinv.generators import generator_identity, load_generator
from ganinv.models.attributes import builtin_path, load_classifier, read_metadata
from ganinv.models.encoder import load_encoder

ASSETS = Path(__file__).resolve().parents[1] / "ganinv" / "assets"
FACES64_IDENTITY = "368d7155c2e96c162068f833efc488cbd93f55d8fb51431969dae102f6535602"
GENERATOR_PIXELS = [[0.7329015, 0.4280306, 0.1760733], [-0.1347075, -0.4455509, -0.6109221]]
CLASSIFIER_LIGHTING = [-0.8782981, 0.6756084]
ENCODER_WS = [[-0.0504733, 0.9452059, 1.6623501], [0.0247905, 1.1109816, 2.0221767]]


@pytest.fixture(scope="module")
def heldout() -> tuple[torch.Tensor, np.ndarray]:
    images, attrs = render_batch(1, range(2))
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1, attrs


def test_shipped_weights_stay_under_50_mb():
    total = sum(f.stat().st_size for f in ASSETS.rglob("*.safetensors"))
    assert total <= 50e6, f"shipped weights take {total / 1e6:.1f} MB"


def test_the_builtin_models_learnt_the_world_the_renderer_ships():
    """Code that renders faces for the built-in models renders SHIPPED_VERSION's world: it must be theirs (a new world
    is shipped by replacing the files and SHIPPED_VERSION together; benchmarks/ship_world.py lists the steps)."""
    assert builtin_world_version() == SHIPPED_VERSION
    assert recorded_world_version(read_metadata(builtin_path())["metrics"]) == SHIPPED_VERSION


def test_faces64_generator_loads_with_its_identity_and_golden_pixels():
    G = load_generator("faces64")
    assert (G.img_resolution, G.num_ws, G.w_dim, G.z_dim) == (64, 10, 256, 256)
    assert generator_identity(G) == FACES64_IDENTITY
    z = torch.from_numpy(np.random.RandomState(0).randn(2, G.z_dim)).float()
    with torch.no_grad():
        img = G(z, None, noise_mode="const")
    assert img.shape == (2, 3, 64, 64)
    assert torch.allclose(img[:, :, 32, 32], torch.tensor(GENERATOR_PIXELS), atol=1e-4)


def test_classifier_reads_the_ground_truth_of_heldout_faces(heldout):
    x, attrs = heldout
    clf = load_classifier("builtin")
    with torch.no_grad():
        pred = clf.predict(x)
    for i, name in enumerate(clf.attribute_names):
        if clf.attribute_kinds[i] == "binary":
            assert ((pred[name] > 0.5).float().numpy() == attrs[:, i]).all(), name
        else:
            assert np.abs(pred[name].numpy() - attrs[:, i]).max() < 0.1, name
    assert torch.allclose(pred["lighting"], torch.tensor(CLASSIFIER_LIGHTING), atol=1e-4)


def test_encoder_maps_faces_to_faces64_ws_with_golden_values(heldout):
    x, _ = heldout
    E = load_encoder("faces64")
    with torch.no_grad():
        ws = E(x)
    assert ws.shape == (2, 10, 256)
    assert torch.allclose(ws[:, 0, :3], torch.tensor(ENCODER_WS), atol=1e-4)
