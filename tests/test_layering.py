"""`ganinv` is pure PyTorch: it never imports prefect, dask, distributed or zarr (see STYLE.md, layering)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

GANINV = Path(__file__).resolve().parents[1] / "ganinv"
FORBIDDEN = {"prefect", "prefect_dask", "dask", "distributed", "zarr"}


def _imported_top_level_names(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def test_ganinv_sources_import_no_orchestration_or_storage_library():
    offenders = {str(path.relative_to(GANINV.parent)): sorted(_imported_top_level_names(path.read_text()) & FORBIDDEN)
                 for path in sorted(GANINV.rglob("*.py"))}
    assert len(offenders) > 3  # the scan saw the package
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_scan_would_catch_each_import_form():
    source = "import zarr\nfrom dask.array import x\nimport prefect.flows as f\nimportlib.import_module('distributed')\n"
    assert _imported_top_level_names(source) >= {"zarr", "dask", "prefect", "distributed"}


def test_importing_every_ganinv_module_loads_no_orchestration_or_storage_library():
    script = f"""
import importlib, json, pkgutil, sys
import ganinv
names = [m.name for m in pkgutil.walk_packages(ganinv.__path__, "ganinv.")]
for name in names:
    importlib.import_module(name)
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({sorted(FORBIDDEN)!r}))
print(json.dumps({{"modules": names, "forbidden_loaded": loaded}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=GANINV.parent, env={**os.environ, "PYTHONPATH": str(GANINV.parent)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "ganinv.generators.io" in report["modules"]
    assert report["forbidden_loaded"] == []
