"""The wired stages on CUDA (run through the device tool: `pytest -m gpu tests/test_wiring_gpu.py`): a refined shard
written by a CUDA worker re-renders its stored reconstructions from the stored deltas on the same device, a
restoration shard inverts observations decoded at the reduced size and scores them against the clean images, and a
store's codes refined by a CUDA worker (`ganinv refine`) match the CPU's."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from _flow_helpers import FAST, prepare_store
from _image_files import write_good_images
from conftest import tf32_disabled
from runtime import models
from runtime.config import ExecutionOptions, InvertConfig, RestoreConfig
from runtime.item_images import item_images
from runtime.shard import run_shard
from storage import LatentStore

pytestmark = pytest.mark.gpu
CUDA = ExecutionOptions(device="cuda")


@pytest.fixture(scope="module", autouse=True)
def true_fp32():
    with tf32_disabled():
        yield


def test_cuda_refined_shard_re_renders_its_stored_reconstructions(tiny_generator_file, tmp_path):
    write_good_images(tmp_path / "imgs", 6)
    config = InvertConfig(inversion=FAST, refine={"num_steps": 5, "loss": "mse"}, thumbnail_size=16)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", tiny_generator_file, config, chunk_items=8)
    report = run_shard(store.url, 0, generator=tiny_generator_file, execution=CUDA)
    assert report.done == 6 and report.device.startswith("cuda")
    store = LatentStore.open(store.url)
    G = models.generator(tiny_generator_file, "cuda")
    images = item_images(store, np.arange(6), G)
    rendered = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(rendered.astype(int) - store.thumbnails()).max() <= 1
    assert (store.metrics()["psnr"] > store.metrics()["pivot_psnr"]).mean() >= 0.5


def test_cuda_super_resolution_shard_scores_against_the_clean_images(tiny_generator_file, tmp_path):
    from PIL import Image

    write_good_images(tmp_path / "clean", 4)
    (tmp_path / "small").mkdir()
    for path in sorted((tmp_path / "clean").glob("*.png")):
        Image.open(path).resize((8, 8), Image.Resampling.BOX).save(tmp_path / "small" / path.name)
    config = RestoreConfig(task="super-resolution", factor=2, clean=str(tmp_path / "clean")).invert_config(
        InvertConfig(inversion=FAST))
    store = prepare_store(tmp_path / "small", tmp_path / "sr.zarr", tiny_generator_file, config)
    assert run_shard(store.url, 0, generator=tiny_generator_file, execution=CUDA).done == 4
    metrics = LatentStore.open(store.url).metrics()
    assert np.isfinite(metrics["restored_psnr"]).all() and np.isfinite(metrics["baseline_psnr"]).all()


def test_cuda_refinement_of_a_store_matches_the_cpu(tiny_generator_file, tmp_path):
    from runtime.config import RefineStoreConfig
    from runtime.refine_store import check, plan, run_refine_shard, summarize

    write_good_images(tmp_path / "imgs", 6)
    config = InvertConfig(inversion=FAST, thumbnail_size=16)
    store = prepare_store(tmp_path / "imgs", tmp_path / "cpu.zarr", tiny_generator_file, config, chunk_items=8)
    run_shard(store.url, 0, generator=tiny_generator_file, execution=ExecutionOptions(device="cpu"))
    shutil.copytree(tmp_path / "cpu.zarr", tmp_path / "cuda.zarr")
    for name, device in (("cpu", "cpu"), ("cuda", "cuda")):
        url = str(tmp_path / f"{name}.zarr")
        settings = check(url, RefineStoreConfig(steps=6))
        planned = plan(LatentStore.open(url, "r+"), settings)
        report = run_refine_shard(url, 0, generator=tiny_generator_file, name=planned.name,
                                  execution=ExecutionOptions(device=device))
        assert report.done == 6 and report.device.startswith(device)
        assert summarize(LatentStore.open(url, "r+"), settings, [report]).complete
    cpu, cuda = LatentStore.open(str(tmp_path / "cpu.zarr")), LatentStore.open(str(tmp_path / "cuda.zarr"))
    assert (cuda.metrics(["steps"])["steps"] == 10).all()
    np.testing.assert_allclose(cuda.ws(), cpu.ws(), atol=1e-3)
    np.testing.assert_allclose(cuda.metrics(["psnr"])["psnr"], cpu.metrics(["psnr"])["psnr"], atol=0.05)
