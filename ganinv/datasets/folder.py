"""Image files as a generator sees them: decode any file Pillow reads into `[3, R, R]` in [-1, 1], or say why not.

The decode policy (what every inversion worker does to an input file, recorded in each store's config):

1. **Open** with Pillow, header only. Refused: files that cannot be read (missing, permissions, broken link), files
   Pillow does not recognise (a text file named `.jpg`), images whose header claims more than `max_pixels` pixels
   (decompression bombs: a tiny file announcing 50000x50000 would need 7.5 GB; Pillow's own default limit,
   `PIL.Image.MAX_IMAGE_PIXELS` = 89.5 Mpx, is the default here), and images too small for the generator: the short
   side times `max_upscale` (8) must reach the resolution, so a 1x1 image or a 4 px thumbnail for a 64 px
   generator is refused rather than invented.
2. **Decode** all pixels. Truncated or corrupt data is refused (Pillow's `LOAD_TRUNCATED_IMAGES` stays off: a
   half-grey image must not be inverted as if it were real). Multi-frame files (GIF, TIFF) give their first frame.
3. **Orient** by the EXIF orientation tag (phone photos are stored sideways and rotated on display).
4. **To RGB, 8 bits.** 16-bit grayscale (`I;16*`, `I`) is scaled by 255/65535 and rounded (Pillow's own convert
   would clip everything above 255 to white); Pillow already reads 16-bit RGB PNGs as 8-bit RGB (high byte).
   32-bit float images (`F`) are taken as 0..255 and clipped. Grayscale is replicated to three channels.
   **Transparency is composited on `background` (white)**: pixels under alpha 0 hold arbitrary colours that dropping
   the alpha channel would expose, and cut-out objects are conventionally shown on white.
5. **Center-crop to a square** (the largest one, centred), then **resize with Lanczos** (antialiased when shrinking)
   to the generator's resolution. Cropping rather than padding: generators are trained on square, full-bleed
   images (FFHQ, LSUN), and padding would ask them for borders they never produced. Faces should be aligned the
   way the generator's training set was (e.g. FFHQ alignment) before inversion; this policy does not detect faces.

Everything here is deterministic for a given Pillow version, so re-running a shard decodes the same pixels.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ganinv.datasets.image_names import IMAGE_SUFFIXES, is_image_name  # noqa: F401 (re-exported)
from ganinv.utils.images import from_pil

PILLOW_MAX_PIXELS = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS's default (a quarter GiB of 24-bit pixels)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# What Pillow's decoders raise on malformed data (it has no common base class for them).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


class ImageDecodeError(ValueError):
    """An input file cannot be turned into a generator input; `reason` is a short label, `str()` the full message."""

    def __init__(self, source: str, reason: str, detail: str):
        self.source, self.reason, self.detail = source, reason, detail
        super().__init__(f"{source}: {reason}: {detail}")


@dataclass(frozen=True)
class DecodePolicy:
    """How a file becomes a `[3, resolution, resolution]` target (see the module docstring)."""

    resolution: int
    max_upscale: float = 8.0                            # refuse images whose short side * max_upscale < resolution
    max_pixels: int = PILLOW_MAX_PIXELS                 # refuse headers announcing more pixels (decompression bombs)
    background: tuple[int, int, int] = (255, 255, 255)  # transparent pixels are composited on this colour
    crop: str = "center-square"                         # recorded for the store; the only policy implemented
    resample: str = "lanczos"

    def __post_init__(self):
        if self.resolution < 1 or self.max_upscale < 1 or self.max_pixels < 1:
            raise ValueError(f"resolution, max_pixels must be >= 1 and max_upscale >= 1, got {self}")
        if self.crop != "center-square" or self.resample != "lanczos":
            raise ValueError(f"only crop='center-square' and resample='lanczos' are implemented, got {self}")
        object.__setattr__(self, "background", tuple(int(c) for c in self.background))

    @property
    def min_side(self) -> int:
        """The smallest short side accepted."""
        return math.ceil(self.resolution / self.max_upscale)


def decode_image(source: str | os.PathLike | BinaryIO, policy: DecodePolicy, *, name: str | None = None
                 ) -> torch.Tensor:
    """Decode one image file (a path or an open binary file) by `policy` -> `[3, R, R]` float32 in [-1, 1].

    Raises `ImageDecodeError` naming the file (`name`, default the path) and the reason.
    """
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<file>"))
    image = _open_checked(source, policy, label)
    try:
        rgb = _to_rgb(ImageOps.exif_transpose(image), policy.background, label)
    finally:
        image.close()
    return from_pil(_crop_resize(rgb, policy.resolution))


def _open_checked(source: str | os.PathLike | BinaryIO, policy: DecodePolicy, label: str) -> Image.Image:
    """Opens, checks the header's size, then decodes every pixel."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as err:
        raise ImageDecodeError(label, "unreadable", f"{type(err).__name__}: {err.strerror or err}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(label, "not an image", "Pillow recognises no image format in this file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(label, "too many pixels", f"{err}") from None
    except _DECODE_ERRORS as err:
        raise ImageDecodeError(label, "corrupt header", f"{type(err).__name__}: {err}") from None
    width, height = image.size
    if width * height > policy.max_pixels:
        image.close()
        raise ImageDecodeError(label, "too many pixels", f"header says {width}x{height} = {width * height:,} pixels, "
                                                         f"more than max_pixels={policy.max_pixels:,} (decompression "
                                                         "bomb guard); shrink the image or raise the limit")
    if min(width, height) < policy.min_side:
        image.close()
        raise ImageDecodeError(label, "too small", f"{width}x{height} px; the short side must be at least "
                                                   f"{policy.min_side} px to make {policy.resolution} px inputs "
                                                   f"(at most {policy.max_upscale:g}x upscaling)")
    try:
        image.load()
    except _DECODE_ERRORS as err:
        image.close()
        raise ImageDecodeError(label, "truncated or corrupt", f"{type(err).__name__}: {err}") from None
    return image


def _to_rgb(image: Image.Image, background: tuple[int, int, int], label: str) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, by the policy's rules for 16-bit, float and transparent images."""
    if image.mode in _SIXTEEN_BIT_MODES:
        pixels = np.rint(np.asarray(image, dtype=np.float64) * (255.0 / 65535.0))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.rint(np.asarray(image, np.float64)), 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as err:
        raise ImageDecodeError(label, "unsupported mode", f"Pillow cannot convert mode {image.mode!r} to RGB: "
                                                          f"{err}") from None


def _crop_resize(image: Image.Image, resolution: int) -> Image.Image:
    """The largest centred square, resized to `resolution` with Lanczos. Cropped first, so pixels outside the square
    never leak into its edges (Pillow's `resize(box=...)` would sample them for the filter's support)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image if width == height else image.crop((left, top, left + side, top + side))
    return square if side == resolution else square.resize((resolution, resolution), Image.Resampling.LANCZOS)
