"""File helpers free of torch (storage imports them too)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path, *, block_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes: the identity of an input image (`source_sha256`), of a generator's weights, of
    an encoder or classifier file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(block_size):
            digest.update(block)
    return digest.hexdigest()
