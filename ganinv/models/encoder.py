"""A pSp/e4e-style encoder: image -> W+ codes for one generator (Richardson et al. 2021; Tov et al. 2021).

A residual CNN builds a feature pyramid; each of the generator's `num_ws` layers reads its w from the pyramid level
that matches its scale (coarse ws from the coarsest features, as in pSp's map2style), and the encoder predicts
offsets from the generator's `w_avg` (as e4e does), so an untrained encoder already starts at the average face.

Shapes: image `[N, 3, R, R]` in [-1, 1] with R the generator's resolution -> ws `[N, num_ws, w_dim]`. Generators
larger than `MAX_INPUT_RESOLUTION` are seen through an area-downsampled copy (pSp reads 256 px for 1024 px FFHQ).

An encoder belongs to one generator: the file records that generator's `ganinv.generators.generator_identity`, and
`load_encoder(..., generator=G)`, `check_encoder_for` and hybrid inversion refuse any other generator with an
`EncoderGeneratorMismatch`. Files written before identities were recorded (the first built-in faces64 encoder) are
checked by shape only (resolution, num_ws, w_dim).
"""

from __future__ import annotations

import json
import math
import os
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ganinv import edit
from ganinv.errors import UserError
from ganinv.utils import weights
from ganinv.utils.files import file_sha256

BUILTIN_ENCODERS = {"faces64": Path(__file__).resolve().parents[1] / "assets" / "faces64" / "encoder.safetensors"}
FORMAT = "ganinv.encoder"
ENCODER_WEIGHTS = weights.WeightsKind(name="encoder", format=FORMAT, builtins=BUILTIN_ENCODERS,
                                      obtain="train one with `ganinv train-encoder` (nothing is downloaded)",
                                      write="ganinv.models.encoder.save_encoder")
IDENTITY_KEY = "generator_identity"  # file metadata: the generator the encoder was trained for
MAX_INPUT_RESOLUTION = 256
# Parameters of a default-sized encoder: a compact training checkpoint holds 6 bytes per parameter (fp16 weights, bf16
# Adam first and second moments), so 4.0 M parameters keep a resumable run under 25 MB.
PARAMETER_BUDGET = 4_000_000
# (first level's channels, widest level's channels, style channels), widest first: `encoder_kwargs_for` takes the
# first that fits the budget.
_SIZES = ((64, 256, 64), (48, 256, 64), (32, 256, 64), (32, 256, 48), (32, 192, 32), (16, 128, 32), (16, 64, 16))


class EncoderGeneratorMismatch(UserError, ValueError):
    """An encoder was given a generator other than the one it was trained for (the message names both and what to
    do): a UserError (CLI exit 2)."""


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm0 = nn.GroupNorm(8, out_channels)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(8, out_channels)
        self.skip = (nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
                     if stride != 1 or in_channels != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.norm0(self.conv0(x)), 0.2)
        y = self.norm1(self.conv1(y))
        return F.leaky_relu(y + self.skip(x), 0.2)


class Map2Style(nn.Module):
    """Strided convs down to 1x1, then a linear layer to one w (pSp's GradualStyleBlock)."""

    def __init__(self, channels: int, resolution: int, w_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(resolution))):
            layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(channels, w_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))


class Encoder(nn.Module):
    """Residual feature pyramid + one map2style head per w. `levels` feature maps at resolutions R/2, R/4, ...

    ws are assigned to pyramid levels by the synthesis layer's resolution: the layer at resolution r reads the level
    whose size is closest to r (clamped to the pyramid), so coarse ws see global structure and fine ws see detail.
    """

    def __init__(self, *, img_resolution: int, num_ws: int, w_dim: int, channels: tuple[int, ...] = (32, 64, 128, 256),
                 style_channels: int = 64, ws_resolutions: Sequence[int] | None = None,
                 input_resolution: int | None = None):
        """`ws_resolutions`: the resolution each w controls (`G.ws_resolutions`); default StyleGAN2's rule.
        `input_resolution`: the size the network reads (default `img_resolution`); it takes images of either size
        and area-downsamples the generator's to it."""
        super().__init__()
        self.init_kwargs = dict(img_resolution=img_resolution, num_ws=num_ws, w_dim=w_dim, channels=list(channels),
                                style_channels=style_channels)
        if ws_resolutions is not None:
            self.init_kwargs["ws_resolutions"] = [int(r) for r in ws_resolutions]
        else:
            ws_resolutions = edit.ws_resolutions(num_ws)
        self.input_resolution = input_resolution or img_resolution
        if self.input_resolution != img_resolution:
            self.init_kwargs["input_resolution"] = self.input_resolution
        self.generator_identity: str | None = None  # set by the trainer and by load_encoder
        self.img_resolution, self.num_ws, self.w_dim = img_resolution, num_ws, w_dim
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, padding=1), nn.LeakyReLU(0.2))
        stages, in_ch = [], channels[0]
        for ch in channels:
            stages.append(ResidualBlock(in_ch, ch, stride=2))
            in_ch = ch
        self.stages = nn.ModuleList(stages)
        self.level_resolutions = [self.input_resolution // 2 ** (i + 1) for i in range(len(channels))]
        self.laterals = nn.ModuleList(nn.Conv2d(ch, style_channels, 1) for ch in channels)
        self.level_of_w = [self._level_for(res) for res in ws_resolutions]
        self.heads = nn.ModuleList(Map2Style(style_channels, self.level_resolutions[lvl], w_dim)
                                   for lvl in self.level_of_w)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def _level_for(self, resolution: int) -> int:
        diffs = [abs(math.log2(r) - math.log2(resolution)) for r in self.level_resolutions]
        return diffs.index(min(diffs))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        sizes = {self.img_resolution, self.input_resolution}
        assert img.ndim == 4 and img.shape[1] == 3 and img.shape[2] == img.shape[3] and img.shape[3] in sizes, \
            f"encoder expects [N, 3, R, R] with R in {sorted(sizes)}, got {list(img.shape)}"
        if img.shape[-1] != self.input_resolution:  # the generator's size: read its area-downsampled view
            img = F.interpolate(img, size=(self.input_resolution, self.input_resolution), mode="area")
        x = self.stem(img)
        levels = []
        for stage, lateral in zip(self.stages, self.laterals):
            x = stage(x)
            levels.append(lateral(x))
        # Top-down pathway as in pSp's FPN: coarser context added to finer levels.
        for i in range(len(levels) - 2, -1, -1):
            levels[i] = levels[i] + F.interpolate(levels[i + 1], size=levels[i].shape[-2:], mode="nearest")
        offsets = torch.stack([head(levels[lvl]) for head, lvl in zip(self.heads, self.level_of_w)], dim=1)
        return self.w_avg + offsets


def encoder_kwargs_for(G: nn.Module, *, max_params: int = PARAMETER_BUDGET) -> dict[str, Any]:
    """`Encoder` arguments sized for generator `G` (uses `img_resolution`, `num_ws`, `w_dim`): it reads
    `min(R, MAX_INPUT_RESOLUTION)` px, builds feature maps from half that size down to 4 px (one level per octave),
    and takes the widest channel plan of `_SIZES` (channels doubling per level up to a cap) whose parameter count
    fits `max_params`."""
    input_resolution = min(G.img_resolution, MAX_INPUT_RESOLUTION)
    levels = max(1, int(math.log2(input_resolution)) - 2)
    # The StyleGAN3 branch's generators say which resolution each w controls; StyleGAN2's follow from num_ws.
    extra = {"ws_resolutions": list(G.ws_resolutions)} if hasattr(G, "ws_resolutions") else {}
    for base, widest, style in _SIZES:
        kwargs = dict(img_resolution=G.img_resolution, num_ws=G.num_ws, w_dim=G.w_dim,
                      channels=tuple(min(base * 2 ** i, widest) for i in range(levels)), style_channels=style,
                      input_resolution=input_resolution, **extra)
        with torch.device("meta"):  # count parameters without allocating them
            params = sum(p.numel() for p in Encoder(**kwargs).parameters())
        if params <= max_params:
            break
    return kwargs  # else the smallest plan, over budget: a generator with very many or very wide ws


def save_encoder(E: Encoder, path: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
    """Write `E` (weights, `init_kwargs`, the generator identity it belongs to, and `metadata` values as JSON) to a
    `.safetensors` file, written beside `path` and renamed, so readers never see half a file."""
    if metadata and {"format", "init_kwargs", IDENTITY_KEY} & set(metadata):
        raise ValueError(f"metadata keys format, init_kwargs and {IDENTITY_KEY} are reserved")
    meta = {"format": FORMAT, "init_kwargs": json.dumps(E.init_kwargs),
            **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    if E.generator_identity is not None:
        meta[IDENTITY_KEY] = E.generator_identity
    return weights.write_weights(path, E.state_dict(), meta)


def load_encoder(source: str | Path = "faces64", device: str | torch.device = "cpu", *,
                 generator: nn.Module | str | None = None) -> Encoder:
    """An encoder from a built-in name (`faces64`) or a `.safetensors` file written by `save_encoder`.

    `generator` (a generator, or its `generator_identity`): refuse the file unless it was trained for that generator
    (`EncoderGeneratorMismatch`). Raises `ganinv.utils.weights.MissingWeights` (a FileNotFoundError) or
    `BadWeightsFile` (a ValueError) for missing or unreadable files."""
    _, meta, tensors = weights.load_weights(source, ENCODER_WEIGHTS)
    E = Encoder(**json.loads(meta["init_kwargs"]))
    E.load_state_dict(tensors)
    E.generator_identity = meta.get(IDENTITY_KEY)
    if generator is not None:
        check_encoder_for(E, generator, name=str(source))
    return E.to(device).eval().requires_grad_(False)


_IDENTITIES: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()


def cached_generator_identity(G: nn.Module) -> str:
    """`generator_identity(G)`, hashed once per generator object (its weights are frozen while it is used)."""
    from ganinv.generators.io import generator_identity

    if G not in _IDENTITIES:
        _IDENTITIES[G] = generator_identity(G)
    return _IDENTITIES[G]


def check_encoder_for(E: nn.Module, generator: nn.Module | str, *, name: str | None = None) -> None:
    """Raise `EncoderGeneratorMismatch` unless encoder `E` belongs to `generator` (a generator or its identity).

    An `E` that records the generator it was trained for (`E.generator_identity`) must name this one; one that does
    not (files from before identities were recorded) must at least be built for this generator's image size and ws
    shape. Other networks (no such attributes) are checked by the shape of what they return, when used."""
    label = name or type(E).__name__
    recorded = getattr(E, "generator_identity", None)
    if recorded is not None:
        identity = generator if isinstance(generator, str) else cached_generator_identity(generator)
        if identity != recorded:
            raise EncoderGeneratorMismatch(
                f"encoder {label} was trained for generator {recorded[:12]}..., not for this generator "
                f"({identity[:12]}...): its codes would be meaningless here; train an encoder for this generator "
                "(ganinv train-encoder --generator ...) or invert without one")
        return
    if isinstance(generator, str):
        return  # no shapes to compare against an identity string alone
    want = (generator.img_resolution, generator.num_ws, generator.w_dim)
    have = tuple(getattr(E, k, None) for k in ("img_resolution", "num_ws", "w_dim"))
    if None not in have and have != want:
        raise EncoderGeneratorMismatch(
            f"encoder {label} is for {have[0]} px images and ws [{have[1]}, {have[2]}]; the generator draws {want[0]} px "
            f"from ws [{want[1]}, {want[2]}]: train an encoder for this generator (ganinv train-encoder --generator ...)")


@dataclass(frozen=True)
class EncoderRecord:
    """What a store records about the encoder its codes started from."""

    source: str                      # as the user gave it: a built-in name or a path
    path: str                        # the file read, absolute
    sha256: str                      # of the file's bytes
    generator_identity: str | None   # the generator the file says it was trained for (None: a file from before)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def encoder_record(source: str | os.PathLike, *, generator: nn.Module | str | None = None) -> EncoderRecord:
    """Check the encoder file `source` (built-in name or path) against `generator` (a generator or its identity;
    None: no check) without building the network, and describe it for a store's provenance. Raises
    `EncoderGeneratorMismatch`, `MissingWeights` or `BadWeightsFile`, each naming the file."""
    path = weights.resolve_weights(source, ENCODER_WEIGHTS)
    meta = weights.read_metadata(path, ENCODER_WEIGHTS)
    recorded = meta.get(IDENTITY_KEY)
    if generator is not None:
        probe = _ShapeOnly(json.loads(meta["init_kwargs"]), recorded)
        check_encoder_for(probe, generator, name=str(source))
    return EncoderRecord(source=str(source), path=str(path.resolve()), sha256=file_sha256(path),
                         generator_identity=recorded)


class _ShapeOnly:
    """What `check_encoder_for` reads of an encoder, from a file's metadata."""

    def __init__(self, init_kwargs: dict[str, Any], generator_identity: str | None):
        self.img_resolution, self.num_ws, self.w_dim = (init_kwargs[k] for k in ("img_resolution", "num_ws", "w_dim"))
        self.generator_identity = generator_identity
