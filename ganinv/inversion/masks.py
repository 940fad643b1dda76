"""Where inpainting masks come from: a rule (`CenterBox`, `RandomBoxes`) or a folder of PNGs (`MaskFolder`).

Every source makes `[N, 1, R, R]` float masks, 1 = observed pixel, 0 = hole, one per image id, deterministically:
the same id gives the same mask in any batch, shard, worker or rerun (random boxes are seeded from the id). A source
describes itself (`to_config()`, read back by `mask_source_from_config`) so a store can record it; `parse_mask_rule`
reads the CLI's `--mask-rule` spelling (its parser, the rules' defaults and their checks live in the torch-free
`ganinv.inversion_names`, so the CLI refuses a rule it does not understand before torch loads).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import torch

from ganinv.inversion_names import (CENTER_BOX_AREA, MASK_HOLES, RANDOM_BOXES_COUNT, mask_rule_config,
                                    mask_rule_value_problem)
from ganinv.utils.seeds import seed_from_id


class MaskSource(Protocol):
    kind: str

    def masks(self, image_ids: Sequence[str], resolution: int) -> torch.Tensor: ...

    def to_config(self) -> dict[str, Any]: ...


def _box_mask(resolution: int, boxes: Sequence[tuple[int, int, int, int]]) -> torch.Tensor:
    """`[1, R, R]` ones with each `(top, left, height, width)` box zeroed."""
    mask = torch.ones(1, resolution, resolution)
    for top, left, height, width in boxes:
        mask[:, top:top + height, left:left + width] = 0
    return mask


def _config(source: Any) -> dict[str, Any]:
    return {"kind": source.kind, **asdict(source)}


@dataclass(frozen=True)
class CenterBox:
    """One centred square hole covering `area` of the image (0.4: a 40 x 40 hole in a 64 px image)."""

    area: float = CENTER_BOX_AREA
    kind = "center-box"

    def __post_init__(self):
        problem = mask_rule_value_problem(self.kind, self.area)
        if problem:
            raise ValueError(problem)

    def masks(self, image_ids: Sequence[str], resolution: int) -> torch.Tensor:
        side = min(resolution - 1, max(1, round(math.sqrt(self.area) * resolution)))
        start = (resolution - side) // 2
        return _box_mask(resolution, [(start, start, side, side)]).expand(len(image_ids), 1, -1, -1).clone()

    def to_config(self) -> dict[str, Any]:
        return _config(self)


@dataclass(frozen=True)
class RandomBoxes:
    """`count` rectangular holes per image, each side a uniform fraction in [min_side, max_side] of the image size,
    placed uniformly; drawn from `seed_from_id(image_id, seed)`, so each image has its own boxes for good."""

    count: int = RANDOM_BOXES_COUNT
    min_side: float = 0.1
    max_side: float = 0.4
    seed: int = 0
    kind = "random-boxes"

    def __post_init__(self):
        problem = mask_rule_value_problem(self.kind, self.count)
        if problem or not 0 < self.min_side <= self.max_side < 1:
            raise ValueError(problem or f"random-boxes needs 0 < min_side <= max_side < 1, got {self}")

    def masks(self, image_ids: Sequence[str], resolution: int) -> torch.Tensor:
        return torch.stack([_box_mask(resolution, self._boxes(image_id, resolution)) for image_id in image_ids])

    def _boxes(self, image_id: str, resolution: int) -> list[tuple[int, int, int, int]]:
        rng = np.random.default_rng(seed_from_id(image_id, self.seed))
        sides = rng.uniform(self.min_side, self.max_side, size=(self.count, 2)) * resolution
        sides = np.clip(np.rint(sides), 1, resolution - 1).astype(int)
        corners = (rng.random(size=(self.count, 2)) * (resolution - sides + 1)).astype(int)
        return [(int(t), int(l), int(h), int(w)) for (t, l), (h, w) in zip(corners, sides)]

    def to_config(self) -> dict[str, Any]:
        return _config(self)


@dataclass(frozen=True)
class MaskFolder:
    """One PNG per image in `path`, found by image id: id `a/b.jpg` -> `path/a/b.png`. White marks the holes
    (`holes='white'`, the usual convention of inpainting datasets) or black does (`holes='black'`). Masks are
    cropped and resized exactly as the images are (`ganinv.datasets.folder`: centred square, Lanczos), and a pixel
    counts as observed only where the resized mask is fully observed, so hole edges are never trusted."""

    path: str
    holes: str = "white"
    kind = "folder"

    def __post_init__(self):
        if self.holes not in MASK_HOLES:
            raise ValueError(f"mask folder holes must be {' or '.join(map(repr, MASK_HOLES))}, got {self.holes!r}")

    def file_for(self, image_id: str) -> Path:
        relative = PurePosixPath(image_id).with_suffix(".png")
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"image id {image_id!r} does not name a file inside the mask folder {self.path}")
        return Path(self.path).joinpath(*relative.parts)

    def masks(self, image_ids: Sequence[str], resolution: int) -> torch.Tensor:
        return torch.stack([self._load(image_id, resolution) for image_id in image_ids])

    def _load(self, image_id: str, resolution: int) -> torch.Tensor:
        from ganinv.datasets.folder import DecodePolicy, decode_image

        path = self.file_for(image_id)
        if not path.is_file():
            raise FileNotFoundError(f"no mask for image {image_id!r}: expected {path} (a PNG, "
                                    f"{'white' if self.holes == 'white' else 'black'} = hole)")
        gray = decode_image(path, DecodePolicy(resolution=resolution)).mean(dim=0, keepdim=True)
        # Lanczos rings a little around edges: anything visibly off the observed colour is a hole.
        observed = gray < -0.9 if self.holes == "white" else gray > 0.9
        return observed.float()

    def to_config(self) -> dict[str, Any]:
        return _config(self)


MASK_SOURCES = {c.kind: c for c in (CenterBox, RandomBoxes, MaskFolder)}


def mask_source_from_config(config: Mapping[str, Any]) -> MaskSource:
    kind = config.get("kind")
    if kind not in MASK_SOURCES:
        raise ValueError(f"unknown mask source {kind!r} in {dict(config)!r}; known: {sorted(MASK_SOURCES)}")
    return MASK_SOURCES[kind](**{k: v for k, v in config.items() if k != "kind"})


def parse_mask_rule(rule: str, *, seed: int = 0) -> MaskSource:
    """`--mask-rule` values: `center-box` or `center-box:AREA` (default 0.4); `random-boxes` or
    `random-boxes:COUNT` (default 3), their boxes seeded from each image id and `seed`
    (`ganinv.inversion_names.mask_rule_config` reads them)."""
    return mask_source_from_config(mask_rule_config(rule, seed=seed))
