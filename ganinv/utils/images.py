"""Images as ganinv uses them: float tensors `[N, 3, H, W]` (or `[3, H, W]`) in [-1, 1], RGB.

Conversion to 8 bits follows the official StyleGAN2-ADA scripts (`x * 127.5 + 128`, clamped, truncated), so PNGs
written here match theirs byte for byte, and `from_pil` then `to_uint8` gives back the same bytes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """`[..., 3, H, W]` float in [-1, 1] -> uint8 in [0, 255], same shape and layout, on the CPU."""
    return (images.detach().to("cpu", torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def to_model_input(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 `[..., 3, H, W]` in [0, 255] -> float32 in [-1, 1], same shape and device (the inverse of `to_uint8`
    on its outputs: `to_uint8(to_model_input(p)) == p`)."""
    assert images_u8.dtype == torch.uint8, f"images must be uint8 pixels, got {images_u8.dtype}"
    return images_u8.float() / 127.5 - 1


def to_pil(image: torch.Tensor) -> Image.Image:
    """`[3, H, W]` float in [-1, 1] -> RGB PIL image."""
    assert image.ndim == 3 and image.shape[0] == 3, f"image must be [3, H, W], got {list(image.shape)}"
    return Image.fromarray(to_uint8(image).permute(1, 2, 0).numpy())


def from_pil(image: Image.Image) -> torch.Tensor:
    """PIL image (any mode; converted to RGB) -> `[3, H, W]` float32 in [-1, 1]."""
    array = np.array(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1


def make_image_grid(images: torch.Tensor, nrow: int | None = None) -> Image.Image:
    """`[N, 3, H, W]` in [-1, 1] -> one RGB image, `nrow` images per row (default: a near-square grid), row-major;
    empty cells are black."""
    from torchvision.utils import make_grid  # imported here: torchvision is slow to import and only needed here

    assert images.ndim == 4 and images.shape[1] == 3, f"images must be [N, 3, H, W], got {list(images.shape)}"
    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    grid = make_grid(to_uint8(images), nrow=nrow, padding=0)
    return Image.fromarray(grid.permute(1, 2, 0).numpy())


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Save `[N, 3, H, W]` in [-1, 1] as one image file (format from the suffix, e.g. PNG); returns the path."""
    path = Path(path)
    make_image_grid(images, nrow).save(path)
    return path


def with_column_labels(grid: Image.Image, labels: list[str], *, height: int = 14) -> Image.Image:
    """`grid` under a white strip `height` px tall that names each of its `len(labels)` equal columns, centred (an
    edit grid's strengths); PIL's built-in font, so nothing is read from disk."""
    if not labels or grid.width % len(labels):
        raise ValueError(f"{len(labels)} labels for a grid {grid.width} px wide: give one label per equal column")
    out = Image.new("RGB", (grid.width, grid.height + height), "white")
    out.paste(grid.convert("RGB"), (0, height))
    draw, font, column = ImageDraw.Draw(out), ImageFont.load_default(), grid.width // len(labels)
    for k, label in enumerate(labels):
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        draw.text((k * column + (column - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top), label,
                  fill="black", font=font)
    return out


def strength_label(strength: float) -> str:
    """An edit strength as a grid column's label: '-3', '0', '+1.5'."""
    return f"{strength:+g}" if strength else "0"
