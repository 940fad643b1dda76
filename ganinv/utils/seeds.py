"""Seeds derived from names, so an item's random stream depends on what it is, not on where or when it runs."""

from __future__ import annotations

import hashlib


def seed_from_id(image_id: str, base: int = 0) -> int:
    """A 63-bit seed from `sha256(f"{base}:{image_id}")` (first 8 bytes, little-endian, top bit cleared).

    Stable across processes, machines and Python versions (unlike `hash()`), so an item inverted in any shard, on any
    worker, in any re-run draws the same random numbers; `base` gives a whole run other streams.
    """
    digest = hashlib.sha256(f"{int(base)}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
