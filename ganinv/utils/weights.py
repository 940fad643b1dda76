"""Weights files of ganinv's models: safetensors files tagged with a `format` in their metadata, and built-in ones
shipped inside the package (`ganinv/assets/...`) that a user picks by name.

The generator, encoder and attribute-classifier loaders each describe their files once (`WeightsKind`) and share the
path, metadata and tensor reading here, so they fail alike: `MissingWeights` (a FileNotFoundError that says where the
file belongs and how to get one; nothing is ever downloaded) or `BadWeightsFile` (a ValueError: unreadable, truncated
or another kind of file). Messages are one line and name the file.

`write_weights` is the one writer: atomic (written beside the target and renamed) and byte-for-byte reproducible, so
equal tensors and metadata give an equal sha256 (safetensors itself writes the metadata map in a per-process order).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from ganinv.errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parents[1]


class MissingWeights(UserError, FileNotFoundError):
    """No weights file where the source points: a built-in absent from this checkout, or no such file."""


class BadWeightsFile(UserError, ValueError):
    """The file is there but is not a readable weights file of the expected kind."""


@dataclass(frozen=True)
class WeightsKind:
    """One loader's files: how they are tagged, which are built in, and what to tell a user who lacks one."""

    name: str  # in messages: 'generator', 'encoder', 'attribute classifier'
    format: str  # the metadata's `format` tag
    builtins: Mapping[str, str | os.PathLike]  # name -> file, relative to the ganinv package (or absolute)
    obtain: str  # how to get a file, e.g. "train one with `ganinv train-encoder`"
    write: str  # what writes this kind of file, e.g. "ganinv.models.encoder.save_encoder"

    def builtin_path(self, name: str) -> Path:
        return PACKAGE_DIR / self.builtins[name]


def resolve_weights(source: str | os.PathLike, kind: WeightsKind) -> Path:
    """A built-in name (a `str` key of `kind.builtins`) or a path -> the existing file to read."""
    if isinstance(source, str) and source in kind.builtins:
        path = kind.builtin_path(source)
        if not path.is_file():
            raise MissingWeights(f"built-in {kind.name} {source!r} is not present in this checkout: expected its "
                                 f"weights at {path}; put the .safetensors file there, or {kind.obtain}")
        return path
    path = Path(source).expanduser()
    if not path.exists():
        raise MissingWeights(f"no {kind.name} at {str(source)!r}: it is neither an existing file nor a built-in name "
                             f"(built-ins: {', '.join(sorted(kind.builtins))}); {kind.obtain}")
    if not path.is_file():
        raise MissingWeights(f"{path} is a directory; pass the {kind.name} file itself")
    return path


def read_metadata(path: str | os.PathLike, kind: WeightsKind) -> dict[str, str]:
    """The safetensors metadata of a `kind` file (the tensors are not read)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise BadWeightsFile(f"{path} is not a readable safetensors file ({e}); fetch it again, or write it anew "
                             f"with {kind.write}") from e
    if metadata.get("format") != kind.format:
        raise BadWeightsFile(f"{path} is a safetensors file without ganinv {kind.name} metadata (format "
                             f"{metadata.get('format')!r}, expected {kind.format!r}); write it with {kind.write}")
    return metadata


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU, as stored."""
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise BadWeightsFile(f"{path} is truncated or corrupt ({e}); fetch it again") from e


def load_weights(source: str | os.PathLike, kind: WeightsKind) -> tuple[Path, dict[str, str], dict[str, torch.Tensor]]:
    """(path, metadata, tensors) of a `kind` file given by built-in name or path."""
    path = resolve_weights(source, kind)
    metadata = read_metadata(path, kind)
    return path, metadata, read_tensors(path)


def canonical_safetensors(blob: bytes) -> bytes:
    """`blob` (a safetensors file) with its JSON header re-serialised with sorted keys: same tensors, same offsets,
    bytes that no longer depend on the writer's hash-map order. The header stays space-padded to 8 bytes."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob[8 + n:]


def write_weights(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                  metadata: Mapping[str, str] | None = None) -> Path:
    """Write `tensors` (moved to the CPU, made contiguous) and string `metadata` to the safetensors file `path`:
    written beside it and renamed, so readers never see half a file; equal inputs give equal bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, metadata=dict(metadata or {}))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(canonical_safetensors(blob))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
