"""Out-of-distribution scores from reconstruction metrics (Xia et al., "GAN Inversion: A Survey", sec. 5: an image
the generator cannot reconstruct is unlike what it was trained on).

The score is calibrated against a reference distribution of the same metrics (e.g. every item of the store the items
belong to, or a held-out set of in-distribution images inverted the same way):

1. for each metric, an item's percentile among the reference, oriented so that a worse reconstruction is higher
   (mid-ranks: ties count half);
2. the mean of those percentiles over the metrics;
3. the percentile of that mean among the reference items' own means.

So the score is in [0, 1], and for items drawn like the reference it is uniform: a score of 0.99 means 1 % of
ordinary items reconstruct this badly. Pure numpy: scores depend only on the values, not on batches or order.

Which reconstruction to score: one the generator's prior constrains. Optimisation in W+ with free noise maps
reconstructs a flat colour *better* than a face of the generator's own world (faces64, 8 faces vs 8 off-world
images, 20 steps: ROC AUC 0.70 from clf-perceptual + MSE; in W 0.93), while the encoder's reconstruction `G(E(x))`
separates them completely (AUC 1.0, `tests/test_ood_score.py`). Score the encoder's reconstruction (hybrid runs
have it as their start) or an inversion in W.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ganinv.item_metrics import HIGHER_IS_BETTER, perceptual_metric_names


def percentiles(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`[N]` fraction of `reference [M]` below each value, ties counted half (mid-rank), in [0, 1]."""
    reference = np.sort(np.asarray(reference, np.float64).ravel())
    values = np.asarray(values, np.float64)
    if reference.size == 0 or not np.isfinite(reference).all():
        raise ValueError(f"the reference needs finite values, got {reference.size} with "
                         f"{np.count_nonzero(~np.isfinite(reference))} non-finite")
    below = np.searchsorted(reference, values, side="left")
    at_or_below = np.searchsorted(reference, values, side="right")
    return (below + at_or_below) / (2.0 * reference.size)


def badness(name: str, values: np.ndarray) -> np.ndarray:
    """The metric oriented so that higher means a worse reconstruction (PSNR and SSIM are negated)."""
    values = np.asarray(values, np.float64)
    return -values if name in HIGHER_IS_BETTER else values


def default_ood_metrics(available: Iterable[str]) -> tuple[str, ...]:
    """The metrics the score uses by default: the first perceptual distance present (the workers' loss names, in
    `ganinv.inversion_names.LOSS_NAMES`' order) and `mse`."""
    available = list(available)
    perceptual = [name for name in perceptual_metric_names() if name in available][:1]
    chosen = tuple(perceptual + (["mse"] if "mse" in available else []))
    if not chosen:
        raise ValueError(f"no metric to score with: want 'mse' and/or a perceptual distance, got {available}")
    return chosen


def ood_scores(metrics: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], *,
               names: Sequence[str] | None = None) -> np.ndarray:
    """Calibrated out-of-distribution score `[N]` in [0, 1] of items with `metrics` (`{name: [N]}`) against
    `reference` (`{name: [M]}`, e.g. the whole store's metrics); `names`: the metrics to combine (default
    `default_ood_metrics`). Higher = less like the reference; uniform on items like the reference."""
    names = tuple(names) if names is not None else default_ood_metrics(set(metrics) & set(reference))
    missing = [n for n in names if n not in metrics or n not in reference]
    if missing:
        raise ValueError(f"metrics {missing} are missing from the items or the reference "
                         f"(items have {sorted(metrics)}, reference has {sorted(reference)})")
    items = np.mean([percentiles(badness(n, metrics[n]), badness(n, reference[n])) for n in names], axis=0)
    ref_items = np.mean([percentiles(badness(n, reference[n]), badness(n, reference[n])) for n in names], axis=0)
    return percentiles(items, ref_items)
