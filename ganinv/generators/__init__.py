"""Style-based generators (StyleGAN2, StyleGAN3 configs T and R) and loading/saving them (official pickles, native
safetensors, built-ins). `StyleGenerator` is what downstream code may rely on."""

from ganinv.generators.base import StyleGenerator, StyleGeneratorBase
from ganinv.generators.io import (
    GENERATOR_CLASSES,
    GeneratorLoadError,
    GeneratorTooLarge,
    LoadLimits,
    UnsupportedGenerator,
    generator_identity,
    load_generator,
    load_generator_and_identity,
    read_generator_metadata,
    save_generator,
)
from ganinv.generators.stylegan2 import Generator
from ganinv.generators.stylegan3 import Generator as StyleGAN3Generator

__all__ = ["GENERATOR_CLASSES", "Generator", "GeneratorLoadError", "GeneratorTooLarge", "LoadLimits",
           "StyleGAN3Generator", "StyleGenerator", "StyleGeneratorBase", "UnsupportedGenerator", "generator_identity",
           "load_generator", "load_generator_and_identity", "read_generator_metadata", "save_generator"]
