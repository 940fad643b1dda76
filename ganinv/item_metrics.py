"""The per-item metrics a dataset inversion records: the one registry of their names. The store keeps one array per
name (`metrics/<name>`), the batch pipeline computes them (`ganinv.inversion.batch`), the report shows them.

A perceptual metric is named after what it is: `lpips-vgg` / `lpips-alex` only with LPIPS's calibrated weights,
`clf-perceptual` for the distance on the attribute classifier's features (not LPIPS, and never called so).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ganinv.inversion_names import LOSS_NAMES, PIXEL_LOSSES


@dataclass(frozen=True)
class ItemMetric:
    """How a metric reads: its label, which way is better ('higher', 'lower' or None), and what kind it is
    ('reconstruction', 'perceptual' or 'run')."""

    name: str
    label: str
    better: str | None
    kind: str


_BASE_METRICS = (
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
)
# The same measures of another image than the stored reconstruction, named `<stage>_<metric>` (`pivot_psnr`): what
# the encoder alone reconstructed (hybrid), the pivot before pivotal tuning, and for restoration stores with a clean
# reference, the restored image, the restoration with the observation kept, and the plain baseline against it.
STAGES = {"encoder": "encoder alone", "pivot": "pivot, before tuning", "restored": "restored vs clean",
          "kept": "observation kept, vs clean", "baseline": "plain baseline vs clean"}
OOD_SCORE = "ood_score"  # ganinv.metrics.ood: 0.99 = 1 % of the store's ordinary items reconstruct this badly
ITEM_METRICS: dict[str, ItemMetric] = {m.name: m for m in (
    *_BASE_METRICS,
    *(ItemMetric(f"{stage}_{m.name}", f"{m.label}, {what}", m.better, stage)
      for stage, what in STAGES.items() for m in _BASE_METRICS if m.kind != "run"),
    ItemMetric(OOD_SCORE, "out-of-distribution score (percentile)", None, "ood"),
)}
RECONSTRUCTION = ("mse", "psnr", "ssim")     # always computed (ganinv.metrics.reconstruction_metrics)
RUN = ("final_loss", "steps", "seconds")     # what the batch pipeline adds
CLOCKS = ("seconds",)  # measured time, not a result: the one metric two runs of the same numerics may differ in
PERCEPTUAL = tuple(n for n, m in ITEM_METRICS.items() if m.kind == "perceptual")
# Shown in histograms and label breakdowns: the stored reconstruction's own measures.
QUALITY = tuple(n for n, m in ITEM_METRICS.items() if m.kind in ("reconstruction", "perceptual"))
LEGACY_NAMES = {"clf_perceptual": "clf-perceptual"}  # spellings of older stores, read as the registry's names
# PSNR and SSIM (and their staged forms, e.g. pivot_psnr) are higher-is-better; every other reconstruction metric is
# a distance.
HIGHER_IS_BETTER = frozenset(name for name, metric in ITEM_METRICS.items() if metric.better == "higher")


def metric_names(perceptual: Iterable[str] = ("lpips-vgg",)) -> tuple[str, ...]:
    """The metrics a store records: mse, psnr, ssim, the perceptual distances in `perceptual`, final_loss, steps,
    seconds. The default is what the projector's loss (lpips-vgg) gives."""
    return (*RECONSTRUCTION, *dict.fromkeys(perceptual), *RUN)


def perceptual_metric_names() -> tuple[str, ...]:
    """The names perceptual distances have in `ganinv.metrics.reconstruction_metrics`: the perceptual losses' names
    (`ganinv.inversion_names.LOSS_NAMES` less the pixel losses, in their order: 'lpips-vgg', ..., 'clf-perceptual')."""
    return tuple(name for name in LOSS_NAMES if name not in PIXEL_LOSSES)


def stage_names(stage: str, names: Iterable[str]) -> tuple[str, ...]:
    """`names` measured on another image of the item: `('psnr', 'ssim')` -> `('pivot_psnr', 'pivot_ssim')`."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of {sorted(STAGES)}")
    return tuple(f"{stage}_{name}" for name in names)


def canonical_name(name: str) -> str:
    return LEGACY_NAMES.get(name, name)


def label(name: str) -> str:
    """How the report names a metric (its store name when the registry does not know it)."""
    known = ITEM_METRICS.get(canonical_name(name))
    return known.label if known else name


def better(name: str) -> str | None:
    known = ITEM_METRICS.get(canonical_name(name))
    return known.better if known else None
