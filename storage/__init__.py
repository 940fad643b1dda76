"""storage: the Zarr v3 latent store (its schema: storage/schema.py), its write protocol, the run lease and the
dataset scan (docs/store.md).

The names below are loaded on first use (PEP 562), so that importing one light module of the package
(`storage.listing`, `storage.errors`: the CLI's preflight, before anything heavy) loads neither zarr nor numpy;
`from storage import LatentStore` reads as before."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# module of this package -> the names it gives the package
_EXPORTS = {
    "errors": ("NotInStoreError", "StoreDamagedError", "StoreExistsError", "StoreMismatchError",
               "StoreNotFoundError"),
    "dataset": ("open_dataset",),
    "latent_store": ("DEFAULT_CHUNK_ITEMS", "LatentStore"),
    "lease": ("Lease", "LeaseHeldError", "LeaseLostError", "LeaseRecord"),
    "schema": ("SCHEMA_VERSION", "GeneratorIdentity", "Layout", "Manifest", "ManifestItem", "Status",
               "StoreAttributes", "file_sha256"),
    "shards": ("Shard", "ShardInputs", "ShardResult"),
    "verify": ("VerifyReport",),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_HOME)

if TYPE_CHECKING:  # for type checkers and editors; at run time `__getattr__` loads them
    from storage.dataset import open_dataset
    from storage.errors import (NotInStoreError, StoreDamagedError, StoreExistsError, StoreMismatchError,
                                StoreNotFoundError)
    from storage.latent_store import DEFAULT_CHUNK_ITEMS, LatentStore
    from storage.lease import Lease, LeaseHeldError, LeaseLostError, LeaseRecord
    from storage.schema import (SCHEMA_VERSION, GeneratorIdentity, Layout, Manifest, ManifestItem, Status,
                                StoreAttributes, file_sha256)
    from storage.shards import Shard, ShardInputs, ShardResult
    from storage.verify import VerifyReport


def __getattr__(name: str) -> Any:
    """A re-exported name, imported from its module on first use (then kept here). Any other name raises
    AttributeError, so `from storage import arrays` still imports the submodule."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
