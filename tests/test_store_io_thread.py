"""A process that used a store ends without "RuntimeError: Cannot close a running event loop": zarr's own exit hook
closed its I/O loop 0.2 s after asking it to stop, while a busy (or, on a loaded machine, unscheduled) I/O thread
was still in it, and the error came after a stopped command's last line (storage/_zarr.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("busy_s, stop_timeout_s", [(0.6, None), (1.0, 0.2)], ids=["finishes", "left-running"])
def test_a_busy_zarr_io_thread_at_exit_is_never_closed_under_it(busy_s, stop_timeout_s):
    script = textwrap.dedent(f"""
        import time
        import zarr
        from zarr.core.sync import _get_loop
        import storage._zarr
        if {stop_timeout_s!r} is not None:
            storage._zarr.STOP_TIMEOUT_S = {stop_timeout_s!r}
        zarr.create_array(store={{}}, shape=(2,), dtype="f4")  # starts zarr's I/O thread
        _get_loop().call_soon_threadsafe(time.sleep, {busy_s})  # busy as the process ends
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "running event loop" not in done.stderr, done.stderr


def test_every_module_of_the_store_that_uses_zarr_brings_the_exit_hook_along():
    """storage/__init__.py loads its modules lazily, so the hook comes with zarr itself: no module of storage/
    imports zarr but through storage/_zarr.py, and each that does has the hook loaded when imported alone."""
    modules = [path for path in (REPO / "storage").glob("*.py") if path.stem != "_zarr"]
    direct = [path.name for path in modules if re.search(r"^\s*(import|from) zarr\b", path.read_text(), re.M)]
    assert direct == [], f"{direct} import zarr directly: write `from storage._zarr import zarr`"
    users = [path.stem for path in modules if "from storage._zarr import zarr" in path.read_text()]
    for name in users:  # one fresh process each: an import elsewhere must not bring the hook for it
        code = f"import sys, storage.{name}; print('storage._zarr' in sys.modules)"
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.stdout.strip() == "True", (name, done.stderr[-2000:])
    assert len(users) >= 5
