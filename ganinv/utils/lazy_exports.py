"""Names a package gives from its modules, each module imported on first use (PEP 562): `from pkg import name` reads
as usual while importing the package, or a light module of it, imports none of the heavy ones (`storage`: zarr;
`ganinv.metrics`: torch)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]
                 ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`(__all__, __getattr__, __dir__)` for the package named `package`, which gives the names `exports[module]` of
    each of its modules. A name is imported from its module on first use, then kept in the package; any other name
    raises AttributeError, so `from pkg import submodule` still imports the submodule."""
    home = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *home})

    return sorted(home), __getattr__, __dir__
