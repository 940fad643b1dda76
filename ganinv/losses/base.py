"""What the inversion engine needs from a loss: a per-image distance with constant work on the target done once."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class ImageLoss(Protocol):
    """A distance between images `[N, C, H, W]` in [-1, 1], one value per image.

    `prepare(target)` does the work that depends only on the target (features of a perceptual net) once per
    inversion, under `torch.no_grad`; `__call__(synth, prepared)` returns `[N]` and must not mix images (no
    reduction over the batch), so that each image of a batch is its own optimization problem.
    """

    name: str

    def prepare(self, target: torch.Tensor) -> Any: ...

    def __call__(self, synth: torch.Tensor, prepared: Any) -> torch.Tensor: ...
