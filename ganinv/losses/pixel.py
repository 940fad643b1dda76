"""Pixel losses, one value per image: mean squared error and mean absolute error over C, H, W."""

from __future__ import annotations

import torch
from torch import nn


class _PixelLoss(nn.Module):
    """A loss on the pixels themselves: nothing to precompute from the target."""

    def prepare(self, target: torch.Tensor) -> torch.Tensor:
        return target


class PixelMSE(_PixelLoss):
    """Mean squared error per image on [-1, 1] images: `[N, C, H, W] -> [N]`."""

    name = "mse"

    def forward(self, synth: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        return (synth - prepared).square().mean(dim=(1, 2, 3))


class PixelL1(_PixelLoss):
    """Mean absolute error per image on [-1, 1] images: `[N, C, H, W] -> [N]`."""

    name = "l1"

    def forward(self, synth: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        return (synth - prepared).abs().mean(dim=(1, 2, 3))
