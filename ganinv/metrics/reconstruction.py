"""Per-image reconstruction metrics: MSE and PSNR on [0, 1]-scaled images, SSIM (torchmetrics, Wang et al. 2004),
and any perceptual distances the caller provides (LPIPS only when its calibrated trunk is on disk)."""

from __future__ import annotations

from typing import Mapping

import torch

from ganinv.losses.base import ImageLoss
from ganinv.losses.lpips_distance import trunk_weights_path


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped (what an 8-bit export would show)."""
    return ((images.float() + 1) / 2).clamp(0, 1)


def available_lpips(device: torch.device | str | None = None, *, net: str = "vgg") -> dict[str, ImageLoss]:
    """`{'lpips-vgg': loss}` when torchvision's trunk file is on disk (built once per process), else `{}`."""
    from ganinv.losses.registry import build_loss

    return {f"lpips-{net}": build_loss(f"lpips-{net}", device=device)} if trunk_weights_path(net).is_file() else {}


@torch.no_grad()
def reconstruction_metrics(x: torch.Tensor, y: torch.Tensor, *,
                           perceptual: Mapping[str, ImageLoss] | None = None) -> dict[str, torch.Tensor]:
    """Compare reconstructions `x` with targets `y`, both `[N, C, H, W]` in [-1, 1]; every value is `[N]`.

    Keys: `mse` (on [0, 1]), `psnr` (dB, peak 1), `ssim` (Wang et al. 2004: 11x11 Gaussian window of sigma 1.5,
    images reflect-padded by 5 px, so at least 6 px a side), and one key per entry of `perceptual` (e.g.
    `{'lpips-vgg': LPIPSLoss('vgg')}`).
    """
    # Imported here, by the processes that compute metrics: importing any part of torchmetrics runs its package's
    # __init__, i.e. all of it (scipy.signal, and torchvision.models for its ARNIQA metric): ~2.5 s of CPU, ~0.9 s
    # where LPIPS has already imported torchvision.
    from torchmetrics.functional.image import structural_similarity_index_measure

    assert x.ndim == 4 and x.shape == y.shape, f"x, y must be [N, C, H, W] alike: {list(x.shape)}, {list(y.shape)}"
    x01, y01 = to_unit_range(x), to_unit_range(y)
    mse = (x01 - y01).square().mean(dim=(1, 2, 3))
    metrics = {
        "mse": mse,
        "psnr": -10 * torch.log10(mse.clamp_min(1e-12)),
        "ssim": structural_similarity_index_measure(x01, y01, data_range=1.0, reduction="none"),
    }
    for name, loss in (perceptual or {}).items():
        metrics[name] = loss(x, loss.prepare(y))
    return metrics
