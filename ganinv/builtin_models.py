"""The generators shipped inside the package, picked by name (`--generator faces64`): name -> file, relative to the
ganinv package (ganinv/assets/...), in the native format. Kept free of torch so that a command can refuse a
misspelt name in a fraction of a second, before it imports torch (ganinv.generators.io reads the same table)."""

from __future__ import annotations

import os
from typing import Any, Mapping

BUILTIN_GENERATORS: dict[str, str] = {
    "faces64": "assets/faces64/generator.safetensors",
}


def unknown_generator(source: str) -> str | None:
    """Why local `source` names no generator (neither an existing path nor a built-in name), or None. Only a quick
    first check: the loader reads and verifies the file itself."""
    if "://" in source or source in BUILTIN_GENERATORS or os.path.exists(os.path.expanduser(source)):
        return None
    return (f"no generator at {source!r}: it is neither an existing file nor a built-in name (built-ins: "
            f"{', '.join(sorted(BUILTIN_GENERATORS))}); pass a .pkl or .safetensors file (`ganinv convert-pkl` "
            "converts a network pickle)")


# The procedural-faces world (`procedural_faces.WORLDS`) a model learnt: a key of a generator file's metadata and of an
# attribute classifier's metrics. The first faces64 files predate the record; they learnt world 1.
WORLD_VERSION_KEY = "world_version"
UNRECORDED_WORLD_VERSION = 1


def recorded_world_version(metadata: Mapping[str, Any]) -> int:
    """The world version a generator's metadata or a classifier's metrics record (`UNRECORDED_WORLD_VERSION` when
    they record none)."""
    return int(metadata.get(WORLD_VERSION_KEY, UNRECORDED_WORLD_VERSION))


def builtin_world_version(name: str = "faces64") -> int:
    """The world the built-in generator `name` learnt, from its file's metadata (not from `SHIPPED_VERSION`, which
    must agree: tests/test_shipped_models.py checks it)."""
    from ganinv.generators.io import read_generator_metadata, resolve_generator_source  # torch: only when asked

    return recorded_world_version(read_generator_metadata(resolve_generator_source(name)))
