"""Scan a dataset into a manifest: which files, under which ids, with which content hashes and labels.

`scan_images(source)` accepts

- a **directory** (local path or fsspec URL such as `s3://bucket/faces/`): every file below it, recursively, whose
  name ends in one of `ganinv.datasets.folder.IMAGE_SUFFIXES` (case-insensitive); names starting with '.' (and
  everything inside such folders) are ignored;
- a **list file** (any other existing file, e.g. `images.txt`): one path per line, relative to the list file's
  folder or absolute, on the list file's filesystem; blank lines and lines starting with '#' are ignored;
- a **glob** (`/data/**/*.jpg`, `s3://bucket/2024-*/*.png`): the matches with image suffixes.

Each file's `image_id` is its path relative to the dataset root (the directory, the list file's folder, or the
glob's fixed prefix), with '/' separators: stable as long as the folder layout is, and what the per-image seed is
derived from. Items are sorted by image_id.

Every file is read once to hash it (`source_sha256`: the store's identity of an input). What the scan cannot use is
not dropped silently but returned in `ScanResult.skipped` with a reason: files it cannot read, and files whose
content duplicates an earlier one (the store holds each content once). Decoding is not the scan's job: workers
decode, and record what fails to decode in the store (`ganinv.datasets.folder`).

Labels: an optional CSV whose first column names the image (its image_id, file name or file stem) and whose other
columns are numbers (empty cells are missing). The procedural-faces `attributes.csv` is such a file.
"""

from __future__ import annotations

import csv
import hashlib
import math
import posixpath
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import fsspec

from ganinv.datasets.folder import IMAGE_SUFFIXES, is_image_name
from storage import Manifest

_GLOB_CHARS = "*?["
_HASH_THREADS = 8  # hashing is I/O-bound on buckets; threads hide the round trips


@dataclass(frozen=True)
class Skipped:
    """A file the scan found but did not put in the manifest, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class ScanResult:
    """The manifest of usable files, and every file left out with its reason."""

    source: str
    manifest: Manifest
    skipped: tuple[Skipped, ...] = ()
    labels_unmatched: int = 0          # label rows that named no scanned file
    label_names: tuple[str, ...] = field(default=())

    def summary(self) -> dict[str, Any]:
        """Small and JSON-able: counts and the skipped files."""
        return {"source": self.source, "items": len(self.manifest), "root": self.manifest.root,
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
                "labels": list(self.label_names), "labels_unmatched": self.labels_unmatched}


def scan_images(source: str, *, labels: str | None = None, storage_options: Mapping[str, Any] | None = None
                ) -> ScanResult:
    """Lists, hashes and labels the images of `source` (a directory, list file or glob; see the module docstring)."""
    fs, root, files = list_images(source, storage_options=storage_options)
    if not files:
        raise FileNotFoundError(f"no image files in {source!r} (looked for {', '.join(IMAGE_SUFFIXES)}); give a folder "
                                "of images, a list file with one path per line, or a glob such as 'photos/*.jpg'")
    ids = [_image_id(root, path) for path in files]
    hashes = _hash_all(fs, files)
    table = read_labels(labels, storage_options=storage_options) if labels else {}
    records, skipped, first_by_hash, used_rows = [], [], {}, set()
    for image_id, path, digest in sorted(zip(ids, files, hashes)):
        if isinstance(digest, Exception):
            skipped.append(Skipped(image_id, f"unreadable: {type(digest).__name__}: {digest}"))
        elif digest in first_by_hash:
            skipped.append(Skipped(image_id, f"duplicate of {first_by_hash[digest]}"))
        else:
            first_by_hash[digest] = image_id
            row_key, item_labels = _labels_for(table, image_id)
            used_rows.add(row_key)
            records.append(dict(image_id=image_id, path=image_id if _under(root, path) else _full(fs, path),
                                source_sha256=digest, labels=item_labels))
    manifest = Manifest.from_records(records, root=_full(fs, root))
    names = tuple(sorted({n for row in table.values() for n in row}))
    return ScanResult(source=source, manifest=manifest, skipped=tuple(skipped),
                      labels_unmatched=len(set(table) - used_rows), label_names=names)


def list_images(source: str, *, storage_options: Mapping[str, Any] | None = None
                ) -> tuple[fsspec.AbstractFileSystem, str, list[str]]:
    """(filesystem, root, file paths) for a directory, list file or glob; paths as the filesystem names them."""
    fs, path = fsspec.core.url_to_fs(source, **dict(storage_options or {}))
    if any(c in source for c in _GLOB_CHARS) and not fs.exists(path):
        root = _glob_root(path)
        return fs, root, sorted(p for p in fs.glob(path) if is_image_name(p) and not fs.isdir(p))
    if fs.isdir(path):
        root = path.rstrip("/")
        return fs, root, sorted(p for p in fs.find(root) if is_image_name(p) and not _hidden(root, p))
    if fs.isfile(path):
        root = posixpath.dirname(path)
        return fs, root, _read_list_file(fs, path, root)
    raise FileNotFoundError(f"{source!r} is neither a folder, a list file nor a glob that matches anything")


def read_labels(csv_path: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """CSV -> {first-column value: {column: number}}; empty cells are left out. A bad cell is a ValueError naming it."""
    with fsspec.open(csv_path, "r", newline="", **dict(storage_options or {})) as f:
        rows = list(csv.reader(f))
    if len(rows) < 2 or len(rows[0]) < 2:
        raise ValueError(f"labels file {csv_path}: expected a header row (image id, then label names) and data rows")
    header, table = [h.strip() for h in rows[0]], {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        values = {}
        for name, cell in zip(header[1:], row[1:]):
            if cell.strip():
                try:
                    values[name] = float(cell)
                except ValueError:
                    raise ValueError(f"labels file {csv_path}, line {line}, column {name!r}: {cell!r} is not a "
                                     "number (labels must be numeric; encode categories as 0/1 columns)") from None
        table[row[0].strip()] = values
    return table


# ---------------------------------------------------------------------------------------------------------- helpers
def _glob_root(pattern: str) -> str:
    """The folder part of a glob before its first wildcard: 'data/a/*/x*.png' -> 'data/a'."""
    cut = min(i for i in (pattern.find(c) for c in _GLOB_CHARS) if i >= 0)
    return posixpath.dirname(pattern[:cut]).rstrip("/")


def _hidden(root: str, path: str) -> bool:
    return any(part.startswith(".") for part in posixpath.relpath(path, root).split("/"))


def _read_list_file(fs: fsspec.AbstractFileSystem, path: str, root: str) -> list[str]:
    files = []
    for line in fs.cat_file(path).decode().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "://" in line:  # a URL on the list file's own filesystem
            line = fs._strip_protocol(line)
        files.append(posixpath.normpath(line if line.startswith("/") else posixpath.join(root, line)))
    return files


def _under(root: str, path: str) -> bool:
    return not root or path.startswith(root.rstrip("/") + "/")


def _image_id(root: str, path: str) -> str:
    return posixpath.relpath(path, root) if _under(root, path) else path.lstrip("/")


def _full(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A path the workers can open: local paths as they are, others with their protocol ('s3://bucket/x')."""
    return path if _is_local(fs) else fs.unstrip_protocol(path)


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _hash_all(fs: fsspec.AbstractFileSystem, files: Sequence[str]) -> list[str | Exception]:
    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        return list(pool.map(lambda p: _hash_one(fs, p), files))


def _hash_one(fs: fsspec.AbstractFileSystem, path: str) -> str | Exception:
    digest = hashlib.sha256()
    try:
        with fs.open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as err:  # missing, permission, broken link, a directory with an image's name, bucket errors
        return err
    return digest.hexdigest()


def _labels_for(table: Mapping[str, Mapping[str, float]], image_id: str) -> tuple[str | None, dict[str, float]]:
    """The label row named by the image_id, else by its file name, else by its stem."""
    name = posixpath.basename(image_id)
    for key in (image_id, name, posixpath.splitext(name)[0]):
        if key in table:
            return key, {k: v for k, v in table[key].items() if not math.isnan(v)}
    return None, {}
