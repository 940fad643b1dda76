"""flows/prefect_server.py starts the temporary server as Prefect's `SubprocessASGIServer` does, without importing its
module in the command's process: the same command line, environment and port, read here from Prefect's own class."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flows import prefect_server


def test_the_server_process_is_started_as_prefects_class_starts_it(monkeypatch):
    from prefect.server.api import server as prefect_server_module
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    started = []
    monkeypatch.setattr(prefect_server_module.subprocess, "Popen",
                        lambda args, env: started.append((args, env)) or "a process")
    monkeypatch.setenv("GANINV_SOMETHING", "inherited")
    port = prefect_server.free_port()
    ours = prefect_server.TemporaryServer(port)
    with temporary_settings(updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: "sqlite+aiosqlite:////tmp/x.db"}):
        prefect_server_module.SubprocessASGIServer(port)._run_uvicorn_command()
        (args, env), = started
        assert ours.command() == args
        assert ours.environment() == env
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == "sqlite+aiosqlite:////tmp/x.db"
    assert env["GANINV_SOMETHING"] == "inherited" and env["PREFECT__SERVER_EPHEMERAL"] == "1"
    assert (ours.address, ours.api_url) == (prefect_server_module.SubprocessASGIServer(port).address,
                                            prefect_server_module.SubprocessASGIServer(port).api_url)


class _Exited:
    """A server process that has exited with `code`."""

    def __init__(self, code):
        self.code, self.returncode = code, code

    def poll(self):
        return self.code


def test_a_server_that_exits_is_reported_at_once_and_a_taken_port_is_traded_for_another(monkeypatch):
    spawned = []
    monkeypatch.setattr(prefect_server.TemporaryServer, "command", lambda self: ["true"])
    monkeypatch.setattr(prefect_server.TemporaryServer, "environment", lambda self: {})
    monkeypatch.setattr(prefect_server.subprocess, "Popen",
                        lambda args, env: spawned.append(args) or _Exited(1 if spawned[1:] else 3))
    server = prefect_server.TemporaryServer(prefect_server.free_port())
    first_port = server.port
    with pytest.raises(RuntimeError, match="exited with code 1"):
        server.start(timeout=60)  # not 60 s: the second process exits (1) and that ends the wait
    assert len(spawned) == 2 and server.port != first_port  # uvicorn's 3 (address in use): once more, elsewhere
    server.server_process = None
    server.stop()  # nothing to stop: no error


def test_stop_ends_a_server_that_ignores_sigterm(monkeypatch):
    monkeypatch.setattr(prefect_server, "STOP_TIMEOUT_S", 0.5)
    server = prefect_server.TemporaryServer(prefect_server.free_port())
    ignores = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); " \
              "time.sleep(30)"
    server.server_process = subprocess.Popen([sys.executable, "-c", ignores], stdout=subprocess.PIPE, text=True)
    process = server.server_process
    assert process.stdout.readline() == "ready\n"
    server.stop()
    assert process.returncode == -9 and server.server_process is None
