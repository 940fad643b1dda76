"""A lease with expiry that lets one run at a time coordinate a store; a second run is refused while it is held.

Semantics (what the flows rely on):
- A *run* (one coordinating process: the flow that appends, plans and dispatches shards) acquires the lease before it
  changes the store and renews it while it runs. Its workers never touch the lease: they only write their own shards.
- While an unexpired lease is held by another run, `acquire` raises `LeaseHeldError` saying who holds it (run id,
  user@host, pid) and until when, and how to break it. A lease held by a dead run expires after `ttl_s`, or at once
  when the holder ran on this host (same hostname, boot and pid namespace) and its pid is gone; `force=True` (CLI
  `--force`, or `ganinv store-break-lease`) takes it over at once.
- A record that cannot be read (a damaged file) blocks like a held lease, says so and names the file; `force=True`
  and break-lease take it over. `LatentStore.lease_holder()` reports it instead of failing.
- Acquiring again with the same run id while the lease is held is allowed (a restarted coordinator of the same run).
- A holder learns it lost the lease (expired and taken over, or broken) on its next `renew` or `check`:
  `LeaseLostError`.

How it is stored: records live in `<store>/lease/<generation>/zarr.json`, each a Zarr group whose attributes are the
record, written with plain fsspec (never through the root attributes, which only the coordinator rewrites). Taking the
lease means creating generation g+1 with an exclusive create (locally: the record is written to a temporary file and
hard-linked into place, which fails if the name exists; on S3 a PUT with `If-None-Match: *`; both refuse the second
writer), so two runs that race for an expired lease cannot both win; older generations are then deleted. The newest
generation is the lease: a writer that finds a newer generation than its own after creating it (it read the store
while another run took over and deleted what it read) voids its record and looks again. Renewals
and releases replace the record atomically (a temporary file renamed over it locally; a PUT on object stores), so a
reader never sees a half-written record. Making the records Zarr groups keeps `zarr`/`xarray` from warning about
foreign objects when they list the store. Expiry uses wall-clock time: hosts sharing a store need clocks within a
small part of ttl_s.
"""

from __future__ import annotations

import dataclasses
import functools
import getpass
import json
import os
import socket
import threading
import time
import uuid
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
    machine: str = ""          # boot id and pid namespace of the holder's host: pids are compared only within one
    unreadable: str = ""       # set (never written) when the record's file could not be read: why, and its path

    def expired(self, now: float | None = None) -> bool:
        """Released or past its expiry. An unreadable record never expires by itself: it is taken over with force."""
        if self.unreadable:
            return False
        return self.released or (time.time() if now is None else now) >= self.expires_at

    def holder_gone(self) -> bool:
        """The holder ran on this machine (same host, boot and pid namespace) and its process no longer exists."""
        if self.unreadable or not self.machine or self.machine != this_machine() or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # EPERM: a process of another user holds that pid, so it is alive
            return False
        return False

    def describe(self) -> str:
        if self.unreadable:
            return f"an unreadable lease record ({self.unreadable})"
        return (f"run {self.run_id!r} ({self.owner}@{self.host}, pid {self.pid}), acquired {_iso(self.acquired_at)}, "
                f"expires {_iso(self.expires_at)}")

    def to_json(self) -> dict[str, Any]:
        record = {k: v for k, v in dataclasses.asdict(self).items() if k != "unreadable"}
        return {**record, "acquired_at_utc": _iso(self.acquired_at), "expires_at_utc": _iso(self.expires_at)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LeaseRecord:
        names = [f.name for f in dataclasses.fields(cls) if f.name != "unreadable"]
        return cls(**{name: data[name] for name in names if name in data})

    @classmethod
    def damaged(cls, generation: int, reason: str) -> LeaseRecord:
        return cls(run_id="", owner="", host="", pid=0, generation=generation, acquired_at=0.0, expires_at=0.0,
                   unreadable=reason)


@functools.cache
def this_machine() -> str:
    """Boot id and pid namespace of this host ('' where unknown): two records with the same value come from one
    running kernel and one pid namespace, where a pid names one process."""
    parts = []
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            parts.append(f.read().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        return ""
    return ":".join(parts)


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
        """The record of `generation`, None if it has none, or `LeaseRecord.damaged` if its file cannot be read."""
        path = self._path(generation)
        for attempt in range(5):  # records are replaced atomically; a writer of an older ganinv was not so careful
            try:
                doc = json.loads(self.fs.cat_file(path))
                return LeaseRecord.from_json(doc["attributes"][_ATTR_KEY])
            except FileNotFoundError:
                return None
            except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:
                reason = f"{path}: {type(err).__name__}: {err}"
            time.sleep(0.02 * (attempt + 1))
        return LeaseRecord.damaged(generation, reason)

    def latest(self) -> LeaseRecord | None:
        """The newest lease record (possibly expired or released), or None if the store was never leased."""
        for generation in reversed(self.generations()):
            record = self.read(generation)
            if record is not None:
                return record
        return None

    def write(self, record: LeaseRecord, *, exclusive: bool) -> None:
        """Writes the record whole: `exclusive` fails (FileExistsError) if the generation already has one."""
        doc = {"zarr_format": 3, "node_type": "group", "attributes": {_ATTR_KEY: record.to_json()}}
        payload = json.dumps(doc, indent=2).encode()
        path = self._path(record.generation)
        if not _is_local(self.fs):  # an object PUT is atomic; 'xb' is a conditional PUT (If-None-Match: *)
            with self.fs.open(path, "xb" if exclusive else "wb") as f:
                f.write(payload)
            return
        folder = os.path.dirname(path)
        try:
            os.makedirs(folder, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as err:
            raise NotADirectoryError(f"cannot keep a lease in {self.dir}: {err}; is {self.store_name} a file?"
                                     ) from None
        temp = os.path.join(folder, f".zarr.json.{uuid.uuid4().hex}.tmp")
        try:
            with open(temp, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            if exclusive:
                os.link(temp, path)  # atomic, and refuses an existing name
            else:
                os.replace(temp, path)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)

    def delete_older_than(self, generation: int) -> None:
        for old in self.generations():
            if old < generation:
                self.delete_generation(old)

    def delete_generation(self, generation: int) -> None:
        """Best effort: a generation older than the newest is never read as the holder, so one left behind (a
        racing writer's temporary file in it, or already gone) does no harm."""
        try:
            self.fs.rm(f"{self.dir}/{generation:08d}", recursive=True)
        except OSError:
            pass

    def held_message(self, record: LeaseRecord) -> str:
        if record.unreadable:
            return (f"store {self.store_name} has {record.describe()}: whether a run holds the store is unknown. If "
                    f"none does, break the lease with `ganinv store-break-lease {self.store_name}` or pass force=True "
                    "(CLI: --force); either writes a new record.")
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
        if latest is not None and not latest.expired() and not latest.holder_gone():
            if latest.run_id == run_id:
                lease = Lease(files, latest, ttl_s)
                lease.renew()
                return lease
            if not force:
                raise LeaseHeldError(files.held_message(latest))
        now = time.time()
        record = LeaseRecord(run_id=run_id, owner=_user(), host=socket.gethostname(), pid=os.getpid(),
                             generation=(latest.generation if latest else 0) + 1, acquired_at=now,
                             expires_at=now + ttl_s, machine=this_machine())
        try:
            files.write(record, exclusive=True)
        except (FileExistsError, FileNotFoundError):
            continue  # another run created this generation first (or its winner's clean-up removed the folder)
        if max(files.generations(), default=0) > record.generation:
            # We read the store while another run took a newer generation and deleted the one we read: the newest
            # generation holds the lease, so ours is void. (Seen with 8 threads racing on a loaded machine: two won.)
            files.delete_generation(record.generation)
            continue
        files.delete_older_than(record.generation)
        return Lease(files, record, ttl_s)
    raise LeaseHeldError(f"store {files.store_name}: could not take the lease, other runs keep taking it")


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"
