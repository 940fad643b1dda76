"""storage: the Zarr v3 latent store (schema v1), its write protocol and the run lease."""

from storage.latent_store import (DEFAULT_CHUNK_ITEMS, LatentStore, Shard, ShardInputs, ShardResult,
                                  StoreDamagedError, StoreExistsError, StoreMismatchError, StoreNotFoundError,
                                  VerifyReport)
from storage.lease import Lease, LeaseHeldError, LeaseLostError, LeaseRecord
from storage.schema import (SCHEMA_VERSION, GeneratorIdentity, Layout, Manifest, ManifestItem, Status,
                            StoreAttributes, file_sha256)

__all__ = ["DEFAULT_CHUNK_ITEMS", "SCHEMA_VERSION", "GeneratorIdentity", "LatentStore", "Layout", "Lease",
           "LeaseHeldError", "LeaseLostError", "LeaseRecord", "Manifest", "ManifestItem", "Shard", "ShardInputs",
           "ShardResult", "Status", "StoreAttributes", "StoreDamagedError", "StoreExistsError", "StoreMismatchError",
           "StoreNotFoundError", "VerifyReport", "file_sha256"]
