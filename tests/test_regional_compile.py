"""Regional compilation (`ganinv.utils.regional_compile`): one graph per block width, reused across resolutions and
batch sizes; active only inside the inversion objective; the same results as eager. The graph counting uses
dynamo's `aot_eager` backend (the tracing and guards inductor would see, without minutes of C++ compilation on a
CPU); the inductor path is covered on the GPU (tests/test_compile_cache_gpu.py, benchmarks/perf_inversion.py)."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from ganinv.generators import layers
from ganinv.generators.stylegan2 import Generator
from ganinv.inversion import InversionConfig, build_problem
from ganinv.utils import regional_compile
from ganinv.utils.regional_compile import RegionalCompiler, synthesis_regions

EAGER_BACKEND = dict(backend="aot_eager")


def _generator() -> Generator:
    """64 px, widths 32 (4-16 px), 16 (32 px), 8 (64 px): block graphs 4x4, 32->32, 32->16, 16->8."""
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=64, img_channels=3,
                     synthesis_kwargs=dict(channel_base=512, channel_max=32)).eval().requires_grad_(False)


def _synthesize(G: Generator, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ws = torch.randn(n, G.num_ws, G.w_dim, generator=gen).requires_grad_(True)
    noise = [torch.randn(n, 1, layer.resolution, layer.resolution, generator=gen)
             for layer in G.synthesis.noise_layers()]
    images = G.synthesis(ws, noise=noise, fused_modconv=False, channels_last=True)
    images.square().sum().backward()
    return images.detach(), ws.grad


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.slow
def test_one_graph_per_block_width_serves_every_resolution_and_batch(fresh_dynamo):
    G = _generator()
    regions = RegionalCompiler(synthesis_regions(G.synthesis), **EAGER_BACKEND)
    with layers.resample_impl("composite"):
        reference = [_synthesize(G, n, seed=n) for n in (3, 5)]
        with regions.active():
            compiled = [_synthesize(G, n, seed=n) for n in (3, 5)]
    widths = {(block.is_first, block.in_channels, block.conv1.weight.shape[0]) for block in G.synthesis.blocks()}
    assert len(G.synthesis.blocks()) == 5 and len(widths) == 4
    assert counters["stats"]["unique_graphs"] == len(widths)  # not one per block, not one per batch size
    for (ref_img, ref_grad), (img, grad) in zip(reference, compiled):
        torch.testing.assert_close(img, ref_img, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)


def test_compiled_forwards_are_switched_on_only_inside_active(fresh_dynamo):
    G = _generator()
    regions = RegionalCompiler(synthesis_regions(G.synthesis), **EAGER_BACKEND)
    with regions.active():
        assert all("forward" in vars(block) for block in G.synthesis.blocks())
    assert not any("forward" in vars(block) for block in G.synthesis.blocks())
    with torch.no_grad():
        G.synthesis(torch.zeros(2, G.num_ws, G.w_dim))  # eager outside: nothing compiles
    assert counters["stats"]["unique_graphs"] == 0


@pytest.mark.slow
def test_compiled_inversion_follows_the_eager_trajectory(fresh_dynamo, monkeypatch):
    monkeypatch.setitem(regional_compile.REGION_OPTIONS, "backend", "aot_eager")
    G = _generator()
    target = (torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    config = InversionConfig(num_steps=4, loss="mse", w_avg_samples=64, history_every=1)
    results = {}
    for compile in (False, True):
        problem = build_problem(G, target, config, seed=[5, 6, 7, 8], compile=compile)
        assert (problem.regions is not None) == compile
        history, steps = problem.run()
        results[compile] = problem.finish(history, steps)
        problem.close()
    assert counters["stats"]["unique_graphs"] >= 4  # the blocks, the loss and the noise regulariser ran compiled
    torch.testing.assert_close(results[True].ws, results[False].ws, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[True].history, results[False].history, rtol=1e-5, atol=1e-6)


def test_unknown_compile_scope_is_refused():
    G = _generator()
    with pytest.raises(ValueError, match="compile_scope"):
        build_problem(G, torch.zeros(1, 3, 64, 64), InversionConfig(num_steps=1, loss="mse", w_avg_samples=8),
                      compile=True, compile_scope="everything")
