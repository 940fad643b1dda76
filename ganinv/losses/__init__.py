"""Per-image image losses for inversion, chosen by name: `mse`, `l1`, `lpips-vgg`, `lpips-alex`, `clf-perceptual`,
combinable as `'lpips-vgg+0.1*mse'`; plus the projector's noise regularisation."""

from ganinv.losses.base import ImageLoss
from ganinv.losses.classifier_perceptual import ClassifierPerceptualLoss
from ganinv.losses.lpips_distance import LPIPSLoss, PerceptualWeightsMissing, trunk_weights_path
from ganinv.losses.noise_regularization import noise_regularization, normalize_noise_
from ganinv.losses.pixel import PixelL1, PixelMSE
from ganinv.losses.registry import (
    LOSSES, WeightedLoss, as_weighted_loss, build_loss, canonical_loss_spec, parse_loss_spec,
)

__all__ = [
    "ImageLoss", "ClassifierPerceptualLoss", "LPIPSLoss", "PerceptualWeightsMissing", "trunk_weights_path",
    "noise_regularization", "normalize_noise_", "PixelL1", "PixelMSE", "LOSSES", "WeightedLoss", "as_weighted_loss",
    "build_loss", "canonical_loss_spec", "parse_loss_spec",
]
