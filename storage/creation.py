"""Creating a store: under the location's lease, in a location that holds nothing (or only the lease), the root and
the empty arrays, then the first append, whose root rewrite is the commit point (docs/store.md, "Creation").

The caller that holds the lease (the flow: `LatentStore.take_lease(url, run_id)` before opening) creates under it;
any other caller gets a lease for the creation alone. So two runs that create one store at once cannot interleave:
the second is refused by the lease, or finds the first one's committed store.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import fsspec

from ganinv import __version__ as ganinv_version
from storage import arrays, growth, identity
from storage._zarr import zarr
from storage.errors import StoreDamagedError, StoreExistsError, not_empty_message
from storage.lease import LeaseFiles, acquire
from storage.schema import (Chunking, DatasetInfo, GeneratorIdentity, Layout, Manifest, StoreAttributes, check_name,
                            to_jsonable)

if TYPE_CHECKING:
    from storage.latent_store import LatentStore

CREATION_LEASE_TTL_S = 600.0  # a lease taken just to create a store (a caller without its own): bounds a crash's block


def create(store_class: type[LatentStore], url: str, *, manifest: Manifest, num_ws: int, w_dim: int,
           generator: GeneratorIdentity | Mapping, config: Any, chunk_items: int, num_items: int | None,
           z_dim: int | None, thumbnail_size: int | None, metrics: Sequence[str], compressor: str,
           run_id: str | None, storage_options: Mapping[str, Any] | None) -> LatentStore:
    """`LatentStore.create` (its docstring says what the arguments are)."""
    identity.check_create_args(manifest, num_ws=num_ws, w_dim=w_dim, chunk_items=chunk_items, num_items=num_items,
                               z_dim=z_dim, thumbnail_size=thumbnail_size, compressor=compressor)
    generator = identity.as_generator(generator)
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    with _creation_lease(LeaseFiles(fs, root, store_name=url), run_id) as creator:
        check_vacant(fs, root, url, exists=f"a store already exists at {url}: open it with LatentStore.open(url, "
                     "'r+') (or open_or_create), or choose a new URL")
        layout = Layout(num_ws=num_ws, w_dim=w_dim, z_dim=z_dim, thumbnail_size=thumbnail_size,
                        metrics=tuple(check_name(m, what="metric") for m in metrics), labels=())
        attrs = StoreAttributes(created=growth.now_iso(), ganinv_version=ganinv_version, generator=generator,
                                inversion=to_jsonable(config), layout=layout,
                                dataset=DatasetInfo(root=manifest.root, manifest_hash="", num_items=0),
                                chunking=Chunking(chunk_items=chunk_items, ws_compressor=compressor))
        zstore = store_class.zarr_store(url, read_only=False, storage_options=storage_options)
        arrays.create_arrays(zarr.create_group(zstore, attributes=attrs.to_json(), zarr_format=3), attrs,
                             compressor=compressor)
        store = store_class(url, mode="r+", run_id=creator, storage_options=storage_options)
        store.append(manifest)  # the commit point: the root's item count, written last
    store.run_id = run_id
    return store


def check_vacant(fs: fsspec.AbstractFileSystem, root: str, url: str, *, exists: str) -> None:
    """Refuses a location that holds a store (StoreExistsError saying `exists`) or anything but a lease
    (StoreDamagedError: a store whose root was lost is never adopted)."""
    if fs.exists(f"{root.rstrip('/')}/zarr.json"):
        raise StoreExistsError(exists)
    if holds_files(fs, root):
        raise StoreDamagedError(not_empty_message(url))


def holds_files(fs: fsspec.AbstractFileSystem, root: str) -> bool:
    """Whether the location exists and holds anything but a lease (a folder, or objects under a bucket prefix)."""
    fs.invalidate_cache(root)
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)] if fs.isdir(root) else []
    except FileNotFoundError:
        return False
    return any(name != arrays.LEASE for name in names)


@contextlib.contextmanager
def _creation_lease(files: LeaseFiles, run_id: str | None) -> Iterator[str]:
    """Yields the run id a creation runs under: `run_id` if that run holds the location's lease, else a lease taken
    for the creation (with `run_id`, or a one-off id) and released after it."""
    held = files.latest()
    if run_id is not None and held is not None and held.run_id == run_id and not held.expired():
        yield run_id
        return
    creator = run_id or f"create-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    lease = acquire(files, creator, ttl_s=CREATION_LEASE_TTL_S)
    try:
        yield creator
    finally:
        lease.release()
