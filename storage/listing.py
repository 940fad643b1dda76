"""List a dataset's image files and name them: the listing rules of the dataset scan (`storage.scan` hashes and
labels the files listed here). Nothing here reads an image, and this module imports neither torch nor zarr, so the
CLI's preflight can ask `has_images` before anything heavy loads.

`list_images(source)` accepts

- a **directory** (local path or fsspec URL such as `s3://bucket/faces/`): every file below it, recursively, whose
  name ends in one of `ganinv.datasets.image_names.IMAGE_SUFFIXES` (case-insensitive); names starting with '.' (and
  everything inside such folders) are ignored (`is_listed`);
- a **list file** (any other existing file, e.g. `images.txt`): one path per line, relative to the list file's
  folder or absolute, on the list file's filesystem; blank lines and lines starting with '#' are ignored;
- a **glob** (`/data/**/*.jpg`, `s3://bucket/2024-*/*.png`): the matches with image suffixes.

Each file's `image_id` is its path relative to the dataset root (the directory, the list file's folder, or the
glob's fixed prefix), with '/' separators: stable as long as the folder layout is, and what the per-image seed is
derived from. A list-file entry outside that folder keeps its full path as its id ('/data/x.png',
's3://bucket/x.png'), so it can never take a relative id's place.
"""

from __future__ import annotations

import collections
import os
import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Any

import fsspec
from fsspec.utils import glob_translate

from ganinv.datasets.image_names import is_image_name
from ganinv.errors import UserError

_GLOB_CHARS = "*?["
BUCKET_FOLDERS = 16  # folders of a bucket `has_images` lists at most (one listing each)


class NoImagesError(UserError, FileNotFoundError):
    """The images to scan are not there: no image files in the folder, list file or glob."""


def list_images(source: str, *, storage_options: Mapping[str, Any] | None = None
                ) -> tuple[fsspec.AbstractFileSystem, str, list[str]]:
    """(filesystem, root, file paths) for a directory, list file or glob; paths as the filesystem names them."""
    fs, root, listing = list_entries(source, storage_options=storage_options)
    return fs, root, sorted(listing)


def list_image_ids(source: str, *, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """The image ids a scan of `source` would give, sorted, from the listing alone (no file is read): what a command
    checks per image before it starts (e.g. that every image has its inpainting mask)."""
    fs, root, listing = list_entries(source, storage_options=storage_options)
    return sorted(image_id_of(root, path, fs) for path in listing)


def has_images(source: str) -> bool:
    """Whether `source` lists an image as `list_images` would, looking no further than that needs: a list file for
    one entry (no listed file is looked up: the scan does that once); a local folder until its first image
    (`is_listed`; symbolic links to folders not followed), a local glob by its matches; on another filesystem (a
    bucket), a folder or a glob's fixed prefix one level at a time, breadth first, until its first image and for at
    most `BUCKET_FOLDERS` listings, past which it is not known to be empty and counts as holding images (the scan
    lists it whole). FileNotFoundError: on another filesystem, a source that is not there, or a glob whose prefix
    is not; its own errors (no credentials, no network, no package for its protocol) as the filesystem raises them."""
    if "://" in source and not source.startswith("file://"):
        return _bucket_has_images(source)
    path = source.removeprefix("file://")
    if os.path.isdir(path):
        for _, folders, files in os.walk(path):
            folders[:] = [name for name in folders if not _hidden(name)]
            if any(is_listed(name) for name in files):
                return True
        return False
    if os.path.isfile(path):
        fs = fsspec.filesystem("file")
        return bool(_read_list_file(fs, path, posixpath.dirname(path)))
    return bool(list_entries(source, storage_options=None)[2])


def _bucket_has_images(source: str) -> bool:
    fs, path = fsspec.core.url_to_fs(source)
    if any(c in source for c in _GLOB_CHARS) and not fs.exists(path):
        pattern = re.compile(glob_translate(path))  # the matches as `fs.glob` (the scan) tells them
        depth = None if "**" in path else path.count("/")  # no match below a pattern's last folder
        return _found_within(fs, _glob_root(path), lambda p: bool(pattern.match(p)) and is_image_name(p),
                             skip=lambda folder: depth is not None and folder.count("/") >= depth)
    if fs.info(path)["type"] == "directory":
        root = path.rstrip("/")
        return _found_within(fs, root, lambda p: is_listed(posixpath.relpath(p, root)),
                             skip=lambda folder: _hidden(posixpath.basename(folder)))
    return bool(_read_list_file(fs, path, posixpath.dirname(path)))


def _found_within(fs: fsspec.AbstractFileSystem, root: str, listed: Callable[[str], bool], *,
                  skip: Callable[[str], bool]) -> bool:
    """Whether a file under `root` is `listed`, listing folders breadth first (but those `skip`ped, by path) for at
    most `BUCKET_FOLDERS` listings; True when folders are left unlisted (not known to be empty). A listing is one
    request per page of a folder's entries (S3: 1000), so a folder of a million files directly is listed whole, as
    the scan lists it."""
    folders = collections.deque([root])
    for _ in range(BUCKET_FOLDERS):
        if not folders:
            return False
        folder = folders.popleft()
        for entry in fs.ls(folder, detail=True):
            name = entry["name"].rstrip("/")
            if entry["type"] == "directory":
                if name != folder.rstrip("/") and not skip(name):
                    folders.append(name)
            elif listed(name):
                return True
    return bool(folders)


def is_listed(relative: str) -> bool:
    """Whether a directory's file at `relative` (its path below the directory, '/'-separated) is listed: an image
    name with no hidden part (a name starting with '.')."""
    return is_image_name(relative) and not any(_hidden(part) for part in relative.split("/"))


def list_entries(source: str, *, storage_options: Mapping[str, Any] | None
                 ) -> tuple[fsspec.AbstractFileSystem, str, dict[str, Mapping[str, Any] | None]]:
    """(filesystem, root, {file path: listing entry}); the entries come from the detailed listing (None for a
    list-file line whose file cannot be looked up: hashing it reports why)."""
    fs, path = fsspec.core.url_to_fs(source, **dict(storage_options or {}))
    fs.invalidate_cache()  # fsspec instances are shared and s3fs caches listings: a stale ETag would reuse a stale hash
    if any(c in source for c in _GLOB_CHARS) and not fs.exists(path):
        found = fs.glob(path, detail=True)
        return fs, _glob_root(path), {p: info for p, info in found.items()
                                      if is_image_name(p) and info.get("type") != "directory"}
    if fs.isdir(path):
        root = path.rstrip("/")
        found = fs.find(root, detail=True)
        return fs, root, {p: info for p, info in found.items() if is_listed(posixpath.relpath(p, root))}
    if fs.isfile(path):
        root = posixpath.dirname(path)
        return fs, root, {p: _info_or_none(fs, p) for p in _read_list_file(fs, path, root)}
    raise NoImagesError(f"{source!r} is neither a folder, a list file nor a glob that matches anything")


def image_id_of(root: str, path: str, fs: fsspec.AbstractFileSystem) -> str:
    """The path relative to the root; a file outside the root keeps its full path ('/abs/x.png', 's3://b/x.png'), so
    it can never take the id of a relative one."""
    if _under(root, path):
        return posixpath.relpath(path, root)
    return full_path(fs, path)


def full_path(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A path the workers can open: local paths as they are, others with their protocol ('s3://bucket/x')."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _info_or_none(fs: fsspec.AbstractFileSystem, path: str) -> Mapping[str, Any] | None:
    try:
        return fs.info(path)
    except OSError:  # missing, permission: the hash reports it as the skip reason
        return None


def _glob_root(pattern: str) -> str:
    """The folder part of a glob before its first wildcard: 'data/a/*/x*.png' -> 'data/a'."""
    cut = min(i for i in (pattern.find(c) for c in _GLOB_CHARS) if i >= 0)
    return posixpath.dirname(pattern[:cut]).rstrip("/")


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
