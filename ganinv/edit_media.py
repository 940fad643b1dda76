"""Pictures of what inverted codes are used for: morph sequences as a GIF or a strip grid, the StyleGAN
style-mixing figure, and side-by-side restoration figures (observed / baseline / restored / truth).

Writers take rendered images (`[..., 3, H, W]` in [-1, 1]), not codes: the codes come from `ganinv.edit`
(`interpolate` for morphs, `style_mix` for mixes, both returning ws batches) or an inversion, and whoever holds the
generator renders them (the CLI, a flow's worker). Pillow, and matplotlib for titled figures.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from PIL import Image

from ganinv.utils.images import make_image_grid, to_pil, to_uint8


def save_gif(frames: torch.Tensor, path: str | os.PathLike, *, fps: float = 12.0, boomerang: bool = True) -> Path:
    """`frames [T, 3, H, W]` as an endlessly looping GIF at `fps`; `boomerang` plays them forward then back, so the
    loop has no jump. Returns the path."""
    assert frames.ndim == 4 and frames.shape[1] == 3 and len(frames) >= 1, \
        f"frames must be [T, 3, H, W], got {list(frames.shape)}"
    images = [to_pil(f) for f in frames]
    if boomerang and len(images) > 2:
        images = images + images[-2:0:-1]
    path = Path(path)
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(20, round(1000 / fps)), optimize=False)
    return path


def morph_grid(frames: torch.Tensor) -> Image.Image:
    """`frames [P, T, 3, H, W]` (P morphs of T frames) -> one image, a morph per row."""
    assert frames.ndim == 5 and frames.shape[2] == 3, f"frames must be [P, T, 3, H, W], got {list(frames.shape)}"
    return make_image_grid(frames.flatten(0, 1), nrow=frames.shape[1])


def style_mix_figure(content: torch.Tensor, style: torch.Tensor, mixed: torch.Tensor) -> Image.Image:
    """The StyleGAN paper's mixing figure (Karras et al. 2019, fig. 3): the style sources along the top, the content
    sources down the left, and `mixed[i, j]` (content i with style j's layers) in row i, column j.

    content `[R, 3, H, W]`, style `[C, 3, H, W]`, mixed `[R, C, 3, H, W]`; the top-left cell is white."""
    rows, cols = content.shape[0], style.shape[0]
    if mixed.shape[:2] != (rows, cols) or mixed.shape[2:] != content.shape[1:] or style.shape[1:] != content.shape[1:]:
        raise ValueError(f"mixed must be [{rows}, {cols}, *image] for {rows} content and {cols} style images of one "
                         f"size, got content {list(content.shape)}, style {list(style.shape)}, mixed "
                         f"{list(mixed.shape)}")
    corner = torch.ones_like(content[:1])
    top = torch.cat([corner, style])
    body = torch.cat([content[:, None], mixed], dim=1)
    return make_image_grid(torch.cat([top, body.flatten(0, 1)]), nrow=cols + 1)


def save_comparison_figure(columns: Mapping[str, torch.Tensor], path: str | os.PathLike, *, title: str = "") -> Path:
    """One row per image, one titled column per entry of `columns` (`{title: [N, 3, H, W]}`, same N), pixels shown
    unsmoothed; e.g. observed / baseline / restored / truth. Returns the path (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = {len(images) for images in columns.values()}
    if len(sizes) != 1:
        raise ValueError(f"every column needs the same number of images, got {[len(c) for c in columns.values()]}")
    n = sizes.pop()
    fig, axes = plt.subplots(n, len(columns), figsize=(1.6 * len(columns), 1.6 * n + 0.5), squeeze=False)
    for j, (name, images) in enumerate(columns.items()):
        axes[0, j].set_title(name, fontsize=7)
        for i in range(n):
            axes[i, j].imshow(to_uint8(images[i]).permute(1, 2, 0).numpy(), interpolation="nearest")
            axes[i, j].axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
