"""The floors point one way (docs/architecture.md): `ganinv` (pure torch) <- `storage` <- `runtime` / `report` <-
`tasks` <- `flows` <- `cli`. Each package imports only the project packages below it, orchestration libraries only
where orchestration lives, zarr only in storage; no module above `ganinv` grows past ~400 lines; code above storage
reads items through the store's typed readers, never by array name; and every tasks/ function is a `@task`."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GANINV = REPO / "ganinv"
FORBIDDEN = {"prefect", "prefect_dask", "dask", "distributed", "zarr"}
PROJECT = ("ganinv", "storage", "runtime", "report", "tasks", "flows", "cli")
# What each project package may import of the project (besides itself), and of the orchestration/storage libraries.
MAY_IMPORT = {
    "ganinv": ((), set()),
    "storage": (("ganinv",), {"zarr"}),
    "runtime": (("ganinv", "storage"), {"distributed"}),  # distributed: a worker's progress events only
    "report": (("ganinv", "storage"), set()),
    "tasks": (("ganinv", "storage", "runtime", "report"), {"prefect"}),
    "flows": (("ganinv", "storage", "runtime", "report", "tasks"), {"prefect", "prefect_dask", "dask", "distributed"}),
    "cli": (("ganinv", "storage", "runtime", "report", "tasks", "flows"), {"prefect"}),
}
EXCEPTIONS: dict[str, set[str]] = {}
MAX_LINES_ABOVE_GANINV = 400


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


def _sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_ganinv_sources_import_no_orchestration_or_storage_library():
    offenders = {str(path.relative_to(GANINV.parent)): sorted(_imported_top_level_names(path.read_text()) & FORBIDDEN)
                 for path in sorted(GANINV.rglob("*.py"))}
    assert len(offenders) > 3  # the scan saw the package
    assert {path: names for path, names in offenders.items() if names} == {}


@pytest.mark.parametrize("package", list(MAY_IMPORT))
def test_each_floor_imports_only_the_floors_below_it(package):
    below, libraries = MAY_IMPORT[package]
    allowed = {package, *below} | libraries
    watched = set(PROJECT) | FORBIDDEN
    offenders = {}
    for path in _sources(package):
        name = str(path.relative_to(REPO))
        bad = (_imported_top_level_names(path.read_text()) & watched) - allowed - EXCEPTIONS.get(name, set())
        if bad:
            offenders[name] = sorted(bad)
    assert _sources(package), f"no sources in {package}/"
    assert offenders == {}


def test_the_scan_would_catch_each_import_form():
    source = "import zarr\nfrom dask.array import x\nimport prefect.flows as f\nimportlib.import_module('distributed')\n"
    assert _imported_top_level_names(source) >= {"zarr", "dask", "prefect", "distributed"}
    assert _imported_top_level_names("from flows.clusters import x\n") == {"flows"}


def test_no_module_above_ganinv_holds_more_than_one_concept():
    sizes = {str(path.relative_to(REPO)): len(path.read_text().splitlines())
             for package in PROJECT[1:] for path in _sources(package)}
    assert len(sizes) > 20
    assert {path: n for path, n in sizes.items() if n > MAX_LINES_ABOVE_GANINV} == {}


def test_code_above_storage_reads_items_through_typed_readers_not_array_names():
    calls = {}
    for package in ("runtime", "report", "tasks", "flows", "cli"):
        for path in _sources(package):
            found = [node.lineno for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                     and node.func.attr == "array" and not (isinstance(node.func.value, ast.Name)
                                                            and node.func.value.id in ("np", "numpy"))]
            if found:
                calls[str(path.relative_to(REPO))] = found
    assert calls == {}


def test_tasks_hold_only_task_wrappers():
    plain = {}
    for path in _sources("tasks"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_") and node.name != "transient":
                decorators = [ast.unparse(d) for d in node.decorator_list]
                if not any(d.startswith("task") for d in decorators):
                    plain.setdefault(str(path.relative_to(REPO)), []).append(node.name)
            if isinstance(node, ast.ClassDef):
                plain.setdefault(str(path.relative_to(REPO)), []).append(node.name)
    assert plain == {}


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
