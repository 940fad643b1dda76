"""Determinism on CUDA (run through the device tool: `pytest -m gpu tests/test_determinism_gpu.py`). On CUDA the
store records the batch size (runtime/numerics.py): the same images in the recorded batches must give the same bytes
run after run (a shard re-run after a crash writes what the first run would have), and a run asking for another
batch size is refused before any worker starts."""

from __future__ import annotations

import pytest
import torch

from _image_files import write_good_images
from runtime import numerics
from runtime.config import ExecutionOptions
from runtime.coordinator import check_settings, open_store, plan
from runtime.errors import ConfigError
from storage import LatentStore
from storage.scan import scan_images
from test_determinism import SPEC, _run, _same_bytes

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
CUDA = dict(device="cuda", batch_size=4)


def _prepare(images, url: str, generator: str) -> LatentStore:
    """The flow's steps 0-3, then the numerics of this process on CUDA (as the flow's step 4 records them)."""
    scan = scan_images(str(images))
    store, _ = open_store(url, scan.manifest, check_settings(generator, SPEC), chunk_items=4)
    plan(store, scan.manifest)
    numerics.record_for_this_process(store, ExecutionOptions(**CUDA))
    return store


def test_two_runs_on_cuda_in_the_recorded_batches_write_the_same_bytes(tmp_path, tiny_generator_file):
    write_good_images(tmp_path / "imgs", 8)
    first = _prepare(tmp_path / "imgs", str(tmp_path / "first.zarr"), tiny_generator_file)
    second = _prepare(tmp_path / "imgs", str(tmp_path / "second.zarr"), tiny_generator_file)
    _run(first, tiny_generator_file, **CUDA)
    _run(second, tiny_generator_file, **CUDA)
    recorded = LatentStore.open(first.url).attributes.numerics
    assert recorded["device"] == "cuda" and recorded["batching"] == "batch-4" and recorded["threads"] is None
    _same_bytes(first.url, second.url)


def test_a_run_at_another_batch_size_is_refused_on_cuda(tmp_path, tiny_generator_file):
    write_good_images(tmp_path / "imgs", 2)
    store = _prepare(tmp_path / "imgs", str(tmp_path / "s.zarr"), tiny_generator_file)
    with pytest.raises(ConfigError, match="batching"):
        numerics.settle(store, ExecutionOptions(device="cuda", batch_size=2), [numerics.probe("cuda")],
                        local_workers=1)
