"""Regional compilation (`ganinv.utils.regional_compile`): one graph per block width, reused across resolutions and
batch sizes; active only inside the inversion objective; the same results as eager. The graph counting uses
dynamo's `aot_eager` backend (the tracing and guards inductor would see, without minutes of C++ compilation on a
CPU); the inductor path is covered on the GPU (tests/test_compile_cache_gpu.py, benchmarks/perf_inversion.py)."""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import clear_compilation_metrics, counters, get_compilation_metrics

from conftest import make_tiny_sg3_generator
from ganinv.generators import layers
from ganinv.generators.stylegan2 import Generator, SynthesisBlock
from ganinv.generators.stylegan3 import SynthesisLayer
from ganinv.inversion import InversionConfig, build_problem
from ganinv.utils import regional_compile
from ganinv.utils.precision import autocast
from ganinv.utils.regional_compile import RegionalCompiler, synthesis_regions

# fullgraph: a graph break inside a region is an error here, not a silent split. On torch 2.11 one did split every
# block into per-layer frames (`next(it) if it else None` in the block's forward): 9 + 4 layer graphs instead of 5
# block graphs for config-f at 256 px, the 295 s compile of BENCHMARKS.md's issue-16 run.
EAGER_BACKEND = dict(backend="aot_eager", fullgraph=True)


def _generator() -> Generator:
    """64 px, widths 32 (4-16 px), 16 (32 px), 8 (64 px): block graphs 4x4, 32->32, 32->16, 16->8."""
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=64, img_channels=3,
                     synthesis_kwargs=dict(channel_base=512, channel_max=32)).eval().requires_grad_(False)


def _synthesize(G: Generator, n: int, seed: int = 0, precision: str = "fp32") -> torch.Tensor:
    """As the engine runs synthesis: per-image noise maps, unfused modulation, channels_last, autocast for bf16."""
    gen = torch.Generator().manual_seed(seed)
    ws = torch.randn(n, G.num_ws, G.w_dim, generator=gen).requires_grad_(True)
    noise = [torch.randn(n, 1, layer.resolution, layer.resolution, generator=gen)
             for layer in G.synthesis.noise_layers()]
    with autocast(precision, "cpu"):
        images = G.synthesis(ws, noise=noise, fused_modconv=False, channels_last=True, force_fp32=True)
    images.square().sum().backward()
    return images.detach(), ws.grad


def _forward_compiles() -> Counter:
    """Frame compiles since the last reset, by code object (name, first line)."""
    return Counter((m.co_name, m.co_firstlineno) for m in get_compilation_metrics()
                   if m.is_forward is not False and not m.is_runtime)


BLOCK_FORWARD = ("forward", SynthesisBlock.forward.__code__.co_firstlineno)


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    clear_compilation_metrics()
    yield
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_graph_per_block_width_serves_every_resolution_and_batch(fresh_dynamo, precision):
    G = _generator()
    regions = RegionalCompiler(synthesis_regions(G.synthesis), **EAGER_BACKEND)
    with layers.resample_impl("composite"):
        reference = [_synthesize(G, n, seed=n, precision=precision) for n in (3, 5)]
        with regions.active():
            compiled = [_synthesize(G, n, seed=n, precision=precision) for n in (3, 5)]
    widths = {(block.is_first, block.in_channels, block.conv1.weight.shape[0]) for block in G.synthesis.blocks()}
    assert len(G.synthesis.blocks()) == 5 and len(widths) == 4
    assert counters["stats"]["unique_graphs"] == len(widths)  # not one per block, not one per batch size
    # ... and each is the whole block: its forward is the only frame compiled (no layer compiled on its own), each
    # traced once (no restart), without graph breaks (fullgraph above).
    assert _forward_compiles() == {BLOCK_FORWARD: len(widths)}
    assert not any(m.restart_reasons for m in get_compilation_metrics())
    for (ref_img, ref_grad), (img, grad) in zip(reference, compiled):
        if precision == "fp32":
            torch.testing.assert_close(img, ref_img, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)
        else:  # bf16 rounding of a differently ordered backward: 0.3 % here, eager bf16 vs fp32 is 2 %
            assert (img - ref_img).norm() <= 1e-3 * ref_img.norm()
            assert (grad - ref_grad).norm() <= 1e-2 * ref_grad.norm()


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
@pytest.mark.parametrize("compile_options", [{}, {"dynamic": False}], ids=["dynamic", "static"])
def test_compiled_inversion_follows_the_eager_trajectory(fresh_dynamo, monkeypatch, compile_options):
    monkeypatch.setitem(regional_compile.REGION_OPTIONS, "backend", "aot_eager")
    monkeypatch.setitem(regional_compile.REGION_OPTIONS, "fullgraph", True)
    G = _generator()
    target = (torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    config = InversionConfig(num_steps=4, loss="mse", w_avg_samples=64, history_every=1)
    results = {}
    for compile in (False, True):
        problem = build_problem(G, target, config, seed=[5, 6, 7, 8], compile=compile, compile_options=compile_options)
        assert (problem.regions is not None) == compile
        history, steps = problem.run()
        results[compile] = problem.finish(history, steps)
        problem.close()
    # The blocks (4 widths; static: one graph per block, 5), the loss and the noise regulariser ran compiled.
    block_graphs = 4 if not compile_options else len(G.synthesis.blocks())
    assert counters["stats"]["unique_graphs"] == block_graphs + 2
    assert _forward_compiles()[BLOCK_FORWARD] == block_graphs
    torch.testing.assert_close(results[True].ws, results[False].ws, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[True].history, results[False].history, rtol=1e-5, atol=1e-6)


LAYER_FORWARD = ("forward", SynthesisLayer.forward.__code__.co_firstlineno)


def _sg3_layer_kinds(G) -> set[tuple]:
    """What a compiled StyleGAN3 layer's graph is specialised on: its weight's shape (widths, kernel), resampling
    factors, padding, filter taps and ToRGB-ness. Spatial sizes and the batch stay symbolic."""
    taps = lambda f: None if f is None else tuple(f.shape)  # noqa: E731
    return {(tuple(layer.weight.shape), layer.up_factor, layer.down_factor, tuple(layer.padding),
             taps(layer.up_filter), taps(layer.down_filter), layer.is_torgb) for layer in G.synthesis.layers()}


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_stylegan3_inversion_compiles_one_graph_per_layer_kind_at_its_first_step(fresh_dynamo, monkeypatch,
                                                                                 precision):
    """As the GPU rows run it (channels_last): every graph in the first step, none in later steps or at another
    batch size. Layers of one kind share a graph whatever their spatial size (L2 20 -> 36 px and L3 36 -> 68 px);
    before the input map became a tensor of its own, the first layer got a graph apart from its twin L1 (dynamo
    guarded on its view's base): the `[0/1]` of the H100 run of 2026-12-07, 11 layer graphs for config T's 10 kinds
    at 256 px."""
    monkeypatch.setitem(regional_compile.REGION_OPTIONS, "backend", "aot_eager")
    monkeypatch.setitem(regional_compile.REGION_OPTIONS, "fullgraph", True)
    G = make_tiny_sg3_generator(resolution=64, z_dim=8, w_dim=8, channel_base=1024, channel_max=32, num_layers=6)
    kinds = _sg3_layer_kinds(G)
    assert len(G.synthesis.layers()) == 7 and len(kinds) == 5  # twins L0 = L1 and L2 ~ L3 (other sizes)
    config = InversionConfig(num_steps=3, loss="mse", w_avg_samples=64, precision=precision, channels_last=True,
                             compile=True)
    graphs = []
    for n in (2, 3):
        target = torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(n)) * 2 - 1
        problem = build_problem(G, target, config, seed=list(range(n)))
        for step in range(config.num_steps):
            problem.step(step)
            graphs.append(counters["stats"]["unique_graphs"])
        problem.close()
    assert graphs == [len(kinds) + 1] * 6  # the layer kinds and the loss, all compiled at the first step
    assert _forward_compiles()[LAYER_FORWARD] == len(kinds)
    assert not any(m.restart_reasons for m in get_compilation_metrics())


def test_unknown_compile_scope_is_refused():
    G = _generator()
    with pytest.raises(ValueError, match="compile_scope"):
        build_problem(G, torch.zeros(1, 3, 64, 64), InversionConfig(num_steps=1, loss="mse", w_avg_samples=8),
                      compile=True, compile_scope="everything")
