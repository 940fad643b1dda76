"""A fixed random attribute "classifier" on images, for tests and demos when no trained classifier exists.

Each attribute is a sigmoid of a random linear read-out of the 4x4 average-pooled image, centred and scaled on
calibration images so that about half of them are positive. `correlated={'b': ('a', rho)}` makes b's read-out
`rho * u_a + sqrt(1 - rho^2) * u_b`, a deliberately correlated pair for conditional-manipulation experiments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

POOL = 4


class SyntheticAttributes:
    """images `[N, C, H, W]` in [-1, 1] -> `{attribute: probability [N]}`."""

    def __init__(self, names: Sequence[str], calibration_images: torch.Tensor, *, seed: int = 0,
                 correlated: Mapping[str, tuple[str, float]] | None = None, sharpness: float = 4.0):
        self.names = list(names)
        dim = calibration_images.shape[1] * POOL * POOL
        gen = torch.Generator().manual_seed(seed)
        readouts = {name: F.normalize(torch.randn(dim, generator=gen), dim=0) for name in self.names}
        for name, (source, rho) in (correlated or {}).items():
            own = readouts[name] - (readouts[name] @ readouts[source]) * readouts[source]
            readouts[name] = rho * readouts[source] + math.sqrt(1 - rho ** 2) * F.normalize(own, dim=0)
        self.readout = torch.stack([readouts[name] for name in self.names], dim=1)  # [dim, A]
        raw = self._raw(calibration_images)
        self.center, self.spread = raw.median(dim=0).values, raw.std(dim=0).clamp_min(1e-8)
        self.sharpness = sharpness

    def _raw(self, images: torch.Tensor) -> torch.Tensor:
        features = F.adaptive_avg_pool2d(images.float(), POOL).flatten(1)
        return features @ self.readout.to(features)

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = (self._raw(images) - self.center.to(images)) / self.spread.to(images) * self.sharpness
        probs = torch.sigmoid(logits)
        return {name: probs[:, i] for i, name in enumerate(self.names)}
