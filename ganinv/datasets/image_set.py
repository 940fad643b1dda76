"""A set of training images held in memory as uint8 `[N, R, R, 3]`, from a folder, a list file, an array or the
embedded world, every file decoded by the inversion's own decoder (`ganinv.datasets.folder.decode_image`), so an
encoder trains on exactly the pixels inversion will show it.

Sources (`load_image_set(source, resolution)`):
- a **folder**: every image file below it (recursively, names starting with '.' skipped), sorted by path;
- a **list file** (any other file, e.g. `images.txt`): one path per line, relative to the list's folder or absolute;
  blank lines and lines starting with '#' are skipped (the dataset scan's list format, `tasks/dataset.py`);
- a **sequence** of paths (or of `(name, open_file)` pairs, for files that are not local: the caller opens them);
- an **`.npy`** array of uint8 `[N, H, W, 3]`; **`procedural:N:SEED[:vVERSION]`**, the embedded world's faces N of world SEED.

Files the decoder refuses are skipped and reported (`ImageSet.skipped`): one bad file does not stop a training run;
a set with no usable image is an error naming the source.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Sequence, Union

import numpy as np

from ganinv.datasets.folder import IMAGE_SUFFIXES, DecodePolicy, ImageDecodeError, decode_image, is_image_name
from ganinv.utils.images import to_uint8

Opener = Callable[[], BinaryIO]
FileRef = Union[str, os.PathLike, tuple[str, Opener]]
MAX_BYTES = 16 * 2 ** 30  # refuse sets that would need more memory than this as uint8 (say how to shrink them)


@dataclass(frozen=True)
class ImageSet:
    """Decoded images `[N, R, R, 3]` uint8, their names, the files left out (name, reason), and a fingerprint
    (sha256 of the pixels) that says whether two loads gave the same set."""

    images: np.ndarray
    names: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = field(default=())

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(str(self.images.shape).encode())
        digest.update(np.ascontiguousarray(self.images).data)
        return digest.hexdigest()


def list_image_files(source: str | os.PathLike) -> list[Path]:
    """The image files of a folder (recursive, sorted, hidden names skipped) or of a list file."""
    root = Path(source).expanduser()
    if root.is_dir():
        return sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p)
                      and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if root.is_file():
        lines = (line.strip() for line in root.read_text().splitlines())
        return [Path(line) if Path(line).is_absolute() else root.parent / line
                for line in lines if line and not line.startswith("#")]
    raise FileNotFoundError(f"images {str(source)!r}: no such folder or list file; give a folder of images, a text "
                            "file listing one image path per line, an .npy array or procedural:N:SEED")


def decode_files(files: Sequence[FileRef], resolution: int, *, workers: int | None = None) -> ImageSet:
    """Decode `files` by the inversion's decode policy at `resolution` on `workers` threads (default: the cores)."""
    if len(files) * resolution * resolution * 3 > MAX_BYTES:
        raise ValueError(f"{len(files)} images at {resolution} px need more than {MAX_BYTES / 2 ** 30:.0f} GiB in "
                         "memory; train on a subset (a list file naming fewer images)")
    policy = DecodePolicy(resolution=resolution)

    def one(ref: FileRef) -> tuple[str, np.ndarray | str]:
        """(name, pixels [R, R, 3] uint8) or (name, why it was skipped)."""
        name = ref[0] if isinstance(ref, tuple) else str(ref)
        try:
            if isinstance(ref, tuple):
                with ref[1]() as f:
                    image = decode_image(f, policy, name=name)
            else:
                image = decode_image(ref, policy)
        except ImageDecodeError as err:
            return name, f"{err.reason}: {err.detail}"
        except OSError as err:  # a caller's opener failing (a remote file gone)
            return name, f"unreadable: {type(err).__name__}: {err}"
        # to_uint8 gives back exactly the bytes the decoder produced (utils.images round trip).
        return name, to_uint8(image).permute(1, 2, 0).numpy()

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        decoded = list(pool.map(one, files))
    kept = [(name, out) for name, out in decoded if not isinstance(out, str)]
    skipped = tuple((name, out) for name, out in decoded if isinstance(out, str))
    if not kept:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise ValueError(f"none of the {len(files)} image files could be decoded{first}")
    return ImageSet(np.stack([p for _, p in kept]), tuple(n for n, _ in kept), skipped)


def load_image_set(source: str | os.PathLike | Sequence[FileRef], resolution: int, *,
                   workers: int | None = None) -> ImageSet:
    """The images of `source` (see the module docstring) as uint8 `[N, resolution, resolution, 3]`."""
    if not isinstance(source, (str, os.PathLike)):
        return decode_files(list(source), resolution, workers=workers)
    spec = str(source)
    if spec.startswith("procedural:"):
        return _procedural(spec, resolution)
    if spec.endswith(".npy"):
        return _array(Path(spec), resolution)
    files = list_image_files(spec)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {spec}")
    return decode_files(files, resolution, workers=workers)


def _procedural(spec: str, resolution: int) -> ImageSet:
    from ganinv.datasets.procedural_faces import image_id, parse_procedural_spec, render_batch

    try:
        n, seed, version = parse_procedural_spec(spec)
    except ValueError as err:
        raise ValueError(f"images {err}") from None
    images = render_batch(seed, range(n), size=resolution, workers=None, version=version)[0]
    return ImageSet(images, tuple(image_id(i) for i in range(n)))


def _array(path: Path, resolution: int) -> ImageSet:
    images = np.load(path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (resolution, resolution, 3):
        raise ValueError(f"{path}: expected uint8 [N, {resolution}, {resolution}, 3] (the generator's resolution), "
                         f"got {images.dtype} {list(images.shape)}")
    return ImageSet(images, tuple(f"{path.name}[{i}]" for i in range(len(images))))
