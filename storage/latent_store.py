"""`LatentStore`: a self-describing Zarr v3 corpus of latent codes that many workers write at once and runs resume.

A thin facade: opening and identity checks are here; the shard protocol (storage/shards.py), growth
(storage/growth.py), verification and root repair (storage/verify.py), result groups (storage/results.py), typed
item reads (storage/readers.py), the scan cache (storage/scan_cache.py) and the lease (storage/lease.py) each live in
their own module. The layout, the write protocol and why it is safe are in docs/store.md. A typical run::

    with LatentStore.take_lease(url, run_id, ttl_s=RENEWED_LEASE_TTL_S):  # refuses if another run holds it
        store = LatentStore.open_or_create(url, manifest=m, num_ws=18, w_dim=512, generator=g, config=cfg,
                                           run_id=run_id)
        store.append(m)                              # no-op when nothing is new
        for shard in store.pending_shards():         # on workers: LatentStore.open(url, "r+")
            inputs = store.read_shard_inputs(shard)
            if len(inputs):                          # a rerun of a finished task finds nothing to do
                store.write_shard(inputs, invert(inputs.paths))
        assert store.verify().ok
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
import numpy as np

from storage import creation, dataset, growth, identity, migrate, results, scan_cache, shards, verify
from storage._zarr import zarr
from storage.errors import (ArrayMissingError, RootMissingError, StoreDamagedError, StoreExistsError,
                            StoreMismatchError, StoreNotFoundError, damaged_advice, root_missing_message)
from storage.lease import DEFAULT_LEASE_TTL_S, Lease, LeaseFiles, LeaseHeldError, LeaseRecord, acquire
from storage.readers import ItemReaders
from storage.schema import DEFAULT_METRICS, GeneratorIdentity, Layout, Manifest, StoreAttributes, to_jsonable
from storage.shards import Shard, ShardInputs, ShardResult
from storage.verify import VerifyReport

DEFAULT_CHUNK_ITEMS = 256


class LatentStore(ItemReaders):
    """A latent store opened at `url`. Build one with `create`, `open` or `open_or_create`; read items with the typed
    readers (`status()`, `ws(rows)`, `metrics()`, ...); docs/store.md describes the layout and the write protocol."""

    def __init__(self, url: str, *, mode: str, run_id: str | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        if mode not in ("r", "r+"):
            raise ValueError(f"mode={mode!r}: open a latent store with mode 'r' (read) or 'r+' (write)")
        self.url, self.mode, self.run_id = str(url), mode, run_id
        self._storage_options = dict(storage_options or {})
        self._zstore = self.zarr_store(self.url, read_only=mode == "r", storage_options=storage_options)
        self._fs, self._root_path = fsspec.core.url_to_fs(self.url, **self._storage_options)
        self._lease_files = LeaseFiles(self._fs, self._root_path, store_name=self.url)
        self._lease: Lease | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self.group = self._open_group()
        self.attributes = self._read_attributes()

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, url: str, *, manifest: Manifest, num_ws: int, w_dim: int, generator: GeneratorIdentity | Mapping,
               config: Any, chunk_items: int = DEFAULT_CHUNK_ITEMS, num_items: int | None = None,
               z_dim: int | None = None, thumbnail_size: int | None = None,
               metrics: Sequence[str] = DEFAULT_METRICS, compressor: str = "zstd", run_id: str | None = None,
               storage_options: Mapping[str, Any] | None = None) -> LatentStore:
        """Creates a store for `manifest` (all items pending) and returns it opened 'r+'.

        generator: GeneratorIdentity (or its dict); config: the inversion config (frozen dataclass or mapping),
        saved verbatim; num_items: optional check, must equal len(manifest); chunk_items: items per chunk = shard =
        task; compressor: a name in storage.arrays.WS_COMPRESSORS. Raises StoreExistsError if a store is already
        there, StoreDamagedError if the location holds anything else (a store whose root was lost is never adopted).
        Creation and the first append happen under the location's lease: the lease of run `run_id` if the caller
        holds it (`LatentStore.take_lease`), else one taken for the creation and released after it; a concurrent
        creator gets LeaseHeldError or StoreExistsError and changes nothing.
        """
        return creation.create(cls, str(url), manifest=manifest, num_ws=num_ws, w_dim=w_dim, generator=generator,
                               config=config, chunk_items=chunk_items, num_items=num_items, z_dim=z_dim,
                               thumbnail_size=thumbnail_size, metrics=metrics, compressor=compressor, run_id=run_id,
                               storage_options=storage_options)

    @classmethod
    def open(cls, url: str, mode: str = "r", *, generator: GeneratorIdentity | Mapping | None = None,
             config: Any = None, run_id: str | None = None,
             storage_options: Mapping[str, Any] | None = None) -> LatentStore:
        """Opens an existing store. With mode 'r+' and `generator` / `config` given, refuses (StoreMismatchError) a
        store made with another generator identity or inversion config. A store of another schema version is refused
        in any mode. `run_id`: write_shard then refuses to write while another run holds the lease (fencing)."""
        store = cls(str(url), mode=mode, run_id=run_id, storage_options=storage_options)
        if mode == "r+":
            identity.check_identity(store, generator=generator, config=config)
        return store

    @classmethod
    def open_or_create(cls, url: str, *, manifest: Manifest, num_ws: int, w_dim: int,
                       generator: GeneratorIdentity | Mapping, config: Any, **create_kwargs: Any) -> LatentStore:
        """Opens the store at url for writing (checking generator, config and layout) or creates it from manifest.
        Opening does not append: call `append(manifest)` under the lease. Take the lease first
        (`LatentStore.take_lease(url, run_id)`) and pass `run_id=`: then no other run can create, append to or
        change the store between this call and the append."""
        options = create_kwargs.get("storage_options")
        try:
            store = cls.open(url, "r+", generator=generator, config=config, run_id=create_kwargs.get("run_id"),
                             storage_options=options)
        except (StoreNotFoundError, RootMissingError) as missing:
            try:  # no store, one another run is creating, or a lost root: create() tells them apart under the lease
                return cls.create(url, manifest=manifest, num_ws=num_ws, w_dim=w_dim, generator=generator,
                                  config=config, **create_kwargs)
            except StoreExistsError:  # a concurrent creator committed first: open its store (checked as above)
                store = cls.open(url, "r+", generator=generator, config=config, run_id=create_kwargs.get("run_id"),
                                 storage_options=options)
            except StoreDamagedError as damaged:  # a lost root: the RootMissingError's message has the repair
                raise (missing if isinstance(missing, RootMissingError) else damaged) from None
        identity.check_layout(store, num_ws=num_ws, w_dim=w_dim, **create_kwargs)
        return store

    @classmethod
    def rebuild_root(cls, url: str, *, storage_options: Mapping[str, Any] | None = None) -> LatentStore:
        """Writes a lost, unreadable or stale root again from the store's copy (storage/verify.py)."""
        return verify.rebuild_root(cls, url, storage_options=storage_options)

    @classmethod
    def migrate(cls, url: str, new_url: str, *, storage_options: Mapping[str, Any] | None = None) -> LatentStore:
        """Copies the store at `url` into `new_url` in the current layout (checksums, fixed-width text; storage/
        migrate.py); the source is left as it is. Returns the copy."""
        return migrate.migrate(cls, str(url), str(new_url), storage_options=storage_options)

    @staticmethod
    def zarr_store(url: str, *, read_only: bool, storage_options: Mapping[str, Any] | None) -> zarr.abc.store.Store:
        """LocalStore for paths (atomic chunk replacement), FsspecStore for fsspec URLs (memory://, s3://, gs://...)."""
        if "://" in url and not url.startswith("file://"):
            return zarr.storage.FsspecStore.from_url(url, storage_options=dict(storage_options or {}),
                                                     read_only=read_only)
        return zarr.storage.LocalStore(url.removeprefix("file://"), read_only=read_only)

    def _open_group(self) -> zarr.Group:
        try:
            return zarr.open_group(self._zstore, mode="r" if self.mode == "r" else "r+", zarr_format=3,
                                   use_consolidated=False)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError) as err:
            if creation.holds_files(self._fs, self._root_path):
                raise RootMissingError(root_missing_message(self.url, "is missing")) from err
            raise StoreNotFoundError(f"no latent store at {self.url} (no Zarr v3 group there): check the URL, or "
                                     "create one: `ganinv invert IMAGES --store URL` (LatentStore.create in Python)"
                                     ) from err
        except ValueError as err:  # json.JSONDecodeError, or metadata zarr cannot parse
            raise StoreDamagedError(root_missing_message(self.url, f"is unreadable ({err})")) from err

    def _read_attributes(self) -> StoreAttributes:
        try:
            return StoreAttributes.from_json(dict(self.group.attrs))
        except ValueError as err:
            raise StoreMismatchError(f"{self.url}: {err}") from err
        except (KeyError, TypeError) as err:
            raise StoreMismatchError(f"{self.url}: root attributes are incomplete ({err!r}); not a readable ganinv "
                                     "store") from err

    # ------------------------------------------------------------------ description
    @property
    def layout(self) -> Layout:
        return self.attributes.layout

    @property
    def num_items(self) -> int:
        return self.attributes.dataset.num_items

    def __len__(self) -> int:
        return self.num_items

    @property
    def chunk_items(self) -> int:
        return self.attributes.chunking.chunk_items

    @property
    def storage_options(self) -> dict[str, Any]:
        """The fsspec options this store was opened with (a copy), for reading its inputs and side files alike."""
        return dict(self._storage_options)

    def __repr__(self) -> str:
        return f"LatentStore({self.url!r}, mode={self.mode!r}, num_items={self.num_items})"

    def refresh(self) -> None:
        """Re-reads root attributes and array metadata. A LatentStore reads them when opened: reopen or refresh a
        long-lived instance after another process appended (workers that open the store per task need not)."""
        self._arrays.clear()
        self.group = self._open_group()
        self.attributes = self._read_attributes()

    def array(self, name: str) -> zarr.Array:
        """The Zarr array at `name` (a path of storage/arrays.py), opened once and cached. Low level: storage/
        modules use it; everything else reads through the typed readers."""
        if name not in self._arrays:
            try:
                self._arrays[name] = self.group[name]
            except KeyError:
                raise ArrayMissingError(f"{self.url}: the array `{name}` is missing "
                                        f"({self.url.rstrip('/')}/{name}/zarr.json): {damaged_advice(self.url)}"
                                        ) from None
            except (ValueError, TypeError) as err:  # JSON or text that is not metadata zarr can read
                raise StoreDamagedError(f"{self.url}: the metadata of `{name}` "
                                        f"({self.url.rstrip('/')}/{name}/zarr.json) is unreadable "
                                        f"({type(err).__name__}: {err}): {damaged_advice(self.url)}") from err
        return self._arrays[name]

    # ------------------------------------------------------------------ shards (storage/shards.py)
    def shards(self) -> list[Shard]:
        """All shards, in order."""
        return shards.all_shards(self.num_items, self.chunk_items)

    def shard(self, index: int) -> Shard:
        return shards.shard_at(index, self.num_items, self.chunk_items)

    def todo_mask(self, *, retry_failed: bool = False, max_attempts: int | None = None) -> np.ndarray:
        """`[num_items]` bool: the items still to do (pending, or failed if retry_failed and attempts remain)."""
        attempts = self.attempts() if retry_failed and max_attempts is not None else None
        return shards.todo(self.status(), attempts, retry_failed=retry_failed, max_attempts=max_attempts)

    def pending_shards(self, *, retry_failed: bool = False, max_attempts: int | None = None,
                       todo: np.ndarray | None = None) -> list[Shard]:
        """Shards with at least one item to do (see `todo_mask`; pass `todo` when you already have it)."""
        todo = self.todo_mask(retry_failed=retry_failed, max_attempts=max_attempts) if todo is None else todo
        return [s for s in self.shards() if todo[s.start:s.stop].any()]

    def read_shard_inputs(self, shard: Shard, *, retry_failed: bool = False, max_attempts: int | None = None,
                          every_item: bool = False) -> ShardInputs:
        """The items of `shard` still to do (same rule as pending_shards), or all of them with `every_item`."""
        return shards.read_inputs(self, shard, retry_failed=retry_failed, max_attempts=max_attempts,
                                  every_item=every_item)

    def write_shard(self, inputs: ShardInputs | Shard, result: ShardResult) -> None:
        """Writes `result` for the items of `inputs`: data, then attempts, then status. A bare Shard writes every item
        of it. Only the process that owns the shard may call this; it never changes metadata."""
        self._require_writable()
        if isinstance(inputs, Shard):
            inputs = self.read_shard_inputs(inputs, every_item=True)
        self._check_fence()
        shards.write(self, inputs, result)

    def __reduce__(self) -> tuple:
        """Pickles as its URL and options (e.g. when Dask ships it): the copy reopens the store."""
        return (_reopen, (self.url, self.mode, self.run_id, self._storage_options))

    def _require_writable(self) -> None:
        if self.mode != "r+":
            raise PermissionError(f"{self.url} is open read-only: open it with LatentStore.open(url, 'r+')")

    # ------------------------------------------------------------------ coordinator (under the lease)
    def append(self, manifest: Manifest) -> int:
        """Adds the manifest's new content as pending items and returns how many (storage/growth.py)."""
        self._require_writable()
        self._coordinator_check()
        self.refresh()  # under the lease the root is current; a handle opened earlier may hold a stale item count
        added = growth.append(self, manifest)
        self.consolidate()
        return added

    def verify(self, *, repair: bool = False, shards: Sequence[int] | None = None) -> VerifyReport:
        """Reads every chunk (checking its checksum) and finds corrupt chunks, done items whose data is missing, not
        finite or corrupt, and arrays of the wrong length; repair=True requeues exactly the affected items and
        rebuilds a corrupt `status` chunk from the data (storage/verify.py). `shards`: only those shard indices."""
        if repair:
            self._require_writable()
            self._coordinator_check()
        return verify.verify(self, repair=repair, shard_indices=shards)

    def record_numerics(self, numerics: Mapping[str, Any]) -> None:
        """Records how the store's codes are computed (runtime/numerics.py decides; storage keeps it verbatim) in the
        root attributes. Coordinator only, under the lease; a store records them once."""
        self._require_writable()
        self._coordinator_check()
        self.refresh()
        if self.attributes.numerics is not None:
            raise StoreMismatchError(f"{self.url} already records its numerics ({dict(self.attributes.numerics)})")
        growth.put_root(self, dataclasses.replace(self.attributes, numerics=to_jsonable(numerics)))
        self.consolidate()

    def repair_status(self) -> VerifyReport | None:
        """Rebuilds every `status` chunk that fails its checksum from the data arrays' checksums (storage/verify.py);
        None when all are fine (a cheap check: one byte per item). Coordinator only, under the lease."""
        broken = verify.corrupt_status_shards(self)
        return self.verify(repair=True, shards=broken) if broken else None

    def result_group(self, kind: str, name: str, *, made_by: Any, overwrite: bool = False) -> zarr.Group:
        """Creates `<kind>/<name>` ('directions' or 'edits') saying how it was made (storage/results.py)."""
        self._require_writable()
        results.check_kind(kind)
        self._coordinator_check()
        return results.create(self, kind, name, made_by=made_by, overwrite=overwrite)

    def result_groups(self, kind: str) -> dict[str, dict[str, Any]]:
        """Name -> attributes of the result groups under `kind`."""
        return results.listing(self, kind)

    def result_attrs(self, kind: str, name: str) -> dict[str, Any]:
        """The attributes of the result group `<kind>/<name>`; KeyError if absent."""
        return dict(results.group(self, kind, name).attrs)

    def update_result_attrs(self, kind: str, name: str, **values: Any) -> dict[str, Any]:
        """Adds or replaces attributes of `<kind>/<name>` (e.g. an edit run's `evaluation`); returns all of them."""
        self._require_writable()
        self._coordinator_check()
        group = results.group(self, kind, name)
        group.attrs.update(values)
        return dict(group.attrs)

    def consolidate(self) -> None:
        """Rewrites consolidated metadata so `xarray.open_zarr(url)` opens without listing (coordinator only)."""
        fs = getattr(self._zstore, "fs", None)
        if fs is not None:  # an object store's cached listing may still show lease generations deleted since
            fs.invalidate_cache()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            zarr.consolidate_metadata(self._zstore, zarr_format=3)

    def write_scan_cache(self, entries: scan_cache.HashCache) -> int:
        """Replaces the scan's hash cache (path -> (fingerprint, sha256)) and re-consolidates; returns its bytes."""
        self._require_writable()
        self._coordinator_check()
        size = scan_cache.write_scan_cache(self.group, entries)
        self.consolidate()
        return size

    @classmethod
    def read_scan_cache(cls, url: str, *, storage_options: Mapping[str, Any] | None = None
                        ) -> tuple[dict[str, tuple[str, str]], str]:
        """(entries, note): the hash cache kept in the store at `url`, or no entries and why. Never raises."""
        try:
            zstore = cls.zarr_store(url, read_only=True, storage_options=storage_options)
        except Exception as err:  # noqa: BLE001 - no cache is never an error
            return {}, f"scan cache unreadable ({type(err).__name__}: {err}); hashing every file"
        return scan_cache.read_scan_cache(zstore)

    # ------------------------------------------------------------------ xarray (storage/dataset.py)
    def to_xarray(self, *, chunks: Any = None) -> "xarray.Dataset":  # noqa: F821
        """The store as a dask-backed xarray Dataset: ws, z, thumbnails, status, error, attempts, path, source_sha256,
        metric_<name>, label_<attr> (item); image_id an indexed coordinate (`ds.sel(image_id="img001")`); text as
        Python strings. `storage.open_dataset(url)` gives the same indexed by image_id."""
        return dataset.to_xarray(self, chunks=chunks)

    def open_xarray_group(self, group: str | None = None, *, chunks: Any = None) -> "xarray.Dataset":  # noqa: F821
        """One group of the store (None: the root's arrays) as xarray.open_zarr gives it, dask-backed."""
        return dataset.open_group(self._zstore, group, chunks=chunks)

    # ------------------------------------------------------------------ lease (storage/lease.py)
    @classmethod
    def take_lease(cls, url: str, run_id: str, *, ttl_s: float = DEFAULT_LEASE_TTL_S, force: bool = False,
                   storage_options: Mapping[str, Any] | None = None) -> Lease:
        """The run lease of the location `url`, which need not hold a store yet: take it before opening or
        creating the store, and pass the same `run_id` to `open`/`open_or_create`, so that creation, the first
        append and every later change of the store happen under it. Raises LeaseHeldError naming the holder."""
        fs, root = fsspec.core.url_to_fs(str(url), **dict(storage_options or {}))
        if fs.isfile(root):
            raise StoreMismatchError(f"{url} is a file, not a latent store (a folder or bucket prefix): choose "
                                     "another --store")
        return acquire(LeaseFiles(fs, root, store_name=str(url)), run_id, ttl_s=ttl_s, force=force)

    def acquire_lease(self, run_id: str, *, ttl_s: float = DEFAULT_LEASE_TTL_S, force: bool = False) -> Lease:
        """Takes the run lease or raises LeaseHeldError naming the holder. Use as a context manager to renew it in
        the background and release it at the end."""
        self._require_writable()
        self._lease = acquire(self._lease_files, run_id, ttl_s=ttl_s, force=force)
        return self._lease

    def lease_holder(self) -> LeaseRecord | None:
        """The unexpired lease on this store, or None."""
        latest = self._lease_files.latest()
        return None if latest is None or latest.expired() or latest.holder_gone() else latest

    def break_lease(self) -> LeaseRecord | None:
        """Ends whatever lease is held (its holder gets LeaseLostError on renew) and returns it. Only for dead runs."""
        self._require_writable()
        held = self.lease_holder()
        acquire(self._lease_files, f"break-lease-{growth.now_iso()}", ttl_s=1.0, force=True).release()
        return held

    def _coordinator_check(self) -> None:
        """Coordinator operations refuse while another run holds the lease (this store's own lease, or the one its
        `run_id` holds, lets them through)."""
        held = self.lease_holder()
        if held is None:
            return
        if self._lease is not None and held.generation == self._lease.record.generation:
            return
        if self.run_id is not None and held.run_id == self.run_id and not held.unreadable:
            return
        raise LeaseHeldError(self._lease_files.held_message(held))

    def _check_fence(self) -> None:
        held = None if self.run_id is None else self.lease_holder()  # only a writer of a run is fenced
        if held is not None and held.run_id != self.run_id:
            raise LeaseHeldError(f"worker of run {self.run_id!r} stops: " + self._lease_files.held_message(held))


# ---------------------------------------------------------------------- helpers
def _reopen(url: str, mode: str, run_id: str | None, storage_options: Mapping[str, Any]) -> LatentStore:
    return LatentStore(url, mode=mode, run_id=run_id, storage_options=storage_options)
