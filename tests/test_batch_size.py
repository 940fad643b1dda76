"""auto_batch_size: a line through two probed peaks, extrapolated to the free memory; a fixed default off CUDA."""

import pytest
import torch

from conftest import make_tiny_generator
from ganinv.inversion import auto_batch_size
from ganinv.inversion.batch_size import fit_batch_size

GIB = 2 ** 30


def test_batch_fills_the_available_memory_along_the_probed_line():
    peaks = {4: 1 * GIB + 4 * GIB // 2, 8: 1 * GIB + 8 * GIB // 2}  # 1 GiB fixed + 0.5 GiB per image
    assert fit_batch_size(peaks, 60 * GIB, max_batch=1000, multiple_of=1) == 118
    assert fit_batch_size(peaks, 60 * GIB, max_batch=1000) == 112  # rounded down to a multiple of 8
    assert fit_batch_size(peaks, 60 * GIB, max_batch=64) == 64


def test_batch_is_at_least_one_and_unbounded_growth_means_max_batch():
    assert fit_batch_size({1: 10 * GIB, 2: 20 * GIB}, 5 * GIB, max_batch=64) == 1
    assert fit_batch_size({4: GIB, 8: GIB}, 5 * GIB, max_batch=64) == 64


def test_a_predicted_batch_that_runs_out_of_memory_shrinks_by_quarters_until_it_fits(monkeypatch):
    from ganinv.inversion import batch_size

    tried = []

    def probe(G, config, loss_fn, batch):
        tried.append(batch)
        if batch > 100:
            raise torch.cuda.OutOfMemoryError(f"batch {batch} does not fit")
        return batch

    monkeypatch.setattr(batch_size, "_probe_peak", probe)
    assert batch_size._largest_that_runs(None, None, None, 256, floor=8) == 81
    assert tried == [256, 192, 144, 108, 81]
    tried.clear()
    assert batch_size._largest_that_runs(None, None, None, 8, floor=8) == 8 and tried == []  # the floor already ran


def test_off_cuda_the_default_is_used_within_max_batch():
    G = make_tiny_generator()
    assert auto_batch_size(G, loss="mse") == 16
    assert auto_batch_size(G, loss="mse", cpu_default=32, max_batch=8) == 8


@pytest.mark.gpu
def test_auto_batch_size_predicts_a_batch_that_fits():
    import torch
    from ganinv.inversion import invert

    G = make_tiny_generator(resolution=64, channel_base=2048, channel_max=64).cuda()
    batch = auto_batch_size(G, loss="mse", max_batch=4096, memory_fraction=0.05, w_avg_samples=500)
    total = torch.cuda.get_device_properties(0).total_memory
    target = torch.rand(batch, 3, 64, 64, device="cuda") * 2 - 1
    torch.cuda.reset_peak_memory_stats()
    invert(G, target, loss="mse", num_steps=3, w_avg_samples=500)
    assert 8 <= batch and torch.cuda.max_memory_allocated() < 0.1 * total
