"""The per-item metrics a dataset inversion records: the one registry of their names. The store keeps one array per
name (`metrics/<name>`), the batch pipeline computes them (`ganinv.inversion.batch`), the report shows them.

A perceptual metric is named after what it is: `lpips-vgg` / `lpips-alex` only with LPIPS's calibrated weights,
`clf-perceptual` for the distance on the attribute classifier's features (not LPIPS, and never called so).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ItemMetric:
    """How a metric reads: its label, which way is better ('higher', 'lower' or None), and what kind it is
    ('reconstruction', 'perceptual' or 'run')."""

    name: str
    label: str
    better: str | None
    kind: str


ITEM_METRICS: dict[str, ItemMetric] = {m.name: m for m in (
    ItemMetric("psnr", "PSNR (dB)", "higher", "reconstruction"),
    ItemMetric("ssim", "SSIM", "higher", "reconstruction"),
    ItemMetric("lpips-vgg", "LPIPS (VGG)", "lower", "perceptual"),
    ItemMetric("lpips-alex", "LPIPS (AlexNet)", "lower", "perceptual"),
    ItemMetric("lpips", "LPIPS", "lower", "perceptual"),  # stores of before the loss-named metrics
    ItemMetric("clf-perceptual", "clf-perceptual (attribute-classifier features, not LPIPS)", "lower", "perceptual"),
    ItemMetric("mse", "MSE", "lower", "reconstruction"),
    ItemMetric("final_loss", "final loss", "lower", "run"),
    ItemMetric("steps", "optimisation steps", None, "run"),
    ItemMetric("seconds", "seconds per image (device)", "lower", "run"),
)}
RECONSTRUCTION = ("mse", "psnr", "ssim")     # always computed (ganinv.metrics.reconstruction_metrics)
RUN = ("final_loss", "steps", "seconds")     # what the batch pipeline adds
PERCEPTUAL = tuple(n for n, m in ITEM_METRICS.items() if m.kind == "perceptual")
QUALITY = tuple(n for n, m in ITEM_METRICS.items() if m.kind != "run")  # shown in histograms and label breakdowns
LEGACY_NAMES = {"clf_perceptual": "clf-perceptual"}  # spellings of older stores, read as the registry's names


def metric_names(perceptual: Iterable[str] = ("lpips-vgg",)) -> tuple[str, ...]:
    """The metrics a store records: mse, psnr, ssim, the perceptual distances in `perceptual`, final_loss, steps,
    seconds. The default is what the projector's loss (lpips-vgg) gives."""
    return (*RECONSTRUCTION, *dict.fromkeys(perceptual), *RUN)


def canonical_name(name: str) -> str:
    return LEGACY_NAMES.get(name, name)


def label(name: str) -> str:
    """How the report names a metric (its store name when the registry does not know it)."""
    known = ITEM_METRICS.get(canonical_name(name))
    return known.label if known else name


def better(name: str) -> str | None:
    known = ITEM_METRICS.get(canonical_name(name))
    return known.better if known else None
