"""A small CNN that reads the procedural-faces attributes off 64x64 images.

It plays three roles in the embedded world (where there is no pretrained face network):
- an attribute *scorer* for InterFaceGAN boundaries and edit evaluation (`predict`);
- a *perceptual* feature extractor (`features`: one map per resolution, 64 -> 4 px);
- an *embedding* for a Frechet distance computed on its features, "FD-clf" (`embedding`), in the spirit of FID
  (Heusel et al. 2017) with this network in place of Inception.

Outputs: one logit per binary attribute, one regression value per continuous attribute, in `attribute_names` order.
Continuous targets are normalised to [-1, 1] over the attribute's range (`normalize_continuous`); `predict` maps
them back to the original units (not clamped, so edits that overshoot the range still read monotonically).

Weights live in a safetensors file whose metadata holds the `ClassifierConfig` (and training metrics) as JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ganinv.utils import weights

FORMAT = "ganinv.attribute_classifier/1"
BUILTIN = "builtin"
BUILTIN_RELATIVE_PATH = "assets/faces64/classifier.safetensors"
CLASSIFIER_WEIGHTS = weights.WeightsKind(
    name="attribute classifier", format=FORMAT, builtins={BUILTIN: BUILTIN_RELATIVE_PATH},
    obtain="train one with `ganinv train-classifier --out FILE` (nothing is downloaded)",
    write="ganinv.models.attributes.save_classifier")


@dataclass(frozen=True)
class ClassifierConfig:
    attribute_names: tuple[str, ...]
    attribute_kinds: tuple[str, ...]  # 'binary' | 'continuous'
    attribute_ranges: tuple[tuple[float, float], ...]
    resolution: int = 64
    stem_channels: int = 32
    stem_stride: int = 2  # a stride-2 stem halves the CPU training cost; 3x3 taps still see every pixel
    channels: tuple[int, ...] = (32, 64, 128, 128)
    strides: tuple[int, ...] = (1, 2, 2, 2)  # stage resolutions 32, 16, 8, 4 px
    embedding_dim: int = 256

    @classmethod
    def from_world(cls, **kw: Any) -> "ClassifierConfig":
        """The config for the procedural-faces attributes."""
        from ganinv.datasets.procedural_faces import ATTRIBUTES
        return cls(attribute_names=tuple(a.name for a in ATTRIBUTES), attribute_kinds=tuple(a.kind for a in ATTRIBUTES),
                   attribute_ranges=tuple(tuple(map(float, a.range)) for a in ATTRIBUTES), **kw)

    @classmethod
    def from_json(cls, text: str) -> "ClassifierConfig":
        d = json.loads(text)
        d["attribute_ranges"] = tuple(tuple(r) for r in d["attribute_ranges"])
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _conv_bn(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class AttributeClassifier(nn.Module):
    """img [N, 3, R, R] in [-1, 1] -> [N, A] raw outputs (logits for binary, normalised values for continuous)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        if not len(config.attribute_names) == len(config.attribute_kinds) == len(config.attribute_ranges):
            raise ValueError("attribute_names, attribute_kinds and attribute_ranges must have the same length")
        bad = [k for k in config.attribute_kinds if k not in ("binary", "continuous")]
        if bad:
            raise ValueError(f"attribute_kinds must be 'binary' or 'continuous', got {bad}")
        self.config = config
        self.attribute_names, self.attribute_kinds = list(config.attribute_names), list(config.attribute_kinds)
        widths = (config.stem_channels, *config.channels)
        self.stem = _conv_bn(3, config.stem_channels, config.stem_stride)
        self.stages = nn.ModuleList(nn.Sequential(_conv_bn(c_in, c_out, stride), _conv_bn(c_out, c_out, 1))
                                    for c_in, c_out, stride in zip(widths[:-1], widths[1:], config.strides))
        side = config.resolution // math.prod((config.stem_stride, *config.strides))
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * side * side, config.embedding_dim),
                                   nn.ReLU(inplace=True))
        self.head = nn.Linear(config.embedding_dim, len(config.attribute_names))
        binary = torch.tensor([k == "binary" for k in config.attribute_kinds])
        lo, hi = torch.tensor(config.attribute_ranges, dtype=torch.float32).unbind(1)
        self.register_buffer("binary_mask", binary, persistent=False)
        self.register_buffer("range_lo", lo, persistent=False)
        self.register_buffer("range_hi", hi, persistent=False)

    def _prepare(self, img: torch.Tensor) -> torch.Tensor:
        assert img.ndim == 4 and img.shape[1] == 3, f"img must be [N, 3, H, W] in [-1, 1], got {tuple(img.shape)}"
        img = img.to(self.range_lo.device, torch.float32)
        r = self.config.resolution
        return img if img.shape[-2:] == (r, r) else F.interpolate(img, size=(r, r), mode="area")

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after the stem and each stage (default config): [N, 32, 32, 32], [N, 32, 32, 32],
        [N, 64, 16, 16], [N, 128, 8, 8], [N, 128, 4, 4]; post-ReLU."""
        x = self.stem(self._prepare(img))
        maps = [x]
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def embedding(self, img: torch.Tensor) -> torch.Tensor:
        """[N, embedding_dim] penultimate activations (the last 4x4 map, flattened and projected; after ReLU)."""
        return self.embed(self.features(img)[-1])

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(img))

    def normalize_continuous(self, values: torch.Tensor) -> torch.Tensor:
        """[N, A] attributes in original units -> training targets (binary unchanged, continuous in [-1, 1])."""
        norm = 2 * (values - self.range_lo) / (self.range_hi - self.range_lo) - 1
        return torch.where(self.binary_mask, values, norm)

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        """[N, A] raw outputs -> probabilities (binary) and original units (continuous)."""
        units = self.range_lo + (raw + 1) / 2 * (self.range_hi - self.range_lo)
        return torch.where(self.binary_mask, torch.sigmoid(raw), units)

    @torch.no_grad()
    def predict(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        """{name: [N]}: P(attribute) for binary attributes, the value in original units for continuous ones."""
        decoded = self.decode(self(img))
        return {name: decoded[:, i] for i, name in enumerate(self.attribute_names)}


def builtin_path() -> Path:
    return CLASSIFIER_WEIGHTS.builtin_path(BUILTIN)


def save_classifier(model: AttributeClassifier, path: str | Path, *, metrics: Mapping[str, Any] | None = None,
                    half: bool = True) -> Path:
    """Write weights (fp16 unless `half=False`) with the config and optional metrics in the safetensors metadata."""
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
             for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "config": model.config.to_json(), "metrics": json.dumps(dict(metrics or {}))}
    return weights.write_weights(path, state, metadata)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """{'format', 'config' (ClassifierConfig), 'metrics' (dict)} of a classifier file."""
    meta = weights.read_metadata(path, CLASSIFIER_WEIGHTS)
    return {"format": meta["format"], "config": ClassifierConfig.from_json(meta["config"]),
            "metrics": json.loads(meta.get("metrics", "{}"))}


def load_classifier(source: str | Path = BUILTIN, device: str | torch.device = "cpu") -> AttributeClassifier:
    """Load a classifier in eval mode, fp32. `source`: 'builtin' (shipped with ganinv) or a .safetensors path.

    Raises `ganinv.utils.weights.MissingWeights` (a FileNotFoundError) or `BadWeightsFile` (a ValueError)."""
    _, meta, tensors = weights.load_weights(source, CLASSIFIER_WEIGHTS)
    model = AttributeClassifier(ClassifierConfig.from_json(meta["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    return model.eval().requires_grad_(False).to(device)
