"""Fréchet distance between Gaussians fitted to features (Heusel et al. 2017, "GANs Trained by a Two Time-Scale
Update Rule...", eq. 6): `|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`. With Inception features it is FID; ganinv
also uses it on the attribute classifier's features (FD-clf), which is not FID."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch


def feature_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean `[D]` and covariance `[D, D]` (float64, unbiased) of `features [N, D]`, N >= 2."""
    if isinstance(features, torch.Tensor):
        features = features.detach().double().cpu().numpy()
    feats = np.asarray(features, np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"features must be [N, D] with N >= 2, got shape {feats.shape}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); adds `eps * I` when the product is singular."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not match: mu {mu1.shape} {mu2.shape}, sigma {sigma1.shape} {sigma2.shape}")
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real  # imaginary parts are numerical noise for PSD inputs
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@torch.no_grad()
def embedding_frechet_distance(real: torch.Tensor, fake: torch.Tensor, embed, *, batch_size: int = 256) -> float:
    """Fréchet distance between `embed(real)` and `embed(fake)` features; images `[N, 3, H, W]` in [-1, 1].

    With `embed = AttributeClassifier.embedding` this is ganinv's FD-clf: FID's formula on the embedded world's
    attribute-classifier features (256-d), not FID. Like FID it is biased upward for small N: report N with it.
    """
    assert real.ndim == fake.ndim == 4, f"real, fake must be [N, 3, H, W], got {list(real.shape)}, {list(fake.shape)}"

    def features(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([embed(images[i:i + batch_size]).float().cpu() for i in range(0, len(images), batch_size)])

    with warnings.catch_warnings():  # N < D makes the covariances singular; frechet_distance handles it
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        return frechet_distance(*feature_statistics(features(real)), *feature_statistics(features(fake)))
