"""storage: the Zarr v3 latent store (its schema: storage/schema.py), its write protocol, the run lease and the
dataset scan (docs/store.md)."""

from storage.errors import (NotInStoreError, StoreDamagedError, StoreExistsError, StoreMismatchError,
                            StoreNotFoundError)
from storage.dataset import open_dataset
from storage.latent_store import DEFAULT_CHUNK_ITEMS, LatentStore
from storage.lease import Lease, LeaseHeldError, LeaseLostError, LeaseRecord
from storage.schema import (SCHEMA_VERSION, GeneratorIdentity, Layout, Manifest, ManifestItem, Status,
                            StoreAttributes, file_sha256)
from storage.shards import Shard, ShardInputs, ShardResult
from storage.verify import VerifyReport

from storage import io_thread  # noqa: F401,E402 - zarr's I/O thread stopped at exit before zarr closes its loop

__all__ = ["DEFAULT_CHUNK_ITEMS", "SCHEMA_VERSION", "GeneratorIdentity", "LatentStore", "Layout", "Lease",
           "LeaseHeldError", "LeaseLostError", "LeaseRecord", "Manifest", "ManifestItem", "NotInStoreError", "Shard",
           "ShardInputs", "ShardResult", "Status", "StoreAttributes", "StoreDamagedError", "StoreExistsError",
           "StoreMismatchError", "StoreNotFoundError", "VerifyReport", "file_sha256", "open_dataset"]
