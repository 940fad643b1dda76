"""GAN inversion: batched optimization in Z / W / W+ (`invert`), encoders (`encode`) and both together (`hybrid`)."""

from ganinv.inversion.encode import encode
from ganinv.inversion.hybrid import HYBRID_CONFIG, hybrid
from ganinv.inversion.optimize import (
    SPACES, InversionConfig, InversionResult, PerImageRandom, invert, learning_rate, latent_noise_std,
    projector_w_stats,
)

__all__ = ["encode", "HYBRID_CONFIG", "hybrid", "SPACES", "InversionConfig", "InversionResult", "PerImageRandom",
           "invert", "learning_rate", "latent_noise_std", "projector_w_stats"]
