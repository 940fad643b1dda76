"""Image files for decode, scan and flow tests: a PNG writer that can lie in its header, and a folder of every kind
of bad input next to good ones, with the outcome each file must get."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path: Path, pixels: np.ndarray, *, bit_depth: int = 8, header_size: tuple[int, int] | None = None
              ) -> Path:
    """A PNG of `pixels` ([H, W] gray or [H, W, 3] RGB, uint8 or uint16 for bit_depth 16), written byte by byte so
    that the header may claim another size (`header_size` = (width, height))."""
    h, w = pixels.shape[:2]
    color_type = 0 if pixels.ndim == 2 else 2
    width, height = header_size or (w, h)
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + np.ascontiguousarray(pixels[y]).astype(dtype).tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    path.write_bytes(data + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))
    return path


def smooth_image(seed: int, size: int) -> np.ndarray:
    """[size, size, 3] uint8: a smooth random colour field (something a tiny generator can roughly fit)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(2, 2, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR))


def write_good_images(folder: Path, n: int, *, size: int = 16, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [_save(Image.fromarray(smooth_image(i, size)), folder / f"good{i:03d}.png") for i in range(start, start + n)]


def _save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def write_bad_inputs(folder: Path, *, size: int = 16) -> dict[str, tuple[str, str]]:
    """Writes one file per kind of awkward input into `folder` and returns {file name: (outcome, reason)}:
    outcome 'done' (decoded and inverted), 'failed' (recorded in the store with the reason) or 'skipped' (refused
    by the scan: unreadable, or a duplicate of another file's content)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, tuple[str, str]] = {}
    rgb = smooth_image(100, size)
    png = folder / "whole.png"
    _save(Image.fromarray(rgb), png)
    expected["whole.png"] = ("done", "")
    data = png.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    expected["truncated.png"] = ("failed", "truncated or corrupt")
    (folder / "notes.jpg").write_text("this is a text file with an image's name\n")
    expected["notes.jpg"] = ("failed", "not an image")
    write_png(folder / "deep16.png", rgb.astype(np.uint16) * 257, bit_depth=16)
    expected["deep16.png"] = ("done", "")
    write_png(folder / "gray16.png", rgb[..., 0].astype(np.uint16) * 257, bit_depth=16)
    expected["gray16.png"] = ("done", "")
    alpha = np.full((size, size, 1), 255, np.uint8)
    alpha[: size // 2] = 0
    _save(Image.fromarray(np.concatenate([rgb, alpha], axis=2), mode="RGBA"), folder / "rgba.png")
    expected["rgba.png"] = ("done", "")
    _save(Image.fromarray(rgb[..., 1]), folder / "gray.png")
    expected["gray.png"] = ("done", "")
    _save(Image.new("RGB", (1, 1), (200, 10, 10)), folder / "one_pixel.png")
    expected["one_pixel.png"] = ("failed", "too small")
    write_png(folder / "bomb.png", rgb[:1, :1], header_size=(50000, 50000))
    expected["bomb.png"] = ("failed", "too many pixels")
    os.symlink(folder / "no-such-file.png", folder / "dangling.png")
    expected["dangling.png"] = ("skipped", "unreadable")
    shutil.copyfile(png, folder / "whole_copy.png")
    expected["whole_copy.png"] = ("skipped", "duplicate of whole.png")
    return expected
