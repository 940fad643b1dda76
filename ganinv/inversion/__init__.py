"""GAN inversion: batched optimization in Z / W / W+ (`invert`), encoders (`encode`), both together (`hybrid`),
through known degradations for restoration (`degradations`), more steps for stored codes (`refine`), and per-image
generator refinement around the result (`pivotal.tune`)."""

from ganinv.inversion.batch_size import auto_batch_size
from ganinv.inversion.degradations import (
    AddNoise, Compose, Degradation, Downsample, Grayscale, Mask, degradation_from_config,
)
from ganinv.inversion.encode import encode
from ganinv.inversion.hybrid import ENCODER_START_CONFIG, HYBRID_CONFIG, hybrid
from ganinv.inversion.optimize import (
    SPACES, InversionConfig, InversionProblem, InversionResult, PerImageRandom, build_problem, invert, learning_rate,
    latent_noise_std, projector_w_stats,
)
from ganinv.inversion.pivotal import PivotalConfig, PivotalDeltas, PivotalResult
from ganinv.inversion.refine import continued_config, refine

__all__ = ["AddNoise", "Compose", "Degradation", "Downsample", "Grayscale", "Mask", "degradation_from_config",
           "auto_batch_size", "encode", "ENCODER_START_CONFIG", "HYBRID_CONFIG", "hybrid", "continued_config", "refine",
           "SPACES", "InversionConfig", "InversionProblem",
           "InversionResult", "PerImageRandom", "build_problem", "invert", "learning_rate", "latent_noise_std",
           "projector_w_stats", "PivotalConfig", "PivotalDeltas", "PivotalResult"]
