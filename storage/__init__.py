"""storage: the Zarr v3 latent store (its schema: storage/schema.py), its write protocol, the run lease and the
dataset scan (docs/store.md).

The names below are loaded on first use (PEP 562), so that importing one light module of the package
(`storage.listing`, `storage.errors`: the CLI's preflight, before anything heavy) loads neither zarr nor numpy;
`from storage import LatentStore` reads as before."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ganinv.utils.lazy_exports import lazy_exports

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
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

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

