"""A perceptual distance on the embedded world's attribute classifier features (`clf-perceptual`).

It follows LPIPS's recipe without its calibration: unit-normalise each feature map over channels, take the squared
difference, sum over channels, average over space, sum over layers. It is *not* LPIPS (the network is a small face
attribute CNN, not VGG, and no layer weights were fitted to human judgments); its use is that it works offline.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch
from torch import nn


class FeatureExtractor(Protocol):
    """Anything with `features(images [N, 3, H, W] in [-1, 1]) -> list of [N, C_l, H_l, W_l]`, for images of the
    size the loss is given: a network with a fixed input size resizes inside `features` (the attribute classifier
    area-resizes to its `config.resolution`), so there is one resize, in the network that knows its size."""

    def features(self, images: torch.Tensor) -> Sequence[torch.Tensor]: ...


def _unit_normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return feat / (feat.square().sum(dim=1, keepdim=True).sqrt() + eps)


class ClassifierPerceptualLoss(nn.Module):
    """`[N, 3, H, W]` pairs in [-1, 1] -> `[N]` distance on `classifier.features` (which takes any image size)."""

    name = "clf-perceptual"

    def __init__(self, classifier: FeatureExtractor):
        super().__init__()
        if not callable(getattr(classifier, "features", None)):
            raise TypeError("clf-perceptual needs a module with a `features(images) -> list[Tensor]` method, got "
                            f"{type(classifier).__name__}")
        self.classifier = classifier.eval().requires_grad_(False)

    @classmethod
    def from_classifier(cls, source: str = "builtin") -> "ClassifierPerceptualLoss":
        """On the attribute classifier `source` (`load_classifier`'s: 'builtin', or a world's own file, such as a
        training run's `classifier.safetensors`)."""
        try:
            from ganinv.models.attributes import load_classifier
        except ImportError as err:
            raise ImportError("loss 'clf-perceptual' needs ganinv.models.attributes (the embedded world's attribute "
                              f"classifier), which could not be imported: {err}") from err
        return cls(load_classifier(source=source))

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        assert images.ndim == 4, f"images must be [N, C, H, W], got {list(images.shape)}"
        return [_unit_normalize(f) for f in self.classifier.features(images)]

    @torch.no_grad()
    def prepare(self, target: torch.Tensor) -> list[torch.Tensor]:
        return self._features(target)

    def forward(self, synth: torch.Tensor, prepared: list[torch.Tensor]) -> torch.Tensor:
        dist = torch.zeros(synth.shape[0], device=synth.device, dtype=synth.dtype)
        for feat, target_feat in zip(self._features(synth), prepared):
            dist = dist + (feat - target_feat).square().sum(dim=1).mean(dim=(1, 2))
        return dist
