"""A lease with expiry that lets one run at a time coordinate a store; a second run is refused while it is held.

Semantics (what the flows rely on):
- A *run* (one coordinating process: the flow that appends, plans and dispatches shards) acquires the lease before it
  changes the store and renews it while it runs. Its workers never touch the lease: they only write their own shards.
- While an unexpired lease is held by another run, `acquire` raises `LeaseHeldError` saying who holds it (run id,
  user@host, pid) and until when, and how to break it. A lease held by a dead run simply expires after `ttl_s`;
  `force=True` (CLI `--force`, or `ganinv store-break-lease`) takes it over at once.
- Acquiring again with the same run id while the lease is held is allowed (a restarted coordinator of the same run).
- A holder learns it lost the lease (expired and taken over, or broken) on its next `renew` or `check`:
  `LeaseLostError`.

How it is stored: records live in `<store>/lease/<generation>/zarr.json`, each a Zarr group whose attributes are the
record, written with plain fsspec (never through the root attributes, which only the coordinator rewrites). Taking the
lease means creating generation g+1 with an exclusive create (`open(path, 'xb')`: O_EXCL locally, `If-None-Match: *`
on S3, both measured to refuse the second writer), so two runs that race for an expired lease cannot both win; older
generations are then deleted. Making the records Zarr groups keeps `zarr`/`xarray` from warning about foreign objects
when they list the store. Expiry uses wall-clock time: hosts sharing a store need clocks within a small part of ttl_s.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import fsspec

from ganinv.errors import UserError
from storage.arrays import LEASE as LEASE_DIR
_ATTR_KEY = "ganinv_lease"

# How long a lease lives unless renewed: the one place these are set.
# - DEFAULT_LEASE_TTL_S (LatentStore.acquire_lease's default): a caller that takes the lease without the context
#   manager gets no renewals, so it must last for the whole of a long job.
# - RENEWED_LEASE_TTL_S (every flow): held as a context manager, the lease is renewed every ttl_s/3 while the run is
#   alive, so its TTL only bounds how long a crashed run blocks its store (sooner with --force / store-break-lease).
DEFAULT_LEASE_TTL_S = 3600.0
RENEWED_LEASE_TTL_S = 300.0


class LeaseHeldError(UserError, RuntimeError):
    """Another run holds an unexpired lease on the store."""


class LeaseLostError(UserError, RuntimeError):
    """This run's lease expired and was taken over, or was broken."""


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class LeaseRecord:
    """Who holds the lease and until when (unix seconds, UTC)."""

    run_id: str
    owner: str
    host: str
    pid: int
    generation: int
    acquired_at: float
    expires_at: float
    released: bool = False

    def expired(self, now: float | None = None) -> bool:
        return self.released or (time.time() if now is None else now) >= self.expires_at

    def describe(self) -> str:
        return (f"run {self.run_id!r} ({self.owner}@{self.host}, pid {self.pid}), acquired {_iso(self.acquired_at)}, "
                f"expires {_iso(self.expires_at)}")

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "acquired_at_utc": _iso(self.acquired_at),
                "expires_at_utc": _iso(self.expires_at)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LeaseRecord:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


class LeaseFiles:
    """Reads and writes lease generations under `<root>/lease/` on one fsspec filesystem."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, *, store_name: str) -> None:
        self.fs, self.dir, self.store_name = fs, f"{root.rstrip('/')}/{LEASE_DIR}", store_name

    def _path(self, generation: int) -> str:
        return f"{self.dir}/{generation:08d}/zarr.json"

    def generations(self) -> list[int]:
        self.fs.invalidate_cache(self.dir)
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.dir, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(int(n) for n in names if n.isdigit())

    def read(self, generation: int) -> LeaseRecord | None:
        path = self._path(generation)
        for _ in range(50):  # a local write in progress can show an empty file for a moment
            try:
                doc = json.loads(self.fs.cat_file(path))
            except FileNotFoundError:
                return None
            except json.JSONDecodeError:
                time.sleep(0.02)
                continue
            return LeaseRecord.from_json(doc["attributes"][_ATTR_KEY])
        raise RuntimeError(f"lease record {path} is not valid JSON; if no run holds the store, delete {self.dir}")

    def latest(self) -> LeaseRecord | None:
        """The newest lease record (possibly expired or released), or None if the store was never leased."""
        for generation in reversed(self.generations()):
            record = self.read(generation)
            if record is not None:
                return record
        return None

    def write(self, record: LeaseRecord, *, exclusive: bool) -> None:
        doc = {"zarr_format": 3, "node_type": "group", "attributes": {_ATTR_KEY: record.to_json()}}
        path = self._path(record.generation)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)  # local directories; no-op on object stores
        with self.fs.open(path, "xb" if exclusive else "wb") as f:
            f.write(json.dumps(doc, indent=2).encode())

    def delete_older_than(self, generation: int) -> None:
        for old in self.generations():
            if old < generation:
                try:
                    self.fs.rm(f"{self.dir}/{old:08d}", recursive=True)
                except FileNotFoundError:
                    pass

    def held_message(self, record: LeaseRecord) -> str:
        return (f"store {self.store_name} is leased by {record.describe()}. Two runs must not write one store at once: "
                "wait for that run to finish (or its lease to expire). If it is dead, break the lease with "
                f"`ganinv store-break-lease {self.store_name}` or pass force=True (CLI: --force).")


class Lease:
    """A lease this process holds. `renew()` before `expires_at`, `release()` at the end; as a context manager it
    renews itself from a daemon thread every ttl_s/3 and releases on exit."""

    def __init__(self, files: LeaseFiles, record: LeaseRecord, ttl_s: float) -> None:
        self.files, self.record, self.ttl_s = files, record, ttl_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: LeaseLostError | None = None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def check(self) -> None:
        """Raises LeaseLostError if a newer generation exists or this one was released/expired."""
        if self._lost is not None:
            raise self._lost
        latest = self.files.latest()
        if latest is None or latest.generation != self.record.generation or latest.run_id != self.run_id:
            holder = "nobody" if latest is None else latest.describe()
            raise LeaseLostError(f"lease on {self.files.store_name} for run {self.run_id!r} was lost; now: {holder}")
        if self.record.expired():
            raise LeaseLostError(f"lease on {self.files.store_name} for run {self.run_id!r} expired at "
                                 f"{_iso(self.record.expires_at)} without renewal")

    def renew(self, ttl_s: float | None = None) -> None:
        """Extends the lease to now + ttl_s (default: the ttl it was acquired with)."""
        self.check()
        self.ttl_s = self.ttl_s if ttl_s is None else ttl_s
        self.record = dataclasses.replace(self.record, expires_at=time.time() + self.ttl_s)
        self.files.write(self.record, exclusive=False)

    def release(self) -> None:
        """Marks the lease released (the record stays, so the store shows who held it last). Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        latest = self.files.latest()
        if latest is not None and latest.generation == self.record.generation and not latest.released:
            self.record = dataclasses.replace(self.record, released=True, expires_at=time.time())
            self.files.write(self.record, exclusive=False)

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.renew()
            except LeaseLostError as err:
                self._lost = err
                return

    def __enter__(self) -> Lease:
        self._thread = threading.Thread(target=self._keep_alive, name=f"lease-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(files: LeaseFiles, run_id: str, *, ttl_s: float, force: bool = False) -> Lease:
    """Takes the lease for `run_id` for ttl_s seconds; see the module docstring for the rules."""
    if not run_id:
        raise ValueError("run_id must be a non-empty string that names this run (e.g. the Prefect flow run id)")
    if ttl_s <= 0:
        raise ValueError(f"ttl_s={ttl_s}: a lease needs a positive time to live in seconds")
    for _ in range(5):
        latest = files.latest()
        if latest is not None and not latest.expired():
            if latest.run_id == run_id:
                lease = Lease(files, latest, ttl_s)
                lease.renew()
                return lease
            if not force:
                raise LeaseHeldError(files.held_message(latest))
        now = time.time()
        record = LeaseRecord(run_id=run_id, owner=_user(), host=socket.gethostname(), pid=os.getpid(),
                             generation=(latest.generation if latest else 0) + 1, acquired_at=now,
                             expires_at=now + ttl_s)
        try:
            files.write(record, exclusive=True)
        except FileExistsError:
            continue  # another run created this generation first: look again
        files.delete_older_than(record.generation)
        return Lease(files, record, ttl_s)
    raise LeaseHeldError(f"store {files.store_name}: could not take the lease, other runs keep taking it")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"
