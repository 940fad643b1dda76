"""The README's "Your first hour" block, run as written, in order, in a fresh folder (issue 19, "done when": a new
user following the README's own commands meets no error). Each line runs as its own `ganinv` process; every one
must exit 0. Slow: several flows, each with its temporary Prefect server, on the embedded world."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from test_readme_commands import FENCE

REPO = Path(__file__).resolve().parents[1]


def first_hour_commands() -> list[list[str]]:
    section = (REPO / "README.md").read_text().split("## Your first hour", 1)[1]
    block = FENCE.search(section).group(1)
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.startswith("ganinv ")]


@pytest.mark.slow
def test_the_readme_first_hour_runs_without_one_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "GANINV_CRASH_DIR": str(tmp_path)}
    env.pop("PREFECT_API_URL", None)
    outputs = []
    for argv in first_hour_commands():
        done = subprocess.run([sys.executable, "-m", "cli", *argv], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, f"ganinv {' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
        for noise in ("Traceback", "Error logging to API", "Port 8787", "Warning:", "telemetry"):
            assert noise not in done.stderr, f"ganinv {' '.join(argv)}: {noise!r} in\n{done.stderr}"  # quiet
        outputs.append(done.stdout + done.stderr)
    text = "\n".join(outputs)
    assert "0 inverted in 0 shards" in text  # the rerun found nothing to do and reused the store's settings
    assert re.search(r"warning: interfacegan-smiling: fitted on \d+ codes a side", text)
    recon = sorted((tmp_path / "recon").rglob("*.png"))
    assert len(recon) == 8 and Image.open(recon[0]).size == (64, 64)
    assert len(list((tmp_path / "edited").rglob("*.png"))) == 4 * 2 * 3  # items x directions x strengths
    metrics = json.loads(next((tmp_path / "reports").glob("*/metrics.json")).read_text())
    assert metrics["throughput"]["runs"] == 1 and metrics["throughput"]["run_items"] == 64  # not the no-op rerun
