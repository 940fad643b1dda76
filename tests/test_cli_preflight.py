"""`ganinv invert` refuses every mistake in its own process, before a Prefect server or a Dask cluster starts, with
exit code 2 and one line, and a refused command creates or changes nothing on disk (issue 19, items 3 and 4). A new
store's shard size fits the workers (item 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _flow_helpers import prepare_store
from _image_files import write_good_images
from cli import common
from cli.app import app
from runtime.config import MAX_AUTO_SHARD_SIZE, ExecutionOptions, InvertConfig, auto_shard_size

REPO = Path(__file__).resolve().parents[1]
TINY = ["--steps", "3", "--loss", "mse"]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and mtime: what 'nothing changed on disk' compares."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture
def world(tmp_path, tiny_generator_file):
    """A folder of images, labels, an existing store made with 4 steps, a plain file and a foreign folder."""
    write_good_images(tmp_path / "imgs", 2)
    (tmp_path / "empty").mkdir()
    (tmp_path / "labels.csv").write_text("image_id,smiling\ngood000.png,1\ngood001.png,0\n")
    (tmp_path / "bad_labels.csv").write_text("image_id,smiling\ngood000.png,yes\n")
    (tmp_path / "afile.zarr").write_text("not a store\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine\n")
    prepare_store(tmp_path / "imgs", tmp_path / "made.zarr", tiny_generator_file,
                  InvertConfig(inversion={"num_steps": 4, "loss": "mse"}))
    return tmp_path


def _cases(g: str) -> dict[str, list[str]]:
    """expected message -> arguments after `invert` (paths relative to the world folder)."""
    return {
        "need at least one worker": ["imgs", "--store", "new.zarr", "--generator", g, "--workers", "0"],
        "no generator at 'faces65'": ["imgs", "--store", "new.zarr", "--generator", "faces65"],
        "IMAGES 'nothere/' does not exist": ["nothere/", "--store", "new.zarr", "--generator", g],
        "no image files in": ["empty", "--store", "new.zarr", "--generator", g, *TINY],  # settings that can run
        "the glob matches no file": ["imgs/*.jpg", "--store", "new.zarr", "--generator", g],
        "is a file, not a latent store": ["imgs", "--store", "afile.zarr", "--generator", g],
        "is not empty but holds no latent store root": ["imgs", "--store", "notes", "--generator", g],
        "--labels 'missing.csv': no such file": ["imgs", "--store", "new.zarr", "--generator", g, "--labels",
                                                 "missing.csv"],
        "is not a number": ["imgs", "--store", "new.zarr", "--generator", g, *TINY, "--labels", "bad_labels.csv"],
        "mode 'bogus' is not one of": ["imgs", "--store", "new.zarr", "--generator", g, "--mode", "bogus"],
        "precision must be one of": ["imgs", "--store", "new.zarr", "--generator", g, "--precision", "fp16"],
        "cluster 'laptop'": ["imgs", "--store", "new.zarr", "--generator", g, "--cluster", "laptop"],
        "num_steps: stored 4, given 9": ["imgs", "--store", "made.zarr", "--steps", "9"],
        "holds codes of generator": ["imgs", "--store", "made.zarr", "--generator", "faces64"],
    }


def test_every_mistake_exits_2_before_any_server_starts_and_changes_nothing(world, tiny_generator_file, monkeypatch):
    def no_server(**kwargs):
        raise AssertionError("a Prefect server / Dask cluster was about to start")

    monkeypatch.setattr(common, "flow_session", no_server)
    monkeypatch.chdir(world)
    before = _tree(world)
    for expected, args in _cases(tiny_generator_file).items():
        result = CliRunner().invoke(app, ["invert", *args])
        assert result.exit_code == 2, (expected, result.output)
        last = result.output.strip().splitlines()[-1]
        assert last.startswith("error: ") and expected in last, (expected, result.output)
        assert _tree(world) == before, f"{expected}: something on disk changed"


def test_a_leased_store_is_refused_before_any_server_starts(world, monkeypatch):
    from storage import LatentStore

    monkeypatch.setattr(common, "flow_session", lambda **kw: pytest.fail("a server was about to start"))
    LatentStore.open(str(world / "made.zarr"), "r+").acquire_lease("nightly-run", ttl_s=600)
    result = CliRunner().invoke(app, ["invert", str(world / "imgs"), "--store", str(world / "made.zarr")])
    assert result.exit_code == 2 and "nightly-run" in result.output and "--force" in result.output


def test_restore_refuses_missing_images_and_a_file_store_before_any_server_starts(world, monkeypatch):
    """`ganinv restore` checks the paths as `invert` does: a missing IMAGES folder was refused only by the flow's
    scan, after a Prefect server had started (31 s)."""
    monkeypatch.setattr(common, "flow_session", lambda **kw: pytest.fail("a server was about to start"))
    monkeypatch.chdir(world)
    before = _tree(world)
    for expected, args in {"IMAGES 'nothere/' does not exist": ["nothere/", "--store", "new.zarr"],
                           "is a file, not a latent store": ["imgs", "--store", "afile.zarr"]}.items():
        result = CliRunner().invoke(app, ["restore", *args, "--task", "denoise"])
        assert result.exit_code == 2, (expected, result.output)
        last = result.output.strip().splitlines()[-1]
        assert last.startswith("error: ") and expected in last, (expected, result.output)
    assert _tree(world) == before


@pytest.mark.parametrize("args", [["--workers", "0"], ["--store", "afile.zarr"], ["--shard-size", "0"]])
def test_a_refused_command_writes_nothing_anywhere(tmp_path, args):
    """As a user runs it: a real process, with HOME and TMPDIR of its own; nothing appears in any of them."""
    work, home, tmp = tmp_path / "work", tmp_path / "home", tmp_path / "tmp"
    for folder in (work, home, tmp):
        folder.mkdir()
    write_good_images(work / "imgs", 1)
    (work / "afile.zarr").write_text("x")
    before = {name: _tree(folder) for name, folder in (("work", work), ("home", home), ("tmp", tmp))}
    argv = [sys.executable, "-m", "cli", "invert", "imgs", "--store", "s.zarr", *args]
    if "--store" in args:
        argv = argv[:5] + argv[7:]  # the case's own --store
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("PREFECT_API_URL", None)
    result = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    after = {name: _tree(folder) for name, folder in (("work", work), ("home", home), ("tmp", tmp))}
    assert after == before


def test_a_new_store_gets_at_least_two_shards_per_worker():
    assert auto_shard_size(64, 2) == 16                      # issue 19: 64 images on 2 workers were one shard
    assert auto_shard_size(5, 2) == 1 and auto_shard_size(0, 2) == 1
    assert auto_shard_size(10**6, 8) == MAX_AUTO_SHARD_SIZE  # large datasets: the cap
    assert auto_shard_size(64, None) == MAX_AUTO_SHARD_SIZE  # a remote cluster of unknown size
    for n in range(1, 300, 7):
        for workers in (1, 2, 3, 8):
            size = auto_shard_size(n, workers)
            assert 1 <= size <= MAX_AUTO_SHARD_SIZE
            assert -(-n // size) >= min(n, 2 * workers) or size == MAX_AUTO_SHARD_SIZE


def test_the_shard_size_chosen_for_a_new_store_is_said_in_the_summary(tmp_path, tiny_generator_file):
    from flows.clusters import expected_workers
    from runtime.coordinator import check_settings, open_store, shard_note
    from storage.scan import scan_images

    write_good_images(tmp_path / "imgs", 8)
    workers = expected_workers(ExecutionOptions(cluster="local", workers=2))
    assert workers == 2 and expected_workers(ExecutionOptions(cluster="tcp://head:8786")) is None
    settings = check_settings(tiny_generator_file, InvertConfig(inversion={"num_steps": 1, "loss": "mse"}))
    store, created = open_store(str(tmp_path / "s.zarr"), scan_images(str(tmp_path / "imgs")).manifest, settings,
                                chunk_items=None, workers=workers)
    assert created and store.chunk_items == 2 and len(store.shards()) == 4
    note = shard_note(store, created=True, given=None, workers=workers)
    assert note.startswith("2 images per shard, chosen for 8 images on 2 workers: 4 shards")
    reopened, created = open_store(store.url, scan_images(str(tmp_path / "imgs")).manifest, settings,
                                   chunk_items=None, workers=8)
    assert not created and reopened.chunk_items == 2  # fixed when the store was created
    assert shard_note(reopened, created=False, given=None, workers=8) == ""


@pytest.mark.parametrize("argv", [["invert", "imgs", "--store", "s.zarr", "--generator", "faces65"],
                                  ["generate", "faces65"], ["info", "nothere.pkl"]])
def test_a_misspelt_generator_is_refused_before_torch_is_even_imported(tmp_path, argv):
    """Issue 19 items 3 and 12: `--generator faces65` failed after 28 s; `generate faces65` exited 1."""
    write_good_images(tmp_path / "imgs", 1)
    probe = ("import sys\nfrom typer.testing import CliRunner\nfrom cli.app import app\n"
             f"result = CliRunner().invoke(app, {argv!r})\n"
             "print(result.exit_code, 'torch' in sys.modules)\nprint(result.output)")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120).stdout
    assert out.startswith("2 False\n"), out
    assert "error: no generator at" in out and "built-ins: faces64" in out


def test_a_hybrid_store_is_resumed_with_only_images_and_store(tmp_path, monkeypatch):
    """A store made by the flow (hybrid: encoder metrics, the ood score; plan adds result arrays) is accepted by the
    preflight's own checks when rerun with IMAGES and --store alone (the first-hour test found it refused)."""
    from cli.preflight import resolve

    write_good_images(tmp_path / "imgs", 2)
    prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", "faces64", InvertConfig(inversion={"num_steps": 1}))
    resolved = resolve(str(tmp_path / "imgs"), str(tmp_path / "s.zarr"), None, InvertConfig(), {"inversion": {}},
                       force=False)
    assert resolved.generator == "faces64" and resolved.config.inversion["num_steps"] == 1
    assert resolved.note.startswith("resuming with the settings recorded in")
