"""Known degradations for restoration by inversion (Xia et al., "GAN Inversion: A Survey", sec. 5: inpainting,
super-resolution, colorization, denoising): find w whose image, degraded the same way, matches the observation
`y = degrade(x) (+ noise)`; `G(w)` is then the restored `x` (PULSE and mGANprior work this way).

Each degradation is an object with a differentiable `degrade(images)` on `[N, C, H, W]` in [-1, 1]. They compose
(`Mask(m) | Downsample(4)` masks, then downsamples) and describe themselves (`to_config()`, read back by
`degradation_from_config`), so a store records how its observations were made.

What the inversion loss compares (`degraded_view` with `observed_view`), for every loss including perceptual ones:
both sides are brought back to the generator's image space by `lift`, the same map on both sides:
- `Mask`: `x * mask`: holes are 0 (mid-grey) on both sides, so nothing in a hole influences the loss;
- `Downsample(f)`: `f x f` area average (what a sensor of bigger pixels integrates); both the degraded image and
  the observation are upsampled bicubically to full size before the loss sees them, so perceptual networks see
  images of the size they were made for, and a pixel loss weighs low frequencies as the upsampled images do;
- `Grayscale()`: BT.601 luma (Pillow's `convert('L')`) replicated to three channels; an RGB photo whose channels are
  equal is its own observation;
- `AddNoise(sigma)`: the identity (the noise is zero-mean and the generator cannot reproduce white noise);
  `simulate` draws the noise, sigma in [-1, 1] units (0.2 = 25.5 / 255, the classic sigma 25 benchmark).

`project(y)` removes from an observation what the degradation cannot see (the content of holes, colour), so that
garbage there has no influence. `baseline(y)` is the plain restoration each degradation suggests (mean-fill,
bicubic upsampling, grayscale kept, Gaussian blur): what restoration by inversion must beat, and what an encoder
sees to start hybrid inversion.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F

from ganinv.inversion.masks import MaskSource, mask_source_from_config
from ganinv.inversion_names import RESTORATION_TASKS

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's convert('L')
Shape = tuple[int, int, int]  # (C, H, W)


class Degradation:
    """A known forward model from clean images `[N, C, H, W]` in [-1, 1] to observations (see the module doc)."""

    kind: ClassVar[str]
    resizes: ClassVar[bool] = False  # True when observations are smaller than the images

    def degrade(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.degrade(images)

    def __or__(self, other: "Degradation") -> "Compose":
        """`a | b`: a, then b."""
        return Compose([self, other])

    def check(self, num_images: int, image_shape: Shape) -> None:
        """Raise ValueError when this degradation cannot apply to `num_images` images of `image_shape`."""

    def observed_shape(self, image_shape: Shape) -> Shape:
        return image_shape

    def project(self, observed: torch.Tensor) -> torch.Tensor:
        """The observation with what the degradation cannot see removed (holes zeroed, colour dropped)."""
        return observed

    def lift(self, observed: torch.Tensor) -> torch.Tensor:
        """Observation space -> the generator's image space, differentiable: what the loss compares."""
        return observed

    def baseline(self, observed: torch.Tensor) -> torch.Tensor:
        """The plain restoration of an observation, `[N, C, H, W]` in [-1, 1]."""
        return self.lift(observed).clamp(-1, 1)

    def simulate(self, images: torch.Tensor, *, seed: int | Sequence[int] = 0) -> torch.Tensor:
        """An observation of clean `images`, random parts (noise) drawn per image from `seed` (int s: image i gets
        s + i; or one seed per image), so an image's observation does not depend on its batch."""
        return self._simulate(images, _generators(seed, images.shape[0]))

    def _simulate(self, images: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        return self.degrade(images)

    def keep_observed(self, restored: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """`restored` changed so that it explains the observation exactly where the observation says something
        (known pixels pasted back, the observed luma kept); default: unchanged (noise says nothing exactly)."""
        return restored

    def show(self, observed: torch.Tensor) -> torch.Tensor:
        """The observation at image size for a person to look at (holes grey, low resolution as blocks)."""
        return self.lift(self.project(observed)).clamp(-1, 1)

    def to(self, device: torch.device | str) -> "Degradation":
        return self

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def degraded_view(self, images: torch.Tensor) -> torch.Tensor:
        """`lift(degrade(images))`: the synthesised side of the inversion loss."""
        return self.lift(self.degrade(images))

    def observed_view(self, observed: torch.Tensor) -> torch.Tensor:
        """`lift(project(observed))`: the target side of the inversion loss."""
        return self.lift(self.project(observed))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "kind")
        return f"{type(self).__name__}({args})"


class Mask(Degradation):
    """Keep the pixels where `mask` is 1, lose those where it is 0 (inpainting). `mask`: 0/1 `[N, 1, H, W]` or
    `[N, C, H, W]`, one per image; `source`: the rule or folder it came from (`ganinv.inversion.masks`), which is
    what `to_config` records (a mask given only as a tensor cannot be recorded)."""

    kind = "mask"

    def __init__(self, mask: torch.Tensor, *, source: MaskSource | None = None):
        if mask.ndim != 4 or not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"mask must be 0/1 of shape [N, C, H, W] or [N, 1, H, W] (1 = observed pixel), got "
                             f"{mask.dtype} {list(mask.shape)}" + ("" if mask.ndim != 4 else " with other values"))
        self.mask, self.source = mask.float(), source

    def check(self, num_images: int, image_shape: Shape) -> None:
        channels, height, width = image_shape
        n, c, h, w = self.mask.shape
        if n != num_images or (h, w) != (height, width) or c not in (1, channels):
            raise ValueError(f"mask must be 0/1 of shape [{num_images}, {channels}, {height}, {width}] or "
                             f"[{num_images}, 1, {height}, {width}], got {list(self.mask.shape)}")

    def degrade(self, images: torch.Tensor) -> torch.Tensor:
        return images * self.mask

    def project(self, observed: torch.Tensor) -> torch.Tensor:
        return observed * self.mask

    def keep_observed(self, restored: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask.expand_as(restored).bool(), observed, restored)

    def baseline(self, observed: torch.Tensor) -> torch.Tensor:
        """Mean-fill: each hole takes its image's mean observed colour (per channel)."""
        mask = self.mask.expand_as(observed)
        mean = (observed * mask).sum(dim=(2, 3), keepdim=True) / mask.sum(dim=(2, 3), keepdim=True).clamp_min(1)
        return torch.where(mask.bool(), observed, mean).clamp(-1, 1)

    def to(self, device: torch.device | str) -> "Mask":
        return Mask(self.mask.to(device), source=self.source)

    def to_config(self) -> dict[str, Any]:
        if self.source is None:
            raise ValueError("a Mask made from a tensor cannot be recorded: build it from a rule or a folder "
                             "(Mask.from_source(CenterBox(0.4), image_ids, resolution))")
        return {"kind": self.kind, "source": self.source.to_config()}

    @classmethod
    def from_source(cls, source: MaskSource, image_ids: Sequence[str], resolution: int) -> "Mask":
        return cls(source.masks(image_ids, resolution), source=source)

    def __repr__(self) -> str:
        return f"Mask({self.source!r})" if self.source is not None else f"Mask(<{list(self.mask.shape)} tensor>)"


class Downsample(Degradation):
    """`factor x factor` area averaging (super-resolution); observations are `[N, C, H / factor, W / factor]`."""

    kind = "downsample"
    resizes = True

    def __init__(self, factor: int):
        if int(factor) != factor or factor < 1:
            raise ValueError(f"Downsample factor must be a whole number >= 1, got {factor!r}")
        self.factor = int(factor)

    def check(self, num_images: int, image_shape: Shape) -> None:
        if image_shape[1] % self.factor or image_shape[2] % self.factor:
            raise ValueError(f"Downsample({self.factor}) needs images whose size divides by {self.factor}, got "
                             f"{image_shape[1]}x{image_shape[2]}")

    def observed_shape(self, image_shape: Shape) -> Shape:
        channels, height, width = image_shape
        return channels, height // self.factor, width // self.factor

    def degrade(self, images: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(images, self.factor) if self.factor > 1 else images

    def lift(self, observed: torch.Tensor) -> torch.Tensor:
        """Bicubic upsampling (half-pixel centres, as the area average's)."""
        if self.factor == 1:
            return observed
        return F.interpolate(observed, scale_factor=self.factor, mode="bicubic", align_corners=False)

    def show(self, observed: torch.Tensor) -> torch.Tensor:
        return F.interpolate(observed, scale_factor=self.factor, mode="nearest").clamp(-1, 1)

    def keep_observed(self, restored: torch.Tensor, observed: torch.Tensor, *,
                      iterations: int = 10) -> torch.Tensor:
        """Iterative back-projection (Irani & Peleg 1991): the residual `observed - degrade(x)` upsampled
        bicubically and added, `iterations` times (smooth corrections), then what is left added per f x f block, so
        every block's mean is exactly the observed pixel (before clamping to [-1, 1])."""
        for _ in range(iterations):
            restored = restored + self.lift(observed - self.degrade(restored))
        residual = observed - self.degrade(restored)
        return (restored + F.interpolate(residual, scale_factor=self.factor, mode="nearest")).clamp(-1, 1)

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "factor": self.factor}


class Grayscale(Degradation):
    """BT.601 luma, replicated to three channels (colorization)."""

    kind = "grayscale"

    def check(self, num_images: int, image_shape: Shape) -> None:
        if image_shape[0] != 3:
            raise ValueError(f"Grayscale needs RGB images (3 channels), got {image_shape[0]}")

    def degrade(self, images: torch.Tensor) -> torch.Tensor:
        weights = images.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
        return (images * weights).sum(dim=1, keepdim=True).expand_as(images)

    def project(self, observed: torch.Tensor) -> torch.Tensor:
        return self.degrade(observed)

    def keep_observed(self, restored: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The restoration's colour on the observed luma (each pixel shifted by its luma difference)."""
        return (restored + self.project(observed) - self.degrade(restored)).clamp(-1, 1)


class AddNoise(Degradation):
    """Additive white Gaussian noise of known std `sigma` in [-1, 1] units (denoising), clipped to [-1, 1] as an
    8-bit file would be. `degrade` is the identity: the loss compares G(w) with the noisy observation directly.
    `blur_sigma`: the std in pixels of the Gaussian blur that is the plain baseline (default `5 * sigma`: 1 px at
    sigma 0.2; for faces64 0.75 px scored best of 0.5-2 px). Invert with a pixel loss: a perceptual network takes
    the noise for texture and has the generator draw it (faces64, 300 steps: mse 26.8 dB, clf-perceptual+mse
    20.7 dB, best blur 24.9 dB)."""

    kind = "add-noise"

    def __init__(self, sigma: float, *, blur_sigma: float | None = None):
        if not sigma > 0:
            raise ValueError(f"AddNoise sigma must be > 0 (in [-1, 1] units), got {sigma!r}")
        self.sigma = float(sigma)
        self.blur_sigma = float(blur_sigma) if blur_sigma is not None else 5 * self.sigma

    def degrade(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def _simulate(self, images: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        noise = torch.stack([torch.randn(images.shape[1:], generator=g) for g in generators]).to(images)
        return (images + self.sigma * noise).clamp(-1, 1)

    def baseline(self, observed: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(observed, self.blur_sigma).clamp(-1, 1)

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "sigma": self.sigma, "blur_sigma": self.blur_sigma}


class Compose(Degradation):
    """Degradations applied in order (`parts[0]` first); `a | b | c` builds one flat Compose. Lifts, baselines and
    displays undo the parts last one first; `keep_observed` leaves the restoration as it is."""

    kind = "compose"

    def __init__(self, parts: Sequence[Degradation]):
        flat = [p for part in parts for p in (part.parts if isinstance(part, Compose) else [part])]
        if not flat or not all(isinstance(p, Degradation) for p in flat):
            raise ValueError(f"Compose needs one or more degradations, got {list(parts)!r}")
        self.parts = flat

    @property
    def resizes(self) -> bool:  # type: ignore[override]
        return any(p.resizes for p in self.parts)

    def check(self, num_images: int, image_shape: Shape) -> None:
        for part in self.parts:
            part.check(num_images, image_shape)
            image_shape = part.observed_shape(image_shape)

    def _chain(self, method: str, value: Any, *, backwards: bool = False) -> Any:
        """`value` through `part.<method>` of every part, in order (or last part first)."""
        for part in reversed(self.parts) if backwards else self.parts:
            value = getattr(part, method)(value)
        return value

    def observed_shape(self, image_shape: Shape) -> Shape:
        return self._chain("observed_shape", image_shape)

    def degrade(self, images: torch.Tensor) -> torch.Tensor:
        return self._chain("degrade", images)

    def project(self, observed: torch.Tensor) -> torch.Tensor:
        """The projections of the parts after the last resizing one (earlier parts saw another image size)."""
        for part in reversed(self.parts):
            if part.resizes:
                break
            observed = part.project(observed)
        return observed

    def lift(self, observed: torch.Tensor) -> torch.Tensor:
        return self._chain("lift", observed, backwards=True)

    def baseline(self, observed: torch.Tensor) -> torch.Tensor:
        return self._chain("baseline", observed, backwards=True)

    def show(self, observed: torch.Tensor) -> torch.Tensor:
        return self._chain("show", observed, backwards=True)

    def _simulate(self, images: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        for part in self.parts:
            images = part._simulate(images, generators)
        return images

    def to(self, device: torch.device | str) -> "Compose":
        return Compose([p.to(device) for p in self.parts])

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "parts": [p.to_config() for p in self.parts]}

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.parts))


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of std `sigma` pixels (kernel +-3 sigma, reflected borders), differentiable."""
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    radius = max(1, math.ceil(3 * sigma))
    return tv_blur(images, [2 * radius + 1] * 2, [sigma] * 2)


def _generators(seed: int | Sequence[int], num_images: int) -> list[torch.Generator]:
    from ganinv.inversion.optimize import image_seeds

    return [torch.Generator().manual_seed(s) for s in image_seeds(seed, num_images)]


def resolve_degradation(mask: torch.Tensor | None, degradation: Degradation | None) -> Degradation | None:
    """The degradation of an inversion given `mask=` and/or `degradation=`: a mask alone is `Mask(mask)`; with both,
    the mask applies first."""
    if mask is None:
        return degradation
    return Mask(mask) if degradation is None else Mask(mask) | degradation


DEGRADATIONS: dict[str, type[Degradation]] = {c.kind: c for c in (Mask, Downsample, Grayscale, AddNoise, Compose)}


def degradation_from_config(config: Mapping[str, Any], *, image_ids: Sequence[str] | None = None,
                            resolution: int | None = None) -> Degradation:
    """The degradation `config` (from `to_config()`) describes; a mask is made for `image_ids` at `resolution`."""
    kind = config.get("kind")
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation kind {kind!r} in {dict(config)!r}; known: {sorted(DEGRADATIONS)}")
    options = {k: v for k, v in config.items() if k != "kind"}
    if kind == "compose":
        return Compose([degradation_from_config(p, image_ids=image_ids, resolution=resolution)
                        for p in options["parts"]])
    if kind == "mask":
        if image_ids is None or resolution is None:
            raise ValueError("a mask degradation is made per batch: pass image_ids and resolution")
        return Mask.from_source(mask_source_from_config(options["source"]), image_ids, resolution)
    return DEGRADATIONS[kind](**options)


# The restoration tasks users pick by name (`--task`), as degradation configs.
TASKS = RESTORATION_TASKS  # each has its branch in task_config (a test checks every one)


def task_config(task: str, *, mask_source: MaskSource | None = None, factor: int = 4,
                sigma: float = 0.1) -> dict[str, Any]:
    """The degradation config of a restoration task: `inpaint` needs `mask_source`, `super-resolution` uses
    `factor`, `denoise` uses `sigma`."""
    if task == "inpaint":
        if mask_source is None:
            raise ValueError("task 'inpaint' needs masks: a folder of mask PNGs or a mask rule")
        return {"kind": "mask", "source": mask_source.to_config()}
    if task == "super-resolution":
        return Downsample(factor).to_config()
    if task == "colorize":
        return Grayscale().to_config()
    if task == "denoise":
        return AddNoise(sigma).to_config()
    raise ValueError(f"unknown restoration task {task!r}; choose from {list(TASKS)}")
