"""Metrics: per-image reconstruction quality, out-of-distribution scores from it, and the Fréchet distance between
feature distributions."""

from ganinv.metrics.fid import (INCEPTION_WEIGHTS_FILE, InceptionWeightsMissing, fid_unavailable_reason,
                                frechet_inception_distance, inception_weights_path)
from ganinv.metrics.frechet import embedding_frechet_distance, feature_statistics, frechet_distance
from ganinv.metrics.ood import ood_scores
from ganinv.metrics.reconstruction import available_lpips, reconstruction_metrics, to_unit_range

__all__ = ["INCEPTION_WEIGHTS_FILE", "InceptionWeightsMissing", "available_lpips", "embedding_frechet_distance",
           "feature_statistics", "fid_unavailable_reason", "frechet_distance", "frechet_inception_distance",
           "inception_weights_path", "ood_scores", "reconstruction_metrics", "to_unit_range"]
