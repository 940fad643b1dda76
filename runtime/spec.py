"""How each image of a store is inverted, fully resolved: `InversionSpec` is what a store records as its inversion
config (`to_record`) and what its workers read back and run (`from_record`). It has no defaults: `invert-dataset`'s
`InvertConfig` (flows/config.py) holds them and resolves into a spec for a generator. A run with another spec is
refused by the store rather than mixing codes made differently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ganinv.datasets.folder import DecodePolicy
from ganinv.inversion import InversionConfig
from ganinv.inversion.batch import item_metric_names
from ganinv.inversion.pivotal import PivotalConfig
from ganinv.inversion_names import MODES
from runtime.errors import ConfigError

SEED_RULE = "seed_from_id(image_id, base): sha256(f'{base}:{image_id}')[:8] little-endian >> 1 (ganinv.utils.seeds)"
NOISE = "const (the generator's own noise buffers)"


@dataclass(frozen=True)
class InversionSpec:
    """mode (ganinv.inversion_names.MODES), the InversionConfig, the encoder (modes encoder and hybrid), the base of
    the per-image seeds, the thumbnail size (capped at the generator's resolution in the store's layout), the
    decode policy's limits (ganinv.datasets.folder.DecodePolicy), and the two optional stages: `restoration` (the
    task, its degradation config, keep_observed and the clean folder: runtime/restore.py) and `refine` (pivotal
    tuning's config). Both are recorded only when set, so a store made without them keeps its record."""

    mode: str
    config: InversionConfig
    encoder: str | None
    seed: int
    thumbnail_size: int
    max_upscale: float
    max_pixels: int
    background: tuple[int, int, int]
    extra: Mapping[str, Any] = field(default_factory=dict)  # free-form notes saved with the record
    restoration: Mapping[str, Any] | None = None
    refine: PivotalConfig | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r} is not one of {MODES}")
        if self.mode in ("encoder", "hybrid") and not self.encoder:
            raise ConfigError(f"mode {self.mode!r} needs an encoder: pass encoder=<.safetensors file> (built-in "
                              "generators with an encoder: faces64), or use mode 'optimize'")
        if self.thumbnail_size < 1:
            raise ConfigError(f"thumbnail_size must be >= 1, got {self.thumbnail_size}")
        for stage, on in (("pivotal refinement (--refine)", self.refine), ("restoration", self.restoration)):
            if on is not None and self.config.optimize_noise:
                raise ConfigError(f"{stage} needs codes that reproduce alone: optimize_noise must be off (the "
                                  "store keeps no noise maps)")
        if self.refine is not None and self.restoration is not None:
            raise ConfigError("pivotal refinement (--refine) tunes G'(w) to match the whole image; a restoration "
                              "store observes only part of it: restore without --refine")
        object.__setattr__(self, "background", tuple(int(c) for c in self.background))

    def decode_policy(self, resolution: int) -> DecodePolicy:
        return DecodePolicy(resolution=resolution, max_upscale=self.max_upscale, max_pixels=self.max_pixels,
                            background=self.background)

    def to_record(self, *, resolution: int, encoder_sha256: str | None,
                  encoder_generator: str | None = None) -> dict[str, Any]:
        """What the store records as its inversion config (and compares on every later run). The encoder: its
        source, the sha256 of its file and, when the file records one, the identity of the generator it was trained
        for (`encoder_generator`; files from before identities were recorded have none, and their stores keep their
        record)."""
        policy = {**dataclasses.asdict(self.decode_policy(resolution)), "background": list(self.background)}
        encoder = None if self.encoder is None else {"source": self.encoder, "sha256": encoder_sha256}
        if encoder is not None and encoder_generator is not None:
            encoder["generator_identity"] = encoder_generator
        record = {"mode": self.mode, "inversion": self.config.to_dict(), "encoder": encoder,
                  "seed": {"base": self.seed, "rule": SEED_RULE}, "decode": policy, "noise": NOISE}
        optional = dict(extra=dict(self.extra) if self.extra else None, restoration=self.restoration,
                        refine=None if self.refine is None else self.refine.to_dict())
        return {**record, **{key: value for key, value in optional.items() if value is not None}}

    def metric_names(self) -> tuple[str, ...]:
        """The per-item metrics a store of this spec records (`ganinv.inversion.batch.item_metric_names`)."""
        return item_metric_names(self.config.loss, mode=self.mode, restoration=self.restoration is not None,
                                 refine=self.refine is not None)

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, thumbnail_size: int | None) -> InversionSpec:
        """The spec a store recorded (`to_record`); `thumbnail_size`: the store's layout's."""
        decode = record["decode"]
        return cls(mode=record["mode"], config=InversionConfig.from_dict(dict(record["inversion"])),
                   encoder=(record.get("encoder") or {}).get("source"), seed=int(record["seed"]["base"]),
                   thumbnail_size=thumbnail_size or 1, max_upscale=decode["max_upscale"],
                   max_pixels=decode["max_pixels"], background=tuple(decode["background"]),
                   extra=dict(record.get("extra", {})), restoration=record.get("restoration"),
                   refine=PivotalConfig.from_dict(dict(record["refine"])) if record.get("refine") else None)
