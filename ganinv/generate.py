"""Images from seeds, drawn as the official scripts draw them (StyleGAN3's `gen_images.py`, StyleGAN2-ADA's
`generate.py`), so that a seed shows the same image here and there.

Seed s gives `z = np.random.RandomState(s).randn(1, z_dim)`; a conditional generator gets the one-hot label of
`class_idx`; a StyleGAN3 generator's input grid is moved by `user_transform(translate, rotate)` (translation in image
widths, rotation in degrees), as `gen_images.py --translate=x,y --rotate=deg` does. `ganinv.utils.images.to_uint8`
then turns images into the same 8-bit pixels as the official scripts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ganinv.generators.stylegan3 import user_transform


def seed_latents(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """`[N, z_dim]` float32: row i is `np.random.RandomState(seeds[i]).randn(z_dim)`."""
    return torch.from_numpy(np.stack([np.random.RandomState(int(s)).randn(z_dim) for s in seeds])).float()


def class_labels(c_dim: int, num: int, class_idx: int | None) -> torch.Tensor:
    """`[num, c_dim]`: one-hot `class_idx` for a conditional generator, empty for an unconditional one."""
    labels = torch.zeros([num, c_dim])
    if c_dim == 0:
        return labels
    if class_idx is None or not 0 <= class_idx < c_dim:
        raise ValueError(f"this generator is conditional ({c_dim} classes): pass class_idx between 0 and {c_dim - 1}")
    labels[:, class_idx] = 1
    return labels


@torch.no_grad()
def generate_images(G: torch.nn.Module, seeds: Sequence[int], *, truncation_psi: float = 1.0,
                    truncation_cutoff: int | None = None, class_idx: int | None = None, noise_mode: str = "const",
                    translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0,
                    batch_size: int = 16) -> torch.Tensor:
    """Images `[N, C, R, R]` in about [-1, 1] (on G's device), one per seed, in seed order.

    `noise_mode`: StyleGAN2's noise inputs (`const`, `random`, `none`; StyleGAN3 has none and ignores it).
    `translate` (x, y) and `rotate` (degrees) move StyleGAN3's input grid (replacing any transform stored with the
    generator, as `gen_images.py` does); other generators have none to move.
    Each image depends only on its seed, not on `batch_size`.
    """
    device = next(G.parameters()).device
    synthesis_kwargs: dict = dict(noise_mode=noise_mode)
    if hasattr(G.synthesis, "input"):  # always, as gen_images.py overwrites whatever transform the file holds
        synthesis_kwargs["transform"] = user_transform(translate, rotate).to(device)
    elif tuple(translate) != (0.0, 0.0) or rotate != 0.0:
        raise ValueError(f"translate and rotate move a StyleGAN3 generator's input grid; this generator is "
                         f"{getattr(G, 'architecture', type(G).__name__)}, which has none")
    z = seed_latents(seeds, G.z_dim).to(device)
    c = class_labels(G.c_dim, len(seeds), class_idx).to(device)
    chunks = []
    for start in range(0, len(seeds), batch_size):
        ws = G.mapping(z[start:start + batch_size], c[start:start + batch_size], truncation_psi=truncation_psi,
                       truncation_cutoff=truncation_cutoff)
        chunks.append(G.synthesis(ws, **synthesis_kwargs))
    return torch.cat(chunks)
