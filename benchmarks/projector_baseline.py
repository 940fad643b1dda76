"""The baseline: the official StyleGAN2-ADA projector's loop (one image per call, fp32), rewritten from its
documented behaviour on our generator so that it can be timed next to the batched engine with the same networks.

What it keeps from the official `project()`: a deep copy of G per call; w_avg / w_std from `w_avg_samples` mapped z;
the generator's own `noise_const` buffers re-drawn N(0, 1) and optimised in place; Adam(betas 0.9, 0.999) on w and
the buffers; the same learning-rate and w-noise schedules; synthesis with `noise_mode='const'` and the default
(fused, batch-1) modulated convolutions; target features computed once; noise regularisation over the buffers;
whole-buffer renormalisation after each step; `float(loss)` every step (the official loop formats its progress line,
reading the loss back to the host, at every step); w recorded at every step. A generator without noise inputs
(StyleGAN3) has no buffers to optimise or regularise: w alone, as the engine does for it.
"""

from __future__ import annotations

import copy
import time

import torch

from ganinv.inversion.optimize import InversionConfig, latent_noise_std, learning_rate
from ganinv.losses.base import ImageLoss
from ganinv.losses.noise_regularization import noise_regularization, normalize_noise_


def project(G: torch.nn.Module, target: torch.Tensor, loss: ImageLoss, *,
            config: InversionConfig = InversionConfig()) -> tuple[torch.Tensor, float]:
    """Project one image `target [C, H, W]` in [-1, 1]. Returns (w after every step `[num_steps, w_dim]`,
    seconds spent in the step loop, measured with device synchronisation)."""
    assert target.ndim == 3
    device = target.device
    G = copy.deepcopy(G).eval().requires_grad_(False)
    w_avg, w_std = G.w_stats(config.w_avg_samples, seed=123)
    w_std = float(w_std)
    noise_bufs = [layer.noise_const for layer in G.synthesis.noise_layers()]
    prepared = loss.prepare(target[None])
    w_opt = w_avg.reshape(1, 1, -1).clone().requires_grad_(True)
    w_out = torch.zeros([config.num_steps, G.w_dim], device=device)
    optimizer = torch.optim.Adam([w_opt] + noise_bufs, betas=(0.9, 0.999), lr=config.initial_learning_rate)
    for buf in noise_bufs:
        buf[:] = torch.randn_like(buf)
        buf.requires_grad = True
    noise_maps = [buf[None, None] for buf in noise_bufs]  # [1, 1, r, r] views: the buffers, as one image
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for step in range(config.num_steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        w_noise = torch.randn_like(w_opt) * latent_noise_std(step, config, w_std)
        ws = (w_opt + w_noise).repeat([1, G.num_ws, 1])
        synth = G.synthesis(ws, noise_mode="const")
        dist = loss(synth, prepared).sum()
        total = dist + noise_regularization(noise_maps)[0] * config.regularize_noise_weight if noise_maps else dist
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        _ = f"step {step + 1}: dist {float(dist.detach()):.2f} loss {float(total.detach()):.2f}"
        w_out[step] = w_opt.detach()[0, 0]
        normalize_noise_(noise_maps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return w_out, time.perf_counter() - start
