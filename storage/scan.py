"""Scan a dataset into a manifest: which files, under which ids, with which content hashes and labels.

`scan_images(source)` lists the files of a directory, list file or glob and names each by its `image_id` as
`storage.listing` does (the listing rules live there), then hashes and labels them. Items are sorted by image_id.

Each file's content hash (`source_sha256`) is the store's identity of an input. A first scan reads every file to hash
it; a rescan given the previous scan's `ScanResult.hash_cache` (`previous=`) reads only the files that are new or
changed. Whether a file changed is judged from the listing the scan makes anyway (no extra request per file), by a
*fingerprint*: its size plus its ETag (S3 and other object stores: a hash of the content) or else its modification
time (local files). A file with no fingerprint (a symlink, a filesystem that reports neither) is always hashed, and
so is every file whose fingerprint differs from the cached one. Limit: a local file rewritten with the same size
and an unchanged mtime (a tool that restores mtimes) keeps its old hash; S3 ETags have no such gap.

What the scan cannot use is not dropped silently but returned in `ScanResult.skipped` with a reason: files it cannot
read, special files with an image's name (FIFOs, sockets, devices: never read, so a FIFO cannot block the scan),
and files whose content duplicates an earlier one (the store holds each content once). Decoding is not the
scan's job: workers decode, and record what fails to decode in the store (`ganinv.datasets.folder`).

Labels: an optional CSV read by `storage.labels` (its format is described there); each item takes the row named by
its image_id, file name or file stem.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import fsspec

from ganinv.datasets.image_names import IMAGE_SUFFIXES
from storage.labels import labels_for, read_labels
from storage.listing import NoImagesError, full_path, image_id_of, is_local, list_entries
from storage.scan_cache import HashCache  # full path -> (fingerprint, sha256)
from storage.schema import Manifest

Progress = Callable[[int], Callable[[int], None]]  # number of files -> advance(n): runtime/progress.py's `step`
_HASH_THREADS = 8  # hashing is I/O-bound on buckets; threads hide the round trips
# Listing keys that change when a file's content does, most trusted first: content hashes of object stores (S3 ETag,
# GCS/Azure etag), then modification times (local mtime, S3 LastModified, GCS updated, memory:// created).
_FINGERPRINT_KEYS = ("ETag", "etag", "mtime", "LastModified", "last_modified", "updated", "created")


@dataclass(frozen=True)
class Skipped:
    """A file the scan found but did not put in the manifest (`path`: its image_id), and why (`reason`:
    'unreadable: <error>', 'not a regular file: <what it is>' or 'duplicate of <image_id>')."""

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
    hashed: int = 0                    # files read and hashed by this scan
    reused: int = 0                    # files whose hash came from `previous` (fingerprint unchanged)
    hash_cache: HashCache = field(default_factory=dict, repr=False, compare=False)  # for the next scan's `previous`
    hash_cache_changed: bool = True    # False when `hash_cache` equals the `previous` it was given (nothing to save)

    def summary(self) -> dict[str, Any]:
        """Small and JSON-able: counts and the skipped files."""
        return {"source": self.source, "items": len(self.manifest), "root": self.manifest.root,
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
                "labels": list(self.label_names), "labels_unmatched": self.labels_unmatched,
                "hashed": self.hashed, "reused": self.reused}


def scan_images(source: str, *, labels: str | None = None, storage_options: Mapping[str, Any] | None = None,
                previous: HashCache | None = None, progress: Progress | None = None) -> ScanResult:
    """Lists, hashes and labels the images of `source` (a directory, list file or glob; see the module docstring).
    previous: an earlier scan's `hash_cache`; files whose fingerprint matches their entry are not read again.
    progress: called with the number of files once they are listed, it returns `advance(n)`, which the scan calls as
    files are hashed (those whose hash it reuses count at once)."""
    fs, root, listing = list_entries(source, storage_options=storage_options)
    files = sorted(listing)
    if not files:
        raise NoImagesError(f"no image files in {source!r} (looked for {', '.join(IMAGE_SUFFIXES)}); give a folder "
                                "of images, a list file with one path per line, or a glob such as 'photos/*.jpg'")
    ids = [image_id_of(root, path, fs) for path in files]
    keys = [full_path(fs, path) for path in files]
    prints = [fingerprint(listing[path]) for path in files]
    hashes, cache, reused = _hash_changed(fs, files, keys, prints, previous or {},
                                          advance=progress(len(files)) if progress else None)
    table = read_labels(labels, storage_options=storage_options) if labels else {}
    records, skipped, first_by_hash, used_rows = [], [], {}, set()
    for image_id, digest in sorted(zip(ids, hashes)):
        if isinstance(digest, NotRegularFile):
            skipped.append(Skipped(image_id, f"not a regular file: {digest}"))
        elif isinstance(digest, Exception):
            skipped.append(Skipped(image_id, f"unreadable: {type(digest).__name__}: {digest}"))
        elif digest in first_by_hash:
            skipped.append(Skipped(image_id, f"duplicate of {first_by_hash[digest]}"))
        else:
            first_by_hash[digest] = image_id
            row_key, item_labels = labels_for(table, image_id)
            used_rows.add(row_key)
            records.append(dict(image_id=image_id, path=image_id, source_sha256=digest, labels=item_labels))
    manifest = Manifest.from_records(records, root=full_path(fs, root))
    names = tuple(sorted({n for row in table.values() for n in row}))
    return ScanResult(source=source, manifest=manifest, skipped=tuple(skipped),
                      labels_unmatched=len(set(table) - used_rows), label_names=names,
                      hashed=len(files) - reused, reused=reused, hash_cache=cache,
                      hash_cache_changed=cache != dict(previous or {}))


def fingerprint(info: Mapping[str, Any] | None) -> str | None:
    """What says, from a listing entry, that a file is unchanged: 'size=<n>;<key>=<value>' with the first of
    `_FINGERPRINT_KEYS` present; None (always hash) for symlinks (their target may change in place) and entries with
    no size or none of the keys."""
    if not info or info.get("islink") or info.get("size") is None or info.get("type", "file") != "file":
        return None
    for key in _FINGERPRINT_KEYS:
        value = info.get(key)
        if value not in (None, ""):
            if isinstance(value, _dt.datetime):
                value = value.timestamp()
            return f"size={int(info['size'])};{key}={value!r}"
    return None


# ---------------------------------------------------------------------------------------------------------- helpers
def _hash_changed(fs: fsspec.AbstractFileSystem, files: Sequence[str], keys: Sequence[str],
                  prints: Sequence[str | None], previous: HashCache, *, advance: Callable[[int], None] | None = None
                  ) -> tuple[list[str | Exception], dict[str, tuple[str, str]], int]:
    """(hash or error per file, the cache for the next scan, how many hashes came from `previous`). A cached hash
    is used only when the entry's fingerprint equals the file's current one. `advance(n)`: n more files done."""
    cached = [_cached(previous, key, fp) for key, fp in zip(keys, prints)]
    todo = [i for i, digest in enumerate(cached) if digest is None]
    advance = advance or (lambda n: None)
    advance(len(files) - len(todo))  # the reused hashes

    def hash_one(i: int) -> str | Exception:
        digest = _hash_one(fs, files[i])
        advance(1)
        return digest

    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        fresh = list(pool.map(hash_one, todo))
    hashes: list[str | Exception] = list(cached)
    for i, digest in zip(todo, fresh):
        hashes[i] = digest
    cache = {key: (fp, digest) for key, fp, digest in zip(keys, prints, hashes)
             if fp is not None and isinstance(digest, str)}
    return hashes, cache, len(files) - len(todo)


def _cached(previous: HashCache, key: str, fp: str | None) -> str | None:
    entry = previous.get(key) if fp is not None else None
    return entry[1] if entry is not None and entry[0] == fp else None


def _hash_one(fs: fsspec.AbstractFileSystem, path: str) -> str | Exception:
    digest = hashlib.sha256()
    try:
        with (open_regular_file(path) if is_local(fs) else fs.open(path, "rb")) as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as err:  # missing, permission, broken link, a directory with an image's name, bucket errors
        return err
    return digest.hexdigest()


class NotRegularFile(OSError):
    """A FIFO, socket, device or directory where an image file was expected: never read (a FIFO would block the
    reader forever, a device never ends)."""


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"))


def open_regular_file(path: str) -> BinaryIO:
    """`path` opened for reading if it is a regular file (after following links), else NotRegularFile naming what
    it is. The check is made before opening and again on the open descriptor (opened non-blocking, so that even a
    file swapped for a FIFO in between cannot block)."""
    _check_regular(os.stat(path).st_mode, path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_regular(os.fstat(fd).st_mode, path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(mode: int, path: str) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), f"not a regular file (mode {oct(mode)})")
    raise NotRegularFile(f"{path} is {kind}, not a regular file; it was not read")
