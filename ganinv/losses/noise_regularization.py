"""Noise regularisation of StyleGAN2's projector (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN", sec. 5 / appendix D): penalise spatial autocorrelation of the optimised noise maps at every scale, so that
they cannot smuggle image content past the generator.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def noise_regularization(noise_bufs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over buffers and scales of the squared lag-1 autocorrelation along x and y, per image.

    `noise_bufs`: tensors `[N, 1, r, r]`. Each map is compared with itself shifted by one pixel (wrapping around)
    horizontally and vertically; then it is average-pooled by 2 and the test repeats until the map is 8x8 or smaller.
    Returns `[N]`: the means run over each image's own pixels only.
    """
    assert len(noise_bufs) > 0 and all(buf.ndim == 4 for buf in noise_bufs), "noise_bufs must be [N, 1, r, r] each"
    reg = torch.zeros(noise_bufs[0].shape[0], device=noise_bufs[0].device, dtype=noise_bufs[0].dtype)
    for noise in noise_bufs:
        while True:
            reg = reg + (noise * noise.roll(shifts=1, dims=3)).mean(dim=(1, 2, 3)).square()
            reg = reg + (noise * noise.roll(shifts=1, dims=2)).mean(dim=(1, 2, 3)).square()
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return reg


@torch.no_grad()
def normalize_noise_(noise_bufs: Sequence[torch.Tensor]) -> None:
    """In place: shift and scale each image's map to zero mean and unit variance (per image, never over the batch)."""
    for buf in noise_bufs:
        buf.sub_(buf.mean(dim=(1, 2, 3), keepdim=True))
        buf.mul_(buf.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt())
