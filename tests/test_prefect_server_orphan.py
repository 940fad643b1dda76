"""The temporary Prefect server a command starts dies with the command, even when the command is killed with
SIGKILL (issue 24 item 7: a server orphaned by `kill -9` was still alive 55 minutes later)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its new parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


@pytest.mark.slow
def test_a_command_killed_with_sigkill_leaves_no_prefect_server_behind(tmp_path):
    script = textwrap.dedent("""
        import time
        import flows.prefect_api as api
        guard = api.guard
        api.guard = lambda pid: (print(pid, flush=True), guard(pid))[1]
        with api.prefect_api():
            print("ready", flush=True)
            time.sleep(600)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PYTHONPATH=str(REPO))
    command = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    server = None
    try:
        server = int(command.stdout.readline())
        assert command.stdout.readline().strip() == "ready" and _alive(server)
        command.send_signal(signal.SIGKILL)
        command.wait()
        deadline = time.monotonic() + 30
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(server), "the Prefect server outlived the command killed with SIGKILL"
    finally:
        command.kill()
        if server is not None and _alive(server):
            os.kill(server, signal.SIGKILL)
