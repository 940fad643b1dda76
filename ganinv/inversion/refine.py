"""Refinement: continue an optimisation-based inversion (`invert`, `hybrid`) from the codes it stored, for more steps,
without starting over (users of the reference projector ask for this: NVlabs/stylegan2-ada-pytorch#56).

What "continue" means here, so that S steps and then N more land where S + N steps in one go do (the benchmark's
goal: within 1 % on the reconstruction metrics; `benchmarks/encoder_any_generator.py`):

- **The schedule is the run's total.** Codes made by an S-step run continue as steps S ... S+N-1 of an (S+N)-step
  schedule (`continued_config`): the learning rate and the latent noise follow `learning_rate(step)` and
  `latent_noise_std(step)` of the longer schedule, so the last N steps end in the same ramp-down the one-go run
  ends in. (The S-step run already ramped down to 0; resuming at step S of the longer schedule raises the learning
  rate again to where the one-go run is at that point.)
- **The same random streams.** Each image's stream is seeded as in the first run (the per-image seed rule,
  `ganinv.utils.seeds.seed_from_id` in the flows); the draws steps 0 ... S-1 would have made are drawn and
  discarded, so step s perturbs the latent with the draw it has in the one-go run.
- **The same losses and settings**: the config the codes were made with (the store records it), longer.
- **Adam restarts** (zero moments, bias correction from step 1). Keeping the moments would add two tensors the size
  of the codes to every stored item, and restarting is a gain, not a loss: Adam's second moments (beta2 = 0.999)
  remember the first steps' large gradients for the whole run and damp its last steps. Measured on faces64 (8
  held-out faces, W+, clf-perceptual; BENCHMARKS.md): 100 + 100 steps 27.59 dB against 26.82 for 200 in one go, and
  the one-go run's own state at step 100 continued with Adam restarted 27.85 dB.
- Noise maps: a run that optimised noise maps (`optimize_noise=True` with a generator that has noise inputs) needs
  them back (`noise=`): the codes alone do not reproduce its images. Corpora store codes only and invert with
  `optimize_noise=False`, where the ws are the whole state.

Deterministic: the same codes, targets, seeds and config give the same result (bitwise on CPU).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import nn

from ganinv.inversion.optimize import InversionConfig, InversionResult, build_problem
from ganinv.losses.base import ImageLoss


def continued_config(config: InversionConfig, more_steps: int) -> InversionConfig:
    """The config of a run `config.num_steps + more_steps` long: what the refined codes are the result of."""
    if more_steps < 1:
        raise ValueError(f"more_steps must be >= 1, got {more_steps}")
    return dataclasses.replace(config, num_steps=config.num_steps + more_steps)


def refine(G: nn.Module, target: torch.Tensor, ws: torch.Tensor, config: InversionConfig, *, more_steps: int,
           seed: int | Sequence[int] = 0, noise: Sequence[torch.Tensor] | None = None,
           anchor_ws: torch.Tensor | None = None, mask: torch.Tensor | None = None,
           loss_fn: ImageLoss | None = None) -> InversionResult:
    """Run `more_steps` more steps of the inversion that made `ws [N, num_ws, w_dim]` from `target [N, C, H, W]`.

    `config`: the config the codes were made with (space 'w' or 'w+'; `num_steps` = the steps already done); the
    result's `config` is `continued_config(config, more_steps)`, to record with the codes (and to pass here for a
    further refinement). `seed`: the per-image seeds of the first run. `noise`: its optimised noise maps, when it
    optimised them. `anchor_ws`: the encoder's output, when `config.regularize_encoder_weight` > 0 (hybrid's
    in-domain term keeps the latent near it, not near the codes being refined). `mask`, `loss_fn`: as for `invert`.
    """
    if config.space not in ("w", "w+"):
        raise ValueError(f"refinement continues codes in W or W+ (the ws a store keeps); got space {config.space!r}")
    total = continued_config(config, more_steps)
    has_noise = total.optimize_noise and bool(G.synthesis.noise_layers())
    if has_noise != (noise is not None):
        raise ValueError("a run that optimised noise maps continues only with them (pass noise=...), and only such a "
                         "run takes them: codes alone continue with optimize_noise=False")
    if total.regularize_encoder_weight > 0 and anchor_ws is None:
        raise ValueError("regularize_encoder_weight > 0 keeps the latent near the encoder's output: pass anchor_ws")
    problem = build_problem(G, target, total, init=ws, mask=mask, seed=seed, loss_fn=loss_fn)
    try:
        with torch.no_grad():
            for buf, given in zip(problem.noise_bufs or [], noise or []):
                assert buf.shape == given.shape, f"noise map {list(given.shape)} where {list(buf.shape)} belongs"
                buf.copy_(given)
            if anchor_ws is not None:
                anchor = anchor_ws.to(problem.device, torch.float32)
                problem.latent_init = anchor.mean(dim=1, keepdim=True) if total.space == "w" else anchor.clone()
        history, steps = problem.run(start_step=config.num_steps)
        return problem.finish(history, steps)
    finally:
        problem.close()
