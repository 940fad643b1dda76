"""Out-of-distribution scores of a store's items (issue 20; `ganinv.metrics.ood`, docs/restoration.md): an image the
generator cannot reconstruct is unlike its training data.

The score reads a reconstruction the generator's prior constrains: the encoder's alone (`encoder_*` metrics, which
hybrid workers store beside the optimised result's), or an encoder run's own metrics. Optimisation reconstructs even
off-world images well, so optimize-mode stores get no score. Each item's score is calibrated against every done item
of the store (`ood_scores(metrics, reference=the store's)`): uniform over ordinary items, 0.99 = 1 % of them
reconstruct this badly. The coordinator rewrites `metrics/ood_score` at the end of every run, so scores follow the
store as it grows (storage/scores.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ganinv.item_metrics import OOD_SCORE, QUALITY
from ganinv.metrics.ood import default_ood_metrics, ood_scores
from storage import LatentStore
from storage.scores import write_item_metric

UNUSUAL = 0.99  # store-info counts the items above this score
QUANTILES = (0.5, 0.9, 0.99)
ENCODER = "encoder_"


@dataclass(frozen=True)
class OodSummary:
    """What the scores look like: items scored, what they were computed from, quantiles, items above `UNUSUAL`."""

    scored: int
    metrics: tuple[str, ...]
    quantiles: dict[str, float]
    unusual: int

    def describe(self) -> str:
        quantiles = ", ".join(f"{k} {v:.3f}" for k, v in self.quantiles.items())
        return (f"{self.scored} items scored from {', '.join(self.metrics)}: {quantiles}; {self.unusual} above "
                f"{UNUSUAL}")


def basis(store: LatentStore) -> dict[str, np.ndarray]:
    """The metrics a store's scores come from, under their plain names ({} when the store has no score)."""
    if OOD_SCORE not in store.layout.metrics:
        return {}
    names = store.layout.metrics
    if any(name.startswith(ENCODER) for name in names):
        plain = {name.removeprefix(ENCODER): name for name in names if name.startswith(ENCODER)}
    else:
        plain = {name: name for name in names if name in QUALITY}
    chosen = default_ood_metrics(plain)
    values = store.metrics([plain[n] for n in chosen])
    return {n: values[plain[n]] for n in chosen}


def score_store(store: LatentStore) -> OodSummary | None:
    """Computes and writes every item's score (coordinator, under the lease); None for a store without scores or
    without a done item to calibrate against."""
    metrics = basis(store)
    if not metrics:
        return None
    usable = store.done() & np.all([np.isfinite(v) for v in metrics.values()], axis=0)
    if not usable.any():
        return None
    scores = np.full(store.num_items, np.nan)
    scores[usable] = ood_scores({n: v[usable] for n, v in metrics.items()}, {n: v[usable] for n, v in metrics.items()})
    write_item_metric(store, OOD_SCORE, scores)
    return summarize(scores[usable], tuple(metrics))


def summarize(scores: np.ndarray, metrics: tuple[str, ...]) -> OodSummary:
    scores = scores[np.isfinite(scores)]
    quantiles = {f"p{round(100 * q)}": float(np.quantile(scores, q)) for q in QUANTILES} if scores.size else {}
    return OodSummary(scored=int(scores.size), metrics=metrics, quantiles=quantiles,
                      unusual=int((scores > UNUSUAL).sum()))


def describe_store(store: LatentStore) -> OodSummary | None:
    """The store's scores as they are (store-info); None if it has none."""
    if OOD_SCORE not in store.layout.metrics:
        return None
    scores = store.metrics([OOD_SCORE])[OOD_SCORE]
    return summarize(scores[store.done()], tuple(basis(store)))
