"""The shared compile cache (`--compile-cache`, `ExecutionOptions.compile_cache`, `ganinv.utils.compile_cache`): a
directory that cannot hold it is refused by name with exit 2 before anything starts; a usable one is created and
handed to torch's caches. Filling and reading it with real compiled inversions is a GPU test
(tests/test_compile_cache_gpu.py)."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from cli.app import app
from flows.clusters import check_execution
from ganinv.errors import UserError
from ganinv.utils.compile_cache import CACHE_ENV, CompileCacheError, check_compile_cache, use_compile_cache
from runtime.config import ExecutionOptions


def test_a_missing_directory_is_created_when_its_parent_exists(tmp_path):
    assert check_compile_cache(tmp_path / "cache") == tmp_path / "cache"
    assert (tmp_path / "cache").is_dir() and not list((tmp_path / "cache").iterdir())  # the write test left nothing


@pytest.mark.parametrize("case", ["no parent", "a file", "a bucket"])
def test_an_unusable_directory_is_refused_by_name(tmp_path, case):
    (tmp_path / "file").write_text("x")
    path = {"no parent": str(tmp_path / "no" / "such" / "cache"), "a file": str(tmp_path / "file"),
            "a bucket": "s3://bucket/cache"}[case]
    with pytest.raises(CompileCacheError, match="compile cache") as err:
        check_compile_cache(path)
    assert path in str(err.value) and isinstance(err.value, UserError)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_refused(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(CompileCacheError, match="not writable"):
        check_compile_cache(tmp_path / "ro")


def test_use_points_torch_caches_at_the_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    import torch._inductor.config
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    with torch._inductor.config.patch(fx_graph_cache=False):  # torch's own way to change a config for a while
        assert use_compile_cache(tmp_path / "cc") == tmp_path / "cc"
        assert cache_dir() == str(tmp_path / "cc") and torch._inductor.config.fx_graph_cache


def test_execution_options_hold_an_absolute_path_and_are_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ExecutionOptions(compile_cache="cc").compile_cache == str(tmp_path / "cc")
    with pytest.raises(CompileCacheError):
        check_execution(ExecutionOptions(compile_cache=str(tmp_path / "missing" / "cc")))


def test_invert_refuses_an_unusable_cache_with_exit_2_before_anything_starts(tmp_path):
    bad = str(tmp_path / "missing" / "cc")
    result = CliRunner().invoke(app, ["invert", str(tmp_path), "--store", str(tmp_path / "s.zarr"),
                                      "--compile-cache", bad])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: compile cache") and bad in last
    assert not (tmp_path / "s.zarr").exists()
