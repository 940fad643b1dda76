"""What a dataset inversion does to each image: the mode, the inversion config, the encoder, the seed rule and the
decode policy. Saved in every store (`InversionSpec.store_config`), so the store says how its codes were made; a run
with another spec is refused by the store rather than mixing codes made differently.

Modes (users pick by name, `--mode`):

- `optimize`: `ganinv.inversion.invert` from `w_avg` (the StyleGAN2 projector);
- `encoder`: one pass of an encoder (`ganinv.inversion.encode`), no optimisation (`steps` = 0);
- `hybrid`: the encoder's output, then optimisation from there (`ganinv.inversion.hybrid`; Zhu et al. 2020).

Defaults. A generator with a known encoder (the built-in `faces64`) defaults to `hybrid` with `FACES64_HYBRID`;
any other generator to `optimize` with the projector's settings. Always `optimize_noise=False`: the store keeps the
codes, not per-image noise maps, so the codes alone must reproduce what the metrics and thumbnails show.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ganinv.datasets.folder import DecodePolicy
from ganinv.inversion import InversionConfig

MODES = ("optimize", "encoder", "hybrid")
SEED_RULE = "seed_from_id(image_id, base): sha256(f'{base}:{image_id}')[:8] little-endian >> 1 (ganinv.utils.seeds)"
DEFAULT_THUMBNAIL_SIZE = 64

# faces64 hybrid: the encoder's output is already close, so the projector's start-up exploration (latent noise,
# learning rate 0.1 meant for a start at w_avg) throws much of it away. Measured on 16 held-out faces, 20 steps,
# clf-perceptual: PSNR 21.3 (encoder alone) -> 21.9 with the projector's settings, 23.5 with these (BENCHMARKS.md).
FACES64_HYBRID = InversionConfig(space="w+", num_steps=100, initial_learning_rate=0.03, initial_noise_factor=0.0,
                                 lr_rampup_length=0.0, loss="clf-perceptual", optimize_noise=False)
PROJECTOR = InversionConfig(optimize_noise=False)
_SPEC_FIELDS = ("mode", "encoder", "seed", "thumbnail_size", "max_upscale", "max_pixels", "background")


def known_encoder(generator: str) -> str | None:
    """The built-in encoder trained for a built-in generator name, else None."""
    from ganinv.models.encoder import BUILTIN_ENCODERS

    return generator if generator in BUILTIN_ENCODERS else None


@dataclass(frozen=True)
class InversionSpec:
    """How each image of a dataset is inverted. Build with `InversionSpec.for_generator(generator, **overrides)`."""

    mode: str
    config: InversionConfig
    encoder: str | None = None
    seed: int = 0
    thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE   # capped at the generator's resolution
    max_upscale: float = 8.0                       # decode policy (ganinv.datasets.folder)
    max_pixels: int = DecodePolicy(resolution=1).max_pixels
    background: tuple[int, int, int] = (255, 255, 255)
    extra: Mapping[str, Any] = field(default_factory=dict)  # free-form notes saved with the config

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}")
        if self.mode in ("encoder", "hybrid") and not self.encoder:
            raise ValueError(f"mode {self.mode!r} needs an encoder: pass encoder=<.safetensors file> (built-in "
                             "generators with an encoder: faces64), or use mode 'optimize'")
        if self.thumbnail_size < 1:
            raise ValueError(f"thumbnail_size must be >= 1, got {self.thumbnail_size}")
        object.__setattr__(self, "background", tuple(int(c) for c in self.background))

    @classmethod
    def for_generator(cls, generator: str, **overrides: Any) -> InversionSpec:
        """The defaults for `generator` (see the module docstring), changed by `overrides`: any field of this class
        or of `InversionConfig` (`mode='optimize'`, `num_steps=300`, `space='w+'`, `loss='mse'`...)."""
        unknown = set(overrides) - set(_SPEC_FIELDS) - {f.name for f in dataclasses.fields(InversionConfig)}
        if unknown:
            raise ValueError(f"unknown inversion settings {sorted(unknown)}: use fields of InversionSpec "
                             f"{list(_SPEC_FIELDS)} or of InversionConfig "
                             f"{[f.name for f in dataclasses.fields(InversionConfig)]}")
        encoder = overrides.pop("encoder", known_encoder(generator))
        mode = overrides.pop("mode", "hybrid" if encoder else "optimize")
        base = FACES64_HYBRID if mode != "optimize" and encoder == "faces64" else PROJECTOR
        spec_kw = {k: overrides.pop(k) for k in _SPEC_FIELDS if k in overrides}
        config = dataclasses.replace(base, **overrides)
        return cls(mode=mode, config=config, encoder=encoder if mode != "optimize" else None, **spec_kw)

    def decode_policy(self, resolution: int) -> DecodePolicy:
        return DecodePolicy(resolution=resolution, max_upscale=self.max_upscale, max_pixels=self.max_pixels,
                            background=self.background)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; what tasks receive (`from_dict` inverts it)."""
        return {**dataclasses.asdict(self), "config": self.config.to_dict(), "background": list(self.background)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> InversionSpec:
        values = dict(values)
        return cls(**{**values, "config": InversionConfig.from_dict(dict(values["config"])),
                      "background": tuple(values.get("background", (255, 255, 255)))})

    def store_config(self, *, resolution: int, encoder_sha256: str | None) -> dict[str, Any]:
        """What the store records as its inversion config (and compares on every later run)."""
        policy = {**dataclasses.asdict(self.decode_policy(resolution)), "background": list(self.background)}
        encoder = None if self.encoder is None else {"source": self.encoder, "sha256": encoder_sha256}
        config = {"mode": self.mode, "inversion": self.config.to_dict(), "encoder": encoder,
                  "seed": {"base": self.seed, "rule": SEED_RULE}, "decode": policy,
                  "noise": "const (the generator's own noise buffers)"}
        return {**config, "extra": dict(self.extra)} if self.extra else config
