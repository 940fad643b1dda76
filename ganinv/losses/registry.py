"""Losses picked by name (`--loss lpips-vgg`, `--loss 'lpips-vgg+0.1*mse'`), built once per process and reused."""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ganinv.losses.base import ImageLoss
from ganinv.losses.classifier_perceptual import ClassifierPerceptualLoss
from ganinv.losses.lpips_distance import LPIPSLoss
from ganinv.losses.pixel import PixelL1, PixelMSE

LOSSES: dict[str, Callable[[], ImageLoss]] = {
    "mse": PixelMSE,
    "l1": PixelL1,
    "lpips-vgg": lambda: LPIPSLoss("vgg"),
    "lpips-alex": lambda: LPIPSLoss("alex"),
    "clf-perceptual": ClassifierPerceptualLoss.builtin,
}
PIXEL_LOSSES = ("mse", "l1")
_TERM = re.compile(r"^\s*(?:(?P<weight>[0-9.eE\-]+)\s*\*\s*)?(?P<name>[a-z0-9\-]+)\s*$")
_CACHE: dict[tuple[str, str], "WeightedLoss"] = {}


def parse_loss_spec(spec: str | Sequence[str]) -> tuple[tuple[float, str], ...]:
    """`'lpips-vgg+0.1*mse'` or `['lpips-vgg', '0.1*mse']` -> `((1.0, 'lpips-vgg'), (0.1, 'mse'))`."""
    parts = spec.split("+") if isinstance(spec, str) else [p for s in spec for p in s.split("+")]
    terms = []
    for part in parts:
        match = _TERM.match(part)
        if match is None or match["name"] not in LOSSES:
            raise ValueError(f"loss term {part!r} in {spec!r} is not understood: write '[weight*]name' terms joined "
                             f"by '+', names from {sorted(LOSSES)} (e.g. 'lpips-vgg+0.1*mse')")
        try:
            weight = float(match["weight"]) if match["weight"] else 1.0
        except ValueError:
            raise ValueError(f"loss weight {match['weight']!r} in {spec!r} is not a number") from None
        terms.append((weight, match["name"]))
    if not terms:
        raise ValueError(f"loss spec {spec!r} names no loss; choose from {sorted(LOSSES)}")
    return tuple(terms)


def canonical_loss_spec(spec: str | Sequence[str]) -> str:
    """One spelling per loss (`'lpips-vgg+0.1*mse'`), the form saved in configs."""
    return "+".join(name if weight == 1 else f"{weight:g}*{name}" for weight, name in parse_loss_spec(spec))


class WeightedLoss(nn.Module):
    """`sum_k weight_k * loss_k(synth, target)` per image; `[N, C, H, W]` pairs -> `[N]`."""

    def __init__(self, terms: Sequence[tuple[float, ImageLoss]]):
        super().__init__()
        self.weights = [float(w) for w, _ in terms]
        self.terms = nn.ModuleList([t for _, t in terms])
        self.name = "+".join(t.name if w == 1 else f"{w:g}*{t.name}" for w, t in zip(self.weights, self.terms))

    def perceptual_terms(self) -> dict[str, ImageLoss]:
        """The terms that are not pixel losses, by name: what reconstruction metrics report beside MSE/PSNR/SSIM."""
        return {t.name: t for t in self.terms if t.name not in PIXEL_LOSSES}

    @torch.no_grad()
    def prepare(self, target: torch.Tensor) -> list[Any]:
        return [t.prepare(target) for t in self.terms]

    def forward(self, synth: torch.Tensor, prepared: list[Any]) -> torch.Tensor:
        total = torch.zeros(synth.shape[0], device=synth.device, dtype=synth.dtype)
        for weight, term, prep in zip(self.weights, self.terms, prepared):
            total = total + weight * term(synth, prep)
        return total


def build_loss(spec: str | Sequence[str], *, device: torch.device | str | None = None) -> WeightedLoss:
    """The loss named by `spec` on `device`, built on first use and cached for the process (a worker's lifetime)."""
    key = (canonical_loss_spec(spec), str(torch.device(device or "cpu")))
    if key not in _CACHE:
        terms = [(weight, LOSSES[name]()) for weight, name in parse_loss_spec(key[0])]
        _CACHE[key] = WeightedLoss(terms).to(key[1])
    return _CACHE[key]


def as_weighted_loss(loss: ImageLoss) -> WeightedLoss:
    """Wrap a single loss object (e.g. `ClassifierPerceptualLoss(my_net)`) so the engine sees one interface."""
    return loss if isinstance(loss, WeightedLoss) else WeightedLoss([(1.0, loss)])
