"""The migrated Prefect database template (flows/prefect_template.py): a command's temporary server saves it once,
later servers start from a copy without migrating, and a template that is corrupt or made for another Prefect is
never used (the server migrates as before, with one line of warning)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flows import prefect_template

REPO = Path(__file__).resolve().parents[1]

# One command's server, observed: what its database holds before the server starts and the settings it is given
# (a spy around flows.prefect_api._server_settings, which still does the work), then a flow run on the server and
# the block types it serves.
COMMAND = """
import json, sqlite3, sys
from flows import prefect_api

prefect_api.quiet_logging()
seen, settings_for = {}, prefect_api._server_settings

def observed(database, *, from_template):
    if database.exists():
        with sqlite3.connect(database) as db:
            seen["alembic_before_start"] = [row[0] for row in db.execute("SELECT version_num FROM alembic_version")]
    updates = settings_for(database, from_template=from_template)
    seen["from_template"] = from_template
    seen.setdefault("starts", []).append("from template" if from_template else "migrating")
    seen["switches"] = {setting.name: value for setting, value in updates.items() if isinstance(value, bool)}
    return updates

prefect_api._server_settings = observed
with prefect_api.prefect_api():
    from prefect import flow
    from prefect.client.orchestration import get_client

    @flow
    def ping():
        return 1

    seen["flow_result"] = ping()
    with get_client(sync_client=True) as client:
        seen["flow_runs"] = len(client.read_flow_runs())
        seen["block_types"] = sorted(block_type.slug for block_type in client.read_block_types())
seen["server_app_imported"] = "prefect.server.api.server" in sys.modules  # the server's process imports it, not ours
print(json.dumps(seen))
"""


def run_command(cache: Path) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=str(REPO), GANINV_CACHE_DIR=str(cache), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", COMMAND], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture(scope="module")
def two_commands(tmp_path_factory):
    """A corrupt template in the cache, then two commands one after the other: (cache, key, [(seen, stderr), ...],
    the template's inode after each)."""
    cache = tmp_path_factory.mktemp("cache")
    key = prefect_template.template_key()
    key_path = cache / key.path.name
    key_path.write_bytes(b"not a database" * 100)
    runs, inodes = [], []
    for _ in range(2):
        runs.append(run_command(cache))
        inodes.append(key_path.stat().st_ino)
    return cache, key, runs, inodes


@pytest.mark.slow
def test_a_corrupt_template_falls_back_to_migrating_and_is_replaced(two_commands):
    cache, key, runs, _ = two_commands
    seen, stderr = runs[0]
    assert seen["from_template"] is False and "alembic_before_start" not in seen and seen["switches"] == {}
    warning = [line for line in stderr.splitlines() if "template" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: Prefect database template") and "not used" in \
        warning[0], stderr
    assert seen["flow_result"] == 1 and seen["flow_runs"] == 1 and "local-file-system" in seen["block_types"]
    prefect_template.check_template(cache / key.path.name, key)  # the server's fresh database, saved over it


@pytest.mark.slow
def test_the_next_server_starts_from_the_template_without_migrating(two_commands):
    cache, key, runs, inodes = two_commands
    first, (seen, stderr) = runs[0][0], runs[1]
    assert seen["from_template"] is True and seen["alembic_before_start"] == [key.alembic_head]  # copied at the head
    assert seen["switches"] == {"PREFECT_SERVER_DATABASE_MIGRATE_ON_START": False,
                                "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": False,
                                "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": False}
    assert "warning" not in stderr
    assert seen["flow_result"] == 1 and seen["flow_runs"] == 1  # a whole schema: the flow run was recorded
    assert seen["block_types"] == first["block_types"]  # the blocks a registering server has
    assert seen["server_app_imported"] is first["server_app_imported"] is False  # 3.5 s CPU: flows/prefect_server.py
    assert inodes[0] == inodes[1]  # used, not rebuilt
    assert sorted(p.name for p in cache.iterdir()) == [key.path.name]  # no partial files left


@pytest.mark.slow
def test_a_template_whose_server_does_not_serve_is_removed_and_the_server_migrates_once(two_commands, tmp_path):
    """A copy that passes every check yet has lost a table: its server answers /health, then failed the command's
    first flow run. Now the command says so in one line, migrates a new database instead and saves a good template."""
    source, key, runs, _ = two_commands
    cache = tmp_path / "cache"
    cache.mkdir()
    broken = cache / key.path.name
    shutil.copyfile(source / key.path.name, broken)
    with sqlite3.connect(broken) as db:
        db.execute("DROP TABLE flow_run")
    prefect_template.check_template(broken, key)  # nothing the checks read is missing
    seen, stderr = run_command(cache)
    assert seen["starts"] == ["from template", "migrating"]
    warning = [line for line in stderr.splitlines() if "template" in line]
    assert len(warning) == 1 and str(broken) in warning[0] and "its server did not serve" in warning[0], stderr
    assert seen["flow_result"] == 1 and seen["flow_runs"] == 1 and seen["block_types"] == runs[0][0]["block_types"]
    prefect_template.check_template(broken, key)  # the migrated server's database, saved in its place
    with sqlite3.connect(broken) as db:
        assert db.execute("SELECT count(*) FROM flow_run").fetchone() == (0,)


@pytest.fixture
def template(two_commands, tmp_path, monkeypatch):
    """(key, path): a copy of the good template in a cache of this test's own."""
    _, key, _, _ = two_commands
    monkeypatch.setenv(prefect_template.CACHE_ENV, str(tmp_path / "cache"))
    key.path.parent.mkdir()
    shutil.copyfile(two_commands[0] / key.path.name, key.path)
    return key, key.path


def _seed_refused(tmp_path, capsys) -> str:
    database = tmp_path / "server" / "prefect.db"
    database.parent.mkdir(parents=True)
    assert prefect_template.seed_database(database) is None
    assert not database.exists()  # the server gets a new database and migrates it
    return capsys.readouterr().err


@pytest.mark.slow
def test_a_template_at_another_alembic_head_is_not_used(template, tmp_path, capsys):
    key, path = template
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '9725c1cbee35'")  # Prefect's first migration
    err = _seed_refused(tmp_path, capsys)
    assert err.count("\n") == 1 and "Alembic version ['9725c1cbee35']" in err and str(path) in err
    assert not path.exists()  # removed: the next server saves a good one


@pytest.mark.slow
def test_a_template_of_another_prefect_version_is_not_used(template, tmp_path, capsys, monkeypatch):
    import prefect

    key, path = template
    monkeypatch.setattr(prefect, "__version__", "3.0.0")
    other = prefect_template.template_key()
    assert other.path != path and other.alembic_head == key.alembic_head
    assert _seed_refused(tmp_path, capsys) == ""  # none saved for that version: nothing to say
    shutil.copyfile(path, other.path)  # this version's template under the other's name
    assert "made for another Prefect" in _seed_refused(tmp_path / "again", capsys)


@pytest.mark.slow
def test_a_template_holding_more_than_a_fresh_start_is_not_used(template, tmp_path, capsys):
    """A template someone else wrote (a shared cache folder) must not seed a server with runs or settings."""
    _, path = template
    with sqlite3.connect(path) as db:
        db.execute("""INSERT INTO configuration (key, value) VALUES ('planted', '{}')""")
    err = _seed_refused(tmp_path, capsys)
    assert err.count("\n") == 1 and "rows in ['configuration']" in err and not path.exists()


@pytest.mark.slow
def test_a_server_that_fails_to_start_from_the_template_is_started_once_more_migrating(template, monkeypatch, capsys):
    """Prefect's start fails (times out) on the template's copy: the template goes, one migrating start follows,
    and when that fails too the command gets its error rather than another try."""
    from prefect.settings import get_current_settings

    from flows import prefect_api

    _, path = template
    starts = []

    class Unready:
        def __init__(self, port):
            pass

        def start(self, timeout):
            starts.append("migrating" if get_current_settings().server.database.migrate_on_start else "from template")
            raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.\nstderr: x")

        def stop(self):
            pass

    monkeypatch.setattr(prefect_api, "_server_class", lambda: Unready)
    with pytest.raises(RuntimeError, match="Timed out"), prefect_api.temporary_server():
        pass
    assert starts == ["from template", "migrating"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "its server did not serve: RuntimeError: Timed out" in err and "stderr: x" in err
    assert not path.exists()


def test_without_a_home_directory_there_is_no_template(monkeypatch):
    """A container's uid without a passwd entry and no HOME: Path.home() raises; the server starts as Prefect's."""
    monkeypatch.delenv(prefect_template.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: (_ for _ in ()).throw(RuntimeError("no home"))))
    assert prefect_template.template_key() is None
    assert prefect_template.seed_database(Path("/nonexistent/prefect.db")) is None


@pytest.fixture
def fresh_server_database(template, tmp_path):
    """(key, template path, database): a freshly started server's database (the template moved out), no template."""
    key, path = template
    database = tmp_path / "server.db"
    shutil.move(path, database)
    return key, path, database


@pytest.mark.slow
def test_racing_saves_leave_one_whole_template(fresh_server_database):
    key, path, source = fresh_server_database
    start = threading.Barrier(4)

    def save(_):
        start.wait()
        prefect_template.save_template(source)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(save, range(4)))
    prefect_template.check_template(path, key)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by every user of a shared cache directory


@pytest.mark.slow
def test_a_database_with_rows_beyond_a_fresh_start_is_not_saved(fresh_server_database):
    _, path, source = fresh_server_database
    with sqlite3.connect(source) as db:
        db.execute("""INSERT INTO configuration (key, value) VALUES ('a-run', '{}')""")
    prefect_template.save_template(source)
    assert list(path.parent.iterdir()) == []


def test_the_alembic_head_read_from_the_files_is_alembics():
    """`alembic_head` reads the migration files as text (importing them would import Prefect's server)."""
    from alembic.script import ScriptDirectory

    import prefect

    migrations = Path(prefect.__file__).parent / "server" / "database" / "_migrations"
    versions = migrations / "versions" / "sqlite"
    expected = ScriptDirectory(str(migrations), version_locations=[str(versions)]).get_heads()
    assert [prefect_template.alembic_head(versions)] == expected


def test_the_alembic_head_of_a_chain_and_of_what_the_parser_cannot_read(tmp_path):
    (tmp_path / "a.py").write_text('revision = "aaa"\ndown_revision = None\n')
    (tmp_path / "b.py").write_text('revision: str = "bbb"\ndown_revision: Union[str, None] = "aaa"\n')
    assert prefect_template.alembic_head(tmp_path) == "bbb"
    (tmp_path / "c.py").write_text('revision = "ccc"\ndown_revision = "aaa"\n')
    assert prefect_template.alembic_head(tmp_path) is None  # two heads
    (tmp_path / "d.py").write_text('revision = "ddd"\ndown_revision = ("bbb", "ccc")\n')
    assert prefect_template.alembic_head(tmp_path) is None  # a merge the parser does not read
