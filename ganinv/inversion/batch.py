"""One batch of a dataset inversion: invert the targets in a mode, then keep what a corpus keeps of each image (its
ws, its per-item metrics, a thumbnail of its reconstruction). Pure torch; the shard worker above calls it.

Modes (users pick by name, `--mode`):
- `optimize`: `invert` from `w_avg` (the StyleGAN2 projector);
- `encoder`: one pass of an encoder (`encode`), no optimisation (steps = 0);
- `hybrid`: the encoder's output, then optimisation from there (`hybrid`; Zhu et al. 2020).

The metrics are those the codes alone reproduce: when noise maps were optimised (they are not stored), or when the
mode optimises nothing, the ws are rendered again with the generator's constant noise and scored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganinv.inversion.encode import encode
from ganinv.inversion.hybrid import hybrid
from ganinv.inversion.optimize import InversionConfig, invert
from ganinv.item_metrics import metric_names
from ganinv.losses.registry import PIXEL_LOSSES, build_loss, parse_loss_spec
from ganinv.metrics.reconstruction import reconstruction_metrics
from ganinv.utils.images import to_uint8

MODES = ("optimize", "encoder", "hybrid")


@dataclass(frozen=True)
class BatchResult:
    """Per image of the batch: ws `[n, num_ws, w_dim]` float32, metrics `{name: [n] float32}` (the names of
    `item_metric_names(config.loss)`), thumbnails `[n, t, t, 3]` uint8 or None."""

    ws: np.ndarray
    metrics: dict[str, np.ndarray]
    thumbnails: np.ndarray | None = None


def item_metric_names(loss: str) -> tuple[str, ...]:
    """The per-item metrics a run with `loss` records: mse, psnr, ssim, the loss's perceptual terms, final_loss,
    steps, seconds (ganinv/item_metrics.py)."""
    return metric_names(name for _, name in parse_loss_spec(loss) if name not in PIXEL_LOSSES)


def invert_batch(G: nn.Module, target: torch.Tensor, *, mode: str, config: InversionConfig, seeds: Sequence[int],
                 E: nn.Module | None = None, thumbnail_size: int | None = None) -> BatchResult:
    """`target [n, 3, R, R]` in [-1, 1] -> the batch's ws, metrics and thumbnails. `seeds`: one per image (each
    image's random stream, `ganinv.utils.seeds.seed_from_id`); `E`: the encoder, for modes encoder and hybrid."""
    assert target.ndim == 4, f"target must be [n, 3, R, R], got {list(target.shape)}"
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    if mode != "optimize" and E is None:
        raise ValueError(f"mode {mode!r} needs an encoder E")
    target = target.to(next(G.parameters()).device)
    t0 = time.perf_counter()
    if mode == "encoder":
        ws, steps, result = encode(E, target), 0, None
    else:
        result = (hybrid(G, E, target, config, seed=list(seeds)) if mode == "hybrid"
                  else invert(G, target, config, seed=list(seeds)))
        ws, steps = result.ws, config.num_steps
    if result is not None and not config.optimize_noise:
        images, final_loss, metrics = result.images, result.losses, result.metrics
    else:  # what the stored codes reproduce on their own (const noise), not the optimised noise maps they lack
        images, final_loss, metrics = evaluate(G, ws, target, config.loss)
    n = len(seeds)
    seconds = (time.perf_counter() - t0) / n
    out = {name: value.float().cpu().numpy() for name, value in metrics.items()}
    out.update(final_loss=final_loss.float().cpu().numpy(), steps=np.full(n, steps, np.float32),
               seconds=np.full(n, seconds, np.float32))
    return BatchResult(ws=ws.float().cpu().numpy(), metrics=out,
                       thumbnails=None if not thumbnail_size else thumbnails(images, thumbnail_size))


@torch.no_grad()
def evaluate(G: nn.Module, ws: torch.Tensor, target: torch.Tensor, loss_spec: str
             ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(images, loss [n], metrics) of `ws` rendered with the generator's const noise, as `invert` reports them."""
    images = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    loss = build_loss(loss_spec, device=target.device)
    return images, loss(images, loss.prepare(target)), reconstruction_metrics(images, target,
                                                                              perceptual=loss.perceptual_terms())


def thumbnails(images: torch.Tensor, size: int) -> np.ndarray:
    """`images [n, 3, R, R]` in about [-1, 1] -> uint8 `[n, size, size, 3]` (area-downsampled)."""
    small = F.interpolate(images.detach().clamp(-1, 1), size=(size, size), mode="area")
    return to_uint8(small).permute(0, 2, 3, 1).numpy()
