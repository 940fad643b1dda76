"""Metrics: per-image reconstruction quality, out-of-distribution scores from it, and the Fréchet distance between
feature distributions.

The names below are loaded on first use (PEP 562), as `storage`'s are: `ganinv.metrics.ood` is pure numpy, and
`store-info` (its OOD line) should not import torch through this package's other modules (~2 s of CPU);
`from ganinv.metrics import reconstruction_metrics` reads as before."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganinv.utils.lazy_exports import lazy_exports

# module of this package -> the names it gives the package
_EXPORTS = {
    "fid": ("INCEPTION_WEIGHTS_FILE", "InceptionWeightsMissing", "fid_unavailable_reason", "frechet_inception_distance",
            "inception_weights_path"),
    "frechet": ("embedding_frechet_distance", "feature_statistics", "frechet_distance"),
    "ood": ("ood_scores",),
    "reconstruction": ("available_lpips", "reconstruction_metrics", "to_unit_range"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # for type checkers and editors; at run time `__getattr__` loads them
    from ganinv.metrics.fid import (INCEPTION_WEIGHTS_FILE, InceptionWeightsMissing, fid_unavailable_reason,
                                    frechet_inception_distance, inception_weights_path)
    from ganinv.metrics.frechet import embedding_frechet_distance, feature_statistics, frechet_distance
    from ganinv.metrics.ood import ood_scores
    from ganinv.metrics.reconstruction import available_lpips, reconstruction_metrics, to_unit_range

