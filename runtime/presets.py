"""What a store's inversion starts from: the preset of its mode (`inversion_preset`), or for a store that exists the
settings it was made with (`recorded_preset`), and pivotal refinement's likewise (`refine_preset`).
`InvertConfig.resolve` lays the user's fields over them.

A preset may improve from one version to the next (the hybrid one did: BENCHMARKS.md, "Hybrid inversion: Adam's
memory"); a store compares its record on every run, so an existing store keeps the preset it was made with and a
scheduled rerun goes on as before, while new stores get today's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from runtime.config import DEFAULT_GENERATOR


def inversion_preset(mode: str, encoder: str | None, *, generator: str | None = None):
    """The InversionConfig a mode starts from. The store keeps codes, not per-image noise maps, so the codes alone
    must reproduce what the metrics show: optimize_noise is off everywhere.

    - optimize: the StyleGAN2 projector's settings (a start at w_avg);
    - encoder/hybrid, with any encoder (the built-in one or a file from `ganinv train-encoder`): the start at an
      encoder's output, `ganinv.inversion.hybrid.ENCODER_START_CONFIG` (W+, 100 steps, no latent noise or ramp-up,
      Adam with short memories; its docstring has the measurements). With faces64's own encoder, or any encoder of
      the built-in faces64 generator, the loss is the embedded world's perceptual distance (its attribute
      classifier's features, on disk); otherwise the projector's (lpips-vgg) unless `--loss` says.
    """
    from ganinv.inversion import ENCODER_START_CONFIG, InversionConfig

    if mode == "optimize" or encoder is None:
        return InversionConfig(optimize_noise=False)
    offline = {"loss": "clf-perceptual"} if DEFAULT_GENERATOR in (encoder, generator) else {}
    return dataclasses.replace(ENCODER_START_CONFIG, optimize_noise=False, **offline)


def recorded_preset(recorded: Mapping[str, Any] | None, mode: str, encoder: str | None):
    """The InversionConfig of a store's inversion `recorded`, when it was made in `mode` with `encoder` (else None:
    today's preset applies, and a store made otherwise is refused when it is opened)."""
    from ganinv.inversion import InversionConfig

    if not recorded or recorded.get("mode") != mode:
        return None
    if (recorded.get("encoder") or {}).get("source") != (encoder if mode != "optimize" else None):
        return None
    try:
        return InversionConfig.from_dict(dict(recorded["inversion"]))
    except (KeyError, TypeError, ValueError):  # a record this version cannot read: the store refuses it on opening
        return None


def refine_preset(inversion, refine: Mapping[str, Any], recorded: Mapping[str, Any] | None = None):
    """The PivotalConfig `--refine pivotal` starts from, with the fields of `refine` changed: for a store refined
    before (`recorded`, its inversion record), the settings it was refined with, as `recorded_preset` keeps an
    inversion's; else PTI's, except that where the inversion preset uses the embedded world's offline perceptual
    loss, tuning does too (`clf-perceptual+mse` instead of LPIPS + L2, whose VGG weights may not be on disk)."""
    from ganinv.inversion.pivotal import PivotalConfig

    if recorded and recorded.get("refine"):
        try:
            return dataclasses.replace(PivotalConfig.from_dict(dict(recorded["refine"])), **refine)
        except TypeError:  # a record this version cannot read: the store refuses it on opening
            pass
    offline = inversion.loss == "clf-perceptual"
    return PivotalConfig(**{**({"loss": "clf-perceptual+mse"} if offline else {}), **refine})


def builtin_encoder(generator: str) -> str | None:
    """The built-in encoder trained for a built-in generator name, else None."""
    from ganinv.models.encoder import BUILTIN_ENCODERS

    return generator if generator in BUILTIN_ENCODERS else None
