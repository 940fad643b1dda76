"""The generators shipped inside the package, picked by name (`--generator faces64`): name -> file, relative to the
ganinv package (ganinv/assets/...), in the native format. Kept free of torch so that a command can refuse a
misspelt name in a fraction of a second, before it imports torch (ganinv.generators.io reads the same table)."""

from __future__ import annotations

import os

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
