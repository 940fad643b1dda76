"""StyleGAN2 generators: the network itself and loading/saving it (official pickles, native safetensors, built-ins)."""

from ganinv.generators.io import (
    GeneratorLoadError,
    generator_identity,
    load_generator,
    load_generator_and_identity,
    read_generator_metadata,
    save_generator,
)
from ganinv.generators.stylegan2 import Generator

__all__ = ["Generator", "GeneratorLoadError", "generator_identity", "load_generator",
           "load_generator_and_identity", "read_generator_metadata", "save_generator"]
