"""Losses picked by name (`--loss lpips-vgg`, `--loss 'lpips-vgg+0.1*mse'`), built once per process and reused."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from ganinv.inversion_names import PIXEL_LOSSES, canonical_loss_spec, parse_loss_spec  # noqa: F401 (re-exported)
from ganinv.losses.base import ImageLoss
from ganinv.losses.classifier_perceptual import ClassifierPerceptualLoss
from ganinv.losses.lpips_distance import LPIPSLoss
from ganinv.losses.pixel import PixelL1, PixelMSE

# the builders of ganinv.inversion_names.LOSS_NAMES, where the names live and specs are parsed without torch (a test
# keeps the two equal); each takes the attribute classifier a world's losses read (`build_loss`'s `classifier`)
LOSSES: dict[str, Callable[[str], ImageLoss]] = {
    "mse": lambda classifier: PixelMSE(),
    "l1": lambda classifier: PixelL1(),
    "lpips-vgg": lambda classifier: LPIPSLoss("vgg"),
    "lpips-alex": lambda classifier: LPIPSLoss("alex"),
    "clf-perceptual": ClassifierPerceptualLoss.from_classifier,
}
_CACHE: dict[tuple[str, str, str], "WeightedLoss"] = {}


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


def build_loss(spec: str | Sequence[str], *, device: torch.device | str | None = None,
               classifier: str = "builtin") -> WeightedLoss:
    """The loss named by `spec` on `device`, built on first use and cached for the process (a worker's lifetime).
    `classifier`: the attribute classifier a `clf-perceptual` term reads (`load_classifier`'s source: the embedded
    world's built-in one, or another world's file)."""
    key = (canonical_loss_spec(spec), str(torch.device(device or "cpu")), str(classifier))
    if key not in _CACHE:
        terms = [(weight, LOSSES[name](key[2])) for weight, name in parse_loss_spec(key[0])]
        _CACHE[key] = WeightedLoss(terms).to(key[1])
    return _CACHE[key]


def as_weighted_loss(loss: ImageLoss) -> WeightedLoss:
    """Wrap a single loss object (e.g. `ClassifierPerceptualLoss(my_net)`) so the engine sees one interface."""
    return loss if isinstance(loss, WeightedLoss) else WeightedLoss([(1.0, loss)])
