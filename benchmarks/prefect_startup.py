"""How long a command's temporary Prefect server takes to be ready, without and with the database template
(flows/prefect_template.py).

Each run is a fresh Python process that enters `flows.prefect_api.prefect_api()` (with `PREFECT_API_URL` unset) and
leaves at once; it reports seconds since its start at `imported` (prefect loaded, as a command has it before its
server starts) and `ready` (the server answered /health; the template saved or copied). Kinds of run, interleaved
so that all see the same load on a shared machine, best of `--repeats` each:

    cold       an empty cache directory: the server migrates a new database, then the template is saved (a first
               command);
    warm       the cache holds the template: copied, no migration, no block registration (every later command);
    baseline   only with `--baseline-root DIR`: the same process on another checkout's code (e.g. the commit before
               the template), for a before/after in one run.

    PYTHONPATH=$PWD python -m benchmarks.prefect_startup --repeats 3 --baseline-root ../main --out runs/ps.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, time; t0 = time.time()
from flows.prefect_api import prefect_api, quiet_logging
quiet_logging()
import prefect.settings
imported = time.time() - t0
with prefect_api():
    ready = time.time() - t0
print(json.dumps({"imported": round(imported, 2), "ready": round(ready, 2)}))
"""


def run(root: Path, cache: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=str(root), GANINV_CACHE_DIR=cache, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=root, capture_output=True, text=True,
                          timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline-root", type=Path, help="another checkout to time the same way (before/after)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    warm_cache = tempfile.mkdtemp(prefix="ganinv-bench-cache-")
    run(ROOT, warm_cache)  # fills it
    kinds = {"cold": lambda: run(ROOT, tempfile.mkdtemp(prefix="ganinv-bench-cache-")),
             "warm": lambda: run(ROOT, warm_cache)}
    if args.baseline_root:
        kinds["baseline"] = lambda: run(args.baseline_root.resolve(), tempfile.mkdtemp(prefix="ganinv-bench-cache-"))
    rows = {kind: [] for kind in kinds}
    for _ in range(args.repeats):
        for kind, once in kinds.items():
            rows[kind].append(once())
    best = {kind: min(runs, key=lambda r: r["ready"]) for kind, runs in rows.items()}
    result = dict(best=best, server_s={kind: round(r["ready"] - r["imported"], 2) for kind, r in best.items()},
                  runs=rows, cpus=os.cpu_count(), python=platform.python_version(), date=time.strftime("%Y-%m-%d %H:%M"))
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
