"""A migrated Prefect database kept as a template, so a command's temporary server starts without migrating.

A fresh temporary server (flows/prefect_api.py) spends most of its start on its empty SQLite database: Alembic runs
every migration since 2022 (~7 s on 2 cores) and the server registers ~50 block types (~1.6 s). Both give the same
result every time for one installed Prefect: a schema at the Alembic head and the same block rows. So the first
command saves its server's freshly started database (SQLite's backup API, then an atomic rename) under the cache
directory, and later commands copy that template into the new server's location and start the server with
`PREFECT_API_DATABASE_MIGRATE_ON_START` and `PREFECT_API_BLOCKS_REGISTER_ON_START` off: Prefect's own switches for a
database that is already migrated and registered (docs/platform.md).

A template is used only by the Prefect it was made with. Its file name carries the key: the Prefect version, the
Alembic head of Prefect's SQLite migrations, and a digest of what the server registers blocks from (the
`prefect.collections` packages and their versions); inside, `PRAGMA user_version` holds the key's checksum and the
`alembic_version` table must read the head. A copy that fails a check (corrupt, another head or key, no block types)
is removed, the command says so in one line and its server migrates as before, then saves a good template over the
bad one. So is a copy that passes the checks but whose server does not serve: flows/prefect_api.py reads the flow
runs through a server started from a template before using it (a lost table fails there) and, once, migrates a new
database instead. Templates are written to a temporary name and renamed, so commands that race (two at once,
pytest-xdist workers) each read a whole file; the last rename wins and both are equal.

The cache directory is `$GANINV_CACHE_DIR`, else `$XDG_CACHE_HOME/ganinv`, else `~/.cache/ganinv`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import zlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import NamedTuple

logger = logging.getLogger(__name__)

CACHE_ENV = "GANINV_CACHE_DIR"
# What a server that has only started holds; any other row (an event, a run) must not be copied into other servers.
FRESH_SERVER_TABLES = frozenset({"alembic_version", "block_type", "block_schema", "block_schema_reference"})
# `revision = "abc"` or, as newer Alembic templates write it, `revision: str = "abc"`
_REVISION = re.compile(r"^revision(?:\s*:[^=\n]+)?\s*=\s*['\"](\w+)['\"]\s*$", re.M)
_DOWN_REVISION = re.compile(r"^down_revision(?:\s*:[^=\n]+)?\s*=\s*(?:None|['\"](\w+)['\"])\s*$", re.M)


class TemplateError(Exception):
    """A template (or the copy of one) that must not be used; the message says why."""


def cache_dir() -> Path:
    """Where ganinv keeps what it can rebuild (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "ganinv"


class TemplateKey(NamedTuple):
    """What a template depends on: the database schema (Prefect's version and its Alembic head) and the block types
    a starting server registers (Prefect's own and those of the `prefect.collections` packages)."""

    prefect_version: str
    alembic_head: str
    block_sources: str  # digest

    @property
    def path(self) -> Path:
        return cache_dir() / f"prefect-template-{self.prefect_version}-{self.alembic_head}-{self.block_sources}.db"

    @property
    def marker(self) -> int:
        """Stored as the template's `PRAGMA user_version` (a signed 32-bit integer; Prefect leaves it at 0)."""
        return zlib.crc32("-".join(self).encode()) & 0x7FFFFFFF


def template_key() -> TemplateKey | None:
    """The installed Prefect's key, or None when its Alembic head cannot be read (then no template is used)."""
    import prefect

    versions = Path(prefect.__file__).parent / "server" / "database" / "_migrations" / "versions" / "sqlite"
    try:
        cache_dir()  # no home directory (a container's uid without a passwd entry, no HOME): no template
        head = alembic_head(versions)
        return None if head is None else TemplateKey(prefect.__version__, head, _block_sources_digest())
    except (OSError, ValueError, RuntimeError) as err:  # an unreadable installation: start as Prefect does
        logger.info("no prefect database template: %s: %s", type(err).__name__, err)
        return None


def alembic_head(versions: Path) -> str | None:
    """The one revision no migration in `versions` builds on, read from the files' `revision`/`down_revision` lines
    without importing them (that would import Prefect's server: seconds); None if a file does not parse (a merge
    revision, a new layout) or there is not exactly one head."""
    revisions, parents = set(), set()
    for script in versions.glob("*.py"):
        text = script.read_text(encoding="utf-8")
        revision, down = _REVISION.search(text), _DOWN_REVISION.search(text)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _block_sources_digest() -> str:
    """The server registers the block types of Prefect and of every `prefect.collections` package it loads."""
    sources = sorted(f"{ep.name}={ep.value}@{ep.dist.name if ep.dist else ''}:{ep.dist.version if ep.dist else ''}"
                     for ep in entry_points(group="prefect.collections"))
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()[:12]


def seed_database(database: Path) -> Path | None:
    """Copies the template into `database` (a server's fresh location) and checks the copy; returns the template
    when the server may skip migrating and registering blocks. None when there is no template yet (nothing said) or
    it is unusable (one line on stderr, the bad template removed): the server then starts as before."""
    key = template_key()
    if key is None:
        return None
    template = key.path
    try:
        with open(template, "rb") as source, open(database, "xb") as target:  # one inode, even if renamed meanwhile
            shutil.copyfileobj(source, target)
        check_template(database, key)
    except FileNotFoundError:
        return None
    except (OSError, sqlite3.Error, TemplateError) as err:
        discard(database, template, f"{type(err).__name__}: {err}")
        return None
    logger.info("prefect server database copied from template %s", template)
    return template


def discard(database: Path, template: Path, reason: str) -> None:
    """Removes a server's copy of `template` and the template itself, saying why in one line on stderr: the server
    then migrates a new database and saves a good template in its place."""
    _remove_database(database)
    with contextlib.suppress(OSError):
        template.unlink()
    reason = " ".join(reason.split())  # one line, whatever the error said
    print(f"warning: Prefect database template {template} not used ({reason[:300]}); the server migrates a new "
          "database instead", file=sys.stderr)


def check_template(database: Path, key: TemplateKey) -> None:
    """Raises TemplateError (or sqlite3.Error) unless `database` is an intact template made for `key`."""
    with _read_only(database) as db:
        integrity = db.execute("PRAGMA quick_check").fetchall()
        if integrity != [("ok",)]:
            raise TemplateError(f"integrity check: {integrity[:3]}")
        marker = db.execute("PRAGMA user_version").fetchone()[0]
        if marker != key.marker:
            raise TemplateError(f"made for another Prefect (marker {marker}, expected {key.marker})")
        versions = [row[0] for row in db.execute("SELECT version_num FROM alembic_version")]
        if versions != [key.alembic_head]:
            raise TemplateError(f"Alembic version {versions}, expected [{key.alembic_head!r}]")
        if db.execute("SELECT count(*) FROM block_type").fetchone()[0] == 0:
            raise TemplateError("no block types registered")
        extra = _tables_with_rows(db) - FRESH_SERVER_TABLES  # a run, a deployment: never seed a server with them
        if extra:
            raise TemplateError(f"rows in {sorted(extra)}: not a freshly started server's database")


def save_template(database: Path) -> None:
    """Saves the database of a server that has just started (migrated, blocks registered, nothing run yet) as the
    template, unless one exists; never raises: without a template, the next server migrates as before."""
    key = template_key()
    if key is None or key.path.exists():
        return
    template, partial = key.path, None
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=template.parent, prefix=f".{template.name}.", suffix=".tmp")
        os.close(fd)
        _backup(database, Path(partial), key)
        check_template(Path(partial), key)
        os.chmod(partial, 0o644)  # mkstemp's 0600 would keep a shared cache directory's other users out
        os.replace(partial, template)  # readers see the old file or the whole new one
        partial = None
        logger.info("prefect server database saved as template %s", template)
    except (OSError, sqlite3.Error, TemplateError) as err:
        logger.info("prefect database template not saved: %s: %s", type(err).__name__, err)
    finally:
        if partial is not None:
            _remove_database(Path(partial))


def _backup(database: Path, partial: Path, key: TemplateKey) -> None:
    """A consistent copy of the live (WAL) database, as one file, marked with the key's checksum."""
    with _read_only(database) as source, contextlib.closing(sqlite3.connect(partial)) as copy:
        source.backup(copy)
        extra = _tables_with_rows(copy) - FRESH_SERVER_TABLES
        if extra:
            raise TemplateError(f"the server wrote rows to {sorted(extra)} at start: not a fresh database")
        copy.execute("PRAGMA journal_mode = DELETE")  # no -wal file to carry; Prefect turns WAL on when it connects
        copy.execute(f"PRAGMA user_version = {key.marker}")
        copy.commit()


def _tables_with_rows(db: sqlite3.Connection) -> set[str]:
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t for t in tables if db.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()}


def _read_only(database: Path) -> contextlib.closing[sqlite3.Connection]:
    """A connection that never writes (no checkpoint of a live server's WAL, no file created where none is)."""
    return contextlib.closing(sqlite3.connect(f"{database.absolute().as_uri()}?mode=ro", uri=True))


def _remove_database(database: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(OSError):
            os.unlink(f"{database}{suffix}")
