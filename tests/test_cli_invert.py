"""`ganinv invert`: exit codes, one-line errors, the summary, and its own temporary Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _flow_helpers import prepare_store
from _image_files import write_bad_inputs, write_good_images
from cli.app import app
from runtime.config import InvertConfig
from storage import LatentStore

REPO = Path(__file__).resolve().parents[1]
TINY = ["--steps", "3", "--loss", "mse"]


@pytest.fixture(scope="module")
def generator(tiny_generator_file):
    """The session's saved tiny generator (conftest), under this module's short name."""
    return tiny_generator_file


def _invert(*args: str):
    return CliRunner().invoke(app, ["invert", *args], catch_exceptions=False)


def test_help_documents_every_exit_code():
    result = CliRunner().invoke(app, ["invert", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for code in ("0 every image is in the store", "1 the run completed but", "2 usage or configuration error",
                 "3 the flow crashed"):
        assert code in text


def test_batch_size_is_a_positive_number_or_auto(tmp_path):
    for bad in ("0", "-3", "many"):
        result = CliRunner().invoke(app, ["invert", str(tmp_path), "--store", str(tmp_path / "s.zarr"),
                                          "--batch-size", bad])
        text = " ".join(result.output.replace("│", " ").split())  # rich wraps the message in a box
        assert result.exit_code == 2 and "positive number of images or 'auto'" in text, result.output


def test_configuration_errors_exit_2_with_one_line(prefect_harness, generator, tmp_path, monkeypatch):
    write_good_images(tmp_path / "imgs", 1)
    (tmp_path / "empty").mkdir()
    imgs, store = str(tmp_path / "imgs"), str(tmp_path / "s.zarr")
    cases = {
        "no generator at": ["--generator", str(tmp_path / "missing.pkl")],
        "vgg16-397923af.pth": ["--generator", generator, "--steps", "3", "--loss", "lpips-vgg"],
        "cluster 'laptop'": ["--generator", generator, *TINY, "--cluster", "laptop"],
        "precision must be one of": ["--generator", generator, *TINY, "--precision", "fp16"],
        "no image files in": ["--generator", generator, *TINY, "--store", store],
    }
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # LPIPS weights are surely absent
    for expected, args in cases.items():
        source = str(tmp_path / "empty") if expected == "no image files in" else imgs
        result = _invert(source, "--store", store, *args)
        assert result.exit_code == 2, (expected, result.output)
        last = result.output.strip().splitlines()[-1]  # (this process's Prefect logs to the console; the CLI's don't)
        assert last.startswith("error: ") and expected in last, result.output


def test_store_made_otherwise_or_leased_exits_2(prefect_harness, generator, tmp_path):
    write_good_images(tmp_path / "imgs", 1)
    asked = InvertConfig(inversion={"num_steps": 4, "loss": "mse"})  # what `--num-steps 4 --loss mse` asks for
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, asked)
    result = _invert(str(tmp_path / "imgs"), "--store", store.url, "--generator", generator, "--steps", "9",
                     "--loss", "mse")
    assert result.exit_code == 2 and "another inversion config" in result.output
    store.acquire_lease("nightly-run", ttl_s=600)
    result = _invert(str(tmp_path / "imgs"), "--store", store.url, "--generator", generator, "--steps", "4",
                     "--loss", "mse")
    assert result.exit_code == 2 and "nightly-run" in result.output and "--force" in result.output


def test_bad_inputs_exit_1_with_every_reason_in_the_summary(prefect_harness, dask_cluster, generator, tmp_path):
    expected = write_bad_inputs(tmp_path / "imgs")
    report = tmp_path / "report.json"
    result = _invert(str(tmp_path / "imgs"), "--store", str(tmp_path / "s.zarr"), "--generator", generator, *TINY,
                     "--shard-size", "4", "--cluster", dask_cluster[0].scheduler_address, "--report", str(report))
    assert result.exit_code == 1, result.output
    for name, (outcome, reason) in expected.items():
        if outcome != "done":
            assert f"{'skipped' if outcome == 'skipped' else 'failed '}   {name}: {reason}" in result.output
    summary = json.loads(report.read_text())
    assert summary["counts"] == {"pending": 0, "done": 5, "failed": 4}
    assert "inverting (5 done, 4 failed): 9/9" in result.output  # progress, one line per shard off a terminal


def test_speed_options_reach_the_workers_and_are_recorded_in_the_store(prefect_harness, dask_cluster, generator,
                                                                       tmp_path):
    from storage import LatentStore

    write_good_images(tmp_path / "imgs", 2)
    store = str(tmp_path / "s.zarr")
    result = _invert(str(tmp_path / "imgs"), "--store", store, "--generator", generator, *TINY, "--precision", "bf16",
                     "--channels-last", "--cluster", dask_cluster[0].scheduler_address)
    assert result.exit_code == 0, result.output
    recorded = LatentStore.open(store).attributes.inversion["inversion"]
    assert recorded["precision"] == "bf16" and recorded["channels_last"] is True
    again = _invert(str(tmp_path / "imgs"), "--store", store, "--generator", generator, *TINY, "--precision", "fp32",
                    "--cluster", dask_cluster[0].scheduler_address)  # fp32 codes must not join bf16 ones
    assert again.exit_code == 2 and "precision: stored 'bf16', given 'fp32'" in again.output, again.output
    assert f"`ganinv invert IMAGES --store {store}`" in again.output  # the one-line fix


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a worker without CUDA")
def test_a_device_the_workers_lack_is_refused_before_any_shard_runs(prefect_harness, dask_cluster, generator,
                                                                     tmp_path):
    """The workers' numerics are probed before shards are sent (runtime/numerics.py): exit 2 naming the device,
    not shards failing one by one."""
    write_good_images(tmp_path / "imgs", 2)
    result = _invert(str(tmp_path / "imgs"), "--store", str(tmp_path / "s.zarr"), "--generator", generator, *TINY,
                     "--cluster", dask_cluster[0].scheduler_address, "--device", "cuda")
    assert result.exit_code == 2 and "no CUDA device" in result.output, result.output
    assert LatentStore.open(str(tmp_path / "s.zarr")).status_counts()["done"] == 0


def test_shards_that_cannot_run_exit_3(prefect_harness, dask_cluster, generator, tmp_path):
    """A shard fails on its worker for a reason a rerun meets again (here its `path` chunk is corrupt, so the
    worker cannot tell which files to read): exit 3, the shard named, and no advice to just run again."""
    write_good_images(tmp_path / "imgs", 2)
    store, cluster = str(tmp_path / "s.zarr"), dask_cluster[0].scheduler_address
    assert _invert(str(tmp_path / "imgs"), "--store", store, "--generator", generator, *TINY,
                   "--cluster", cluster).exit_code == 0
    for chunk in (Path(store) / "ws" / "c" / "0" / "0" / "0", Path(store) / "path" / "c" / "0" / "0"):
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0xFF
        chunk.write_bytes(bytes(data))
    assert LatentStore.open(store, "r+").verify(repair=True).requeued == (0, 1)  # the codes are inverted again
    result = _invert(str(tmp_path / "imgs"), "--store", store, "--generator", generator, *TINY, "--cluster", cluster)
    assert result.exit_code == 3, result.output
    assert "1 shard(s) failed: shard 0" in result.output and "`path` is corrupt" in result.output, result.output
    assert "will not get past this" in result.output


def _prefect_servers(prefect_home: Path) -> set[int]:
    """Prefect API servers started with this PREFECT_HOME (other test runs on the machine have their own)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if b"prefect.server.api.server:create_app" in cmdline and f"PREFECT_HOME={prefect_home}".encode() in environ:
            found.add(int(pid))
    return found


@pytest.mark.slow
def test_without_an_api_url_the_cli_runs_one_temporary_server_and_stops_it(generator, tmp_path):
    write_good_images(tmp_path / "imgs", 3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(tmp_path / "prefect-home"))
    before = _prefect_servers(tmp_path / "prefect-home")
    result = subprocess.run([sys.executable, "-m", "cli", "invert", str(tmp_path / "imgs"), "--store",
                             str(tmp_path / "s.zarr"), "--generator", generator, *TINY, "--cluster", "local",
                             "--workers", "1"], env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 items, 3 done, 0 failed, 0 pending" in result.stdout
    assert "INFO" not in result.stderr, result.stderr[-3000:]  # quiet by default
    assert _prefect_servers(tmp_path / "prefect-home") - before == set()  # nothing left running
    env["TORCH_HOME"] = str(tmp_path / "empty-torch-home")
    result = subprocess.run([sys.executable, "-m", "cli", "invert", str(tmp_path / "imgs"), "--store",
                             str(tmp_path / "s2.zarr"), "--generator", generator, "--loss", "lpips-vgg"],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "vgg16-397923af.pth" in result.stderr, result.stderr  # one line


def test_cli_module_imports_nothing_heavy():
    """`ganinv --help` stays fast: commands import torch, prefect and dask only when they run."""
    script = "import sys, cli.app; print(sorted({'torch', 'prefect', 'distributed', 'zarr'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.stdout.strip() == "[]"


def test_a_rerun_with_only_images_and_store_resumes_with_the_stores_settings(prefect_harness, dask_cluster,
                                                                             generator, tmp_path):
    from storage import LatentStore

    write_good_images(tmp_path / "imgs", 2)
    store, cluster = str(tmp_path / "s.zarr"), ["--cluster", dask_cluster[0].scheduler_address]
    first = _invert(str(tmp_path / "imgs"), "--store", store, "--generator", generator, *TINY, "--seed", "7",
                    *cluster)
    assert first.exit_code == 0, first.output
    recorded = LatentStore.open(store).attributes.inversion
    write_good_images(tmp_path / "imgs", 1, start=2)  # a new image arrives
    again = _invert(str(tmp_path / "imgs"), "--store", store, *cluster)  # no generator, steps, loss or seed
    assert again.exit_code == 0, again.output
    assert f"resuming with the settings recorded in {store}" in again.output
    resumed = LatentStore.open(store)
    assert resumed.attributes.inversion == recorded and resumed.status_counts()["done"] == 3
    assert resumed.metrics()["steps"].tolist() == [3.0, 3.0, 3.0]
