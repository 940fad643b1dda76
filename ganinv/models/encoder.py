"""A pSp/e4e-style encoder: image -> W+ codes for one generator (Richardson et al. 2021; Tov et al. 2021).

A residual CNN builds a feature pyramid; each of the generator's `num_ws` layers reads its w from the pyramid level
that matches its scale (coarse ws from the coarsest features, as in pSp's map2style), and the encoder predicts
offsets from the generator's `w_avg` (as e4e does), so an untrained encoder already starts at the average face.

Shapes: image `[N, 3, R, R]` in [-1, 1] with R the generator's resolution -> ws `[N, num_ws, w_dim]`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ganinv import edit
from ganinv.utils import weights

BUILTIN_ENCODERS = {"faces64": Path(__file__).resolve().parents[1] / "assets" / "faces64" / "encoder.safetensors"}
FORMAT = "ganinv.encoder"
ENCODER_WEIGHTS = weights.WeightsKind(name="encoder", format=FORMAT, builtins=BUILTIN_ENCODERS,
                                      obtain="train one with `ganinv train-encoder` (nothing is downloaded)",
                                      write="ganinv.models.encoder.save_encoder")


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
                 style_channels: int = 64, ws_resolutions: Sequence[int] | None = None):
        """`ws_resolutions`: the resolution each w controls (`G.ws_resolutions`); default StyleGAN2's rule."""
        super().__init__()
        self.init_kwargs = dict(img_resolution=img_resolution, num_ws=num_ws, w_dim=w_dim, channels=list(channels),
                                style_channels=style_channels)
        if ws_resolutions is not None:
            self.init_kwargs["ws_resolutions"] = [int(r) for r in ws_resolutions]
        else:
            ws_resolutions = edit.ws_resolutions(num_ws)
        self.img_resolution, self.num_ws, self.w_dim = img_resolution, num_ws, w_dim
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, padding=1), nn.LeakyReLU(0.2))
        stages, in_ch = [], channels[0]
        for ch in channels:
            stages.append(ResidualBlock(in_ch, ch, stride=2))
            in_ch = ch
        self.stages = nn.ModuleList(stages)
        self.level_resolutions = [img_resolution // 2 ** (i + 1) for i in range(len(channels))]
        self.laterals = nn.ModuleList(nn.Conv2d(ch, style_channels, 1) for ch in channels)
        self.level_of_w = [self._level_for(res) for res in ws_resolutions]
        self.heads = nn.ModuleList(Map2Style(style_channels, self.level_resolutions[lvl], w_dim)
                                   for lvl in self.level_of_w)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def _level_for(self, resolution: int) -> int:
        diffs = [abs(math.log2(r) - math.log2(resolution)) for r in self.level_resolutions]
        return diffs.index(min(diffs))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert img.ndim == 4 and img.shape[1:] == (3, self.img_resolution, self.img_resolution), \
            f"encoder expects [N, 3, {self.img_resolution}, {self.img_resolution}], got {list(img.shape)}"
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


def save_encoder(E: Encoder, path: str | Path, *, metadata: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save_file
    meta = {"format": FORMAT, "init_kwargs": json.dumps(E.init_kwargs),
            **{k: json.dumps(v) for k, v in (metadata or {}).items()}}
    save_file({k: v.detach().cpu().contiguous() for k, v in E.state_dict().items()}, str(path), metadata=meta)


def load_encoder(source: str | Path = "faces64", device: str | torch.device = "cpu") -> Encoder:
    """An encoder from a built-in name (`faces64`) or a `.safetensors` file written by `save_encoder`.

    Raises `ganinv.utils.weights.MissingWeights` (a FileNotFoundError) or `BadWeightsFile` (a ValueError)."""
    _, meta, tensors = weights.load_weights(source, ENCODER_WEIGHTS)
    E = Encoder(**json.loads(meta["init_kwargs"]))
    E.load_state_dict(tensors)
    return E.to(device).eval().requires_grad_(False)
