"""Hybrid inversion (Zhu et al. 2020, "In-Domain GAN Inversion for Real Image Editing", sec. 3.2): start the
optimization from an encoder's output instead of `w_avg`, so a short run reaches what optimization alone needs many
steps for, optionally with a term keeping the latent near the encoder's output.

The in-domain term here is `regularize_encoder_weight * mean((latent - E(x))^2)`, a cheap stand-in for idinvert's
domain regulariser `||w - E(G(w))||^2` (which re-encodes the reconstruction at every step): both keep the latent
where the encoder, trained on generated images, says real images of that kind live.

Through a degradation (restoration), the encoder sees the degradation's plain restoration of the observation
(`degradation.baseline`: holes mean-filled, low resolution upsampled bicubically, grayscale kept as grey RGB, noise
blurred): an image of the generator's size that looks like its training images, which the raw observation
(a grey hole, 16 px) would not.

`E` is a network or an encoder file (a path or built-in name, `ganinv.models.encoder.load_encoder`). An encoder that
records the generator it was trained for is refused with any other generator (`EncoderGeneratorMismatch`).

`ENCODER_START_CONFIG` is the optimisation measured to suit a start at an encoder's output: no latent noise and no
learning-rate ramp-up (the projector's start-up exploration, tuned for a start at `w_avg`, throws much of the
encoder's work away), and Adam with short memories (betas 0.7, 0.7 instead of 0.9, 0.999) at the projector's
learning rate of 0.1. With beta2 = 0.999 the first steps' large gradients set the step size for the whole run and
damp the rest; on 32 held-out faces of the embedded world (clf-perceptual) this start gives 22.6 / 24.3 / 26.2 dB
at 20 / 40 / 100 steps against 21.5 / 22.4 / 24.4 with the projector's betas at a learning rate of 0.03
(BENCHMARKS.md, "Hybrid inversion: Adam's memory").
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import torch
from torch import nn

from ganinv.inversion.degradations import Degradation, resolve_degradation
from ganinv.inversion.encode import encode
from ganinv.inversion.optimize import InversionConfig, InversionResult, invert
from ganinv.losses.base import ImageLoss
from ganinv.models.encoder import check_encoder_for, load_encoder

HYBRID_CONFIG = InversionConfig(space="w+", num_steps=100)
ENCODER_START_CONFIG = dataclasses.replace(HYBRID_CONFIG, initial_learning_rate=0.1, betas=(0.7, 0.7),
                                           initial_noise_factor=0.0, lr_rampup_length=0.0)


def hybrid(G: nn.Module, E: nn.Module | str | os.PathLike, target: torch.Tensor,
           config: InversionConfig | None = None, *,
           mask: torch.Tensor | None = None, degradation: Degradation | None = None, seed: int | Sequence[int] = 0,
           loss_fn: ImageLoss | None = None, **overrides: Any) -> InversionResult:
    """Encode `target [N, C, H, W]` with `E`, then optimise from there with `invert`.

    `config` defaults to `HYBRID_CONFIG` (W+, 100 steps, otherwise the projector's settings); keyword `overrides`
    change its fields, e.g. `num_steps=300, regularize_encoder_weight=0.1`. The result's `init_ws` holds E's output.
    `mask` / `degradation`: as for `invert` (`target` is then the observation); E encodes its plain restoration.
    `E`: a network, or an encoder file (path or built-in name) loaded onto G's device; either is checked against G.
    """
    E = as_encoder(E, G)
    degradation = resolve_degradation(mask, degradation)
    encoder_input = target if degradation is None else encoder_view(degradation, target)
    ws_encoder = encode(E, encoder_input)
    result = invert(G, target, dataclasses.replace(config or HYBRID_CONFIG, **overrides), init=ws_encoder,
                    degradation=degradation, seed=seed, loss_fn=loss_fn)
    result.init_ws = ws_encoder
    return result


def encoder_view(degradation: Degradation, observed: torch.Tensor) -> torch.Tensor:
    """What the encoder sees of an observation: its plain restoration, `[N, C, H, W]` in [-1, 1]."""
    observed = observed.float()
    return degradation.to(observed.device).baseline(degradation.project(observed))


def as_encoder(E: nn.Module | str | os.PathLike, G: nn.Module) -> nn.Module:
    """`E` itself or the encoder file it names, refused (`EncoderGeneratorMismatch`) unless it belongs to `G`."""
    if isinstance(E, nn.Module):
        check_encoder_for(E, G)
        return E
    return load_encoder(E, device=next(G.parameters()).device, generator=G)
