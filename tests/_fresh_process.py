"""Python code run in a fresh interpreter with this checkout first on its path: what a command's process imports
can only be seen in a process that has imported nothing yet (the test session has imported everything)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fresh_python(code: str, *, timeout: float = 120) -> str:
    """The standard output of `python -c code` run in the repository; a failed run fails the test with its stderr."""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return done.stdout
