"""Out-of-distribution scores: calibrated percentiles of reconstruction metrics, and embedded-world faces told apart
from off-world images through a real generator."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ganinv.metrics.ood import default_ood_metrics, ood_scores, percentiles


def test_percentiles_are_mid_ranks_in_the_reference():
    np.testing.assert_allclose(percentiles([0, 2, 2.5, 5], [1, 2, 3, 4]), [0, 0.375, 0.5, 1])


def correlated_metrics(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=n) + shift  # one latent "how hard to reconstruct", seen through two metrics
    return {"mse": np.exp(quality + 0.3 * rng.normal(size=n)) * 1e-3,
            "clf-perceptual": 0.2 + 0.05 * (quality + 0.5 * rng.normal(size=n)),
            "psnr": rng.normal(30, 2, size=n)}


def test_scores_are_uniform_for_items_like_the_reference():
    reference, items = correlated_metrics(4000, seed=0), correlated_metrics(4000, seed=1)
    scores = ood_scores(items, reference)
    assert 0 <= scores.min() and scores.max() <= 1
    for q in (0.1, 0.5, 0.9, 0.99):
        assert abs(np.mean(scores > q) - (1 - q)) < 0.02, q


def test_worse_reconstructions_score_higher_whatever_the_metrics_direction():
    reference = correlated_metrics(500, seed=0)
    worse = correlated_metrics(500, seed=1, shift=2.0)
    assert ood_scores(worse, reference).mean() > 0.85
    low_psnr = {"psnr": reference["psnr"] - 5}
    assert ood_scores(low_psnr, reference, names=["psnr"]).mean() > 0.9  # PSNR: lower is worse


def test_an_items_score_does_not_depend_on_the_other_items():
    reference, items = correlated_metrics(300, seed=0), correlated_metrics(10, seed=1)
    alone = ood_scores({k: v[3:4] for k, v in items.items()}, reference)
    assert alone[0] == ood_scores(items, reference)[3]


def test_default_metrics_are_a_perceptual_distance_and_mse():
    assert default_ood_metrics(["psnr", "mse", "clf-perceptual", "lpips-vgg"]) == ("lpips-vgg", "mse")
    assert default_ood_metrics(["mse", "ssim"]) == ("mse",)
    with pytest.raises(ValueError, match="no metric to score with"):
        default_ood_metrics(["ssim"])
    with pytest.raises(ValueError, match=r"metrics \['lpips-vgg'\] are missing"):
        ood_scores({"mse": np.ones(2)}, {"mse": np.ones(3)}, names=["lpips-vgg", "mse"])


# --- through the embedded world's generator ----------------------------------------------------------------

def off_world_images(faces: torch.Tensor) -> torch.Tensor:
    """`[8, 3, 64, 64]` in [-1, 1]: two noises, three flat colours, a checkerboard, two rotated faces."""
    g = torch.Generator().manual_seed(0)
    noise = torch.cat([torch.rand([1, 3, 64, 64], generator=g) * 2 - 1,
                       (0.5 * torch.randn([1, 3, 64, 64], generator=g)).clamp(-1, 1)])
    flat = torch.tensor([[0.8, -0.6, -0.6], [0.0, 0.0, 0.0], [-0.7, -0.5, 0.9]]).view(3, 3, 1, 1).expand(-1, -1, 64, 64)
    squares = (torch.arange(64) // 8)
    checker = ((squares[:, None] + squares[None]) % 2 * 1.6 - 0.8).expand(1, 3, 64, 64)
    rotated = torch.stack([faces[0].flip(-2, -1), faces[1].transpose(-2, -1).flip(-1)])  # 180 and 90 degrees
    return torch.cat([noise, flat, checker, rotated])


@pytest.mark.slow
def test_embedded_faces_and_off_world_images_are_told_apart():
    """Scored on the encoder inversion's reconstructions (`docs/restoration.md`: optimising in W+ reconstructs a flat
    colour better than a face, so scores come from a constrained inversion)."""
    from benchmarks.common import heldout_faces
    from ganinv.generators.io import load_generator
    from ganinv.inversion import encode
    from ganinv.losses.registry import build_loss
    from ganinv.metrics import reconstruction_metrics
    from ganinv.models.encoder import load_encoder

    G, E = load_generator("faces64").eval().requires_grad_(False), load_encoder("faces64").eval()
    faces = heldout_faces(16)  # world seed the generator never saw
    reference_faces, test_faces = faces[:8], faces[8:]
    images = torch.cat([reference_faces, test_faces, off_world_images(test_faces)])
    with torch.no_grad():
        reconstructions = G.synthesis(encode(E, images), noise_mode="const")
    metrics = reconstruction_metrics(reconstructions, images,
                                     perceptual=build_loss("clf-perceptual").perceptual_terms())
    metrics = {name: values.numpy() for name, values in metrics.items()}
    scores = ood_scores({name: values[8:] for name, values in metrics.items()},
                        {name: values[:8] for name, values in metrics.items()})  # clf-perceptual and mse
    off_world = np.r_[np.zeros(8), np.ones(8)]
    assert roc_auc_score(off_world, scores) >= 0.95, scores
