"""The compile cache on the GPU: a second worker process reads what the first compiled (inductor FX graph cache
hits, no misses) and follows the same trajectory. Run by the lead: `python3 -m pytest -q -p no:cacheprovider -m gpu
tests/test_compile_cache_gpu.py` (~2 min: one cold compile of a tiny generator, one warm start)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.startup_timeline import run_child

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_a_second_worker_process_starts_from_the_cache_the_first_filled(tmp_path):
    cache = str(tmp_path / "compile-cache")
    cold = run_child(32, 8, cache, tiny=True, device="cuda", steps=2, timeout=600)
    warm = run_child(32, 8, cache, tiny=True, device="cuda", steps=2, timeout=600)
    assert "error" not in cold and "error" not in warm, (cold, warm)
    assert cold["inductor_cache"].get("fxgraph_cache_miss", 0) > 0  # it compiled, into the cache
    assert warm["inductor_cache"].get("fxgraph_cache_miss", 0) == 0, warm["inductor_cache"]
    assert warm["inductor_cache"].get("fxgraph_cache_hit", 0) >= cold["inductor_cache"]["fxgraph_cache_miss"]
    torch.testing.assert_close(torch.tensor(warm["latent"]), torch.tensor(cold["latent"]), rtol=1e-4, atol=1e-4)
