"""Metrics: per-image reconstruction quality, out-of-distribution scores from it, and the Fréchet distance between
feature distributions.

The names below are loaded on first use (PEP 562), as `storage`'s are: `ganinv.metrics.ood` is pure numpy, and
`store-info` (its OOD line) should not import torch through this package's other modules (~2 s of CPU);
`from ganinv.metrics import reconstruction_metrics` reads as before."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# module of this package -> the names it gives the package
_EXPORTS = {
    "fid": ("INCEPTION_WEIGHTS_FILE", "InceptionWeightsMissing", "fid_unavailable_reason", "frechet_inception_distance",
            "inception_weights_path"),
    "frechet": ("embedding_frechet_distance", "feature_statistics", "frechet_distance"),
    "ood": ("ood_scores",),
    "reconstruction": ("available_lpips", "reconstruction_metrics", "to_unit_range"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_HOME)

if TYPE_CHECKING:  # for type checkers and editors; at run time `__getattr__` loads them
    from ganinv.metrics.fid import (INCEPTION_WEIGHTS_FILE, InceptionWeightsMissing, fid_unavailable_reason,
                                    frechet_inception_distance, inception_weights_path)
    from ganinv.metrics.frechet import embedding_frechet_distance, feature_statistics, frechet_distance
    from ganinv.metrics.ood import ood_scores
    from ganinv.metrics.reconstruction import available_lpips, reconstruction_metrics, to_unit_range


def __getattr__(name: str) -> Any:
    """A re-exported name, imported from its module on first use (then kept here). Any other name raises
    AttributeError, so `from ganinv.metrics import ood` still imports the submodule."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
