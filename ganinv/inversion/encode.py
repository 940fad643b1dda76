"""Encoder inversion: one forward pass of an encoder network `E: images [N, 3, H, W] -> ws [N, num_ws, w_dim]`
(e.g. pSp, Richardson et al. 2021). Whatever E predicts internally (offsets from w_avg, ...) is E's business."""

from __future__ import annotations

import torch
from torch import nn

from ganinv.generators.layers import rows_independent


@torch.no_grad()
def encode(E: nn.Module, target: torch.Tensor) -> torch.Tensor:
    """`target [N, C, H, W]` in [-1, 1] -> `ws [N, num_ws, w_dim]` (on E's device, float32)."""
    assert target.ndim == 4, f"target must be [N, C, H, W], got {list(target.shape)}"
    tensors = [*E.parameters(), *E.buffers()]
    device = tensors[0].device if tensors else target.device
    target = target.to(device, torch.float32)
    if rows_independent(target) and len(target) > 1:  # each image alone: E's own layers batch as torch likes
        ws = torch.cat([E(image[None]) for image in target])
    else:
        ws = E(target)
    if ws.ndim != 3 or ws.shape[0] != target.shape[0]:
        raise ValueError(f"encoder {type(E).__name__} must return ws [N, num_ws, w_dim], got {list(ws.shape)}")
    return ws.float()
