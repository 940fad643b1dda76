"""A watchdog that ends a server when the process that started it dies, even by SIGKILL (which no handler sees).

`guard(pid)` starts a small process, a child of this one, that checks every `POLL_S` whether its parent is still
alive (its parent pid changes when the parent dies: the orphan is re-parented) and whether the guarded process still
runs. When the parent is gone it sends SIGTERM to the guarded process, SIGKILL `GRACE_S` later if needed, and exits;
when the guarded process ends first (a normal stop), it exits too. Used for the temporary Prefect server the CLI
starts (flows/prefect_api.py): without it, `kill -9` of the command left the server running for good.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5
GRACE_S = 5.0


def guard(pid: int) -> subprocess.Popen:
    """Starts the watchdog of process `pid` for this process; returns it (it exits by itself)."""
    return subprocess.Popen([sys.executable, "-m", "flows.watchdog", str(os.getpid()), str(pid)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch(parent: int, pid: int) -> None:
    """Runs in the watchdog process: waits for `parent` to die, then ends `pid` (see the module docstring)."""
    while os.getppid() == parent:
        if not _alive(pid):
            return
        time.sleep(POLL_S)
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C at the terminal is for the command, not for us
    watch(int(sys.argv[1]), int(sys.argv[2]))
