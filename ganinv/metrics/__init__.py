"""Metrics: per-image reconstruction quality and the Fréchet distance between feature distributions."""

from ganinv.metrics.fid import (INCEPTION_WEIGHTS_FILE, InceptionWeightsMissing, fid_unavailable_reason,
                                frechet_inception_distance, inception_weights_path)
from ganinv.metrics.frechet import embedding_frechet_distance, feature_statistics, frechet_distance
from ganinv.metrics.reconstruction import available_lpips, reconstruction_metrics, to_unit_range

__all__ = ["INCEPTION_WEIGHTS_FILE", "InceptionWeightsMissing", "available_lpips", "embedding_frechet_distance",
           "feature_statistics", "fid_unavailable_reason", "frechet_distance", "frechet_inception_distance",
           "inception_weights_path", "reconstruction_metrics", "to_unit_range"]
