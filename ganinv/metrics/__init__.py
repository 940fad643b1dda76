"""Metrics: per-image reconstruction quality and the Fréchet distance between feature distributions."""

from ganinv.metrics.frechet import feature_statistics, frechet_distance
from ganinv.metrics.reconstruction import available_lpips, reconstruction_metrics, to_unit_range

__all__ = ["available_lpips", "feature_statistics", "frechet_distance", "reconstruction_metrics", "to_unit_range"]
