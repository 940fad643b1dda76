"""Which file names are images: their one home, free of torch (and of Pillow), so that the dataset scan and the
CLI's preflight can tell an image file by its name before anything heavy loads. `ganinv.datasets.folder` decodes
what these names select."""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def is_image_name(path: str | os.PathLike) -> bool:
    """True for names ending in one of `IMAGE_SUFFIXES` (case-insensitive)."""
    return Path(str(path)).suffix.lower() in IMAGE_SUFFIXES
