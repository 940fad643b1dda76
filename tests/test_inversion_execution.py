"""Execution options of the inversion engine (precision, channels_last, compile, cuda_graph): same algorithm, the
guarantees of tests/test_inversion_optimize.py kept (independence, determinism), results within rounding."""

import pytest
import torch

from conftest import SG3_ENGINE_STEPS, make_sg3_engine_world
from ganinv.generators.layers import _demodulation_coefficients, modulated_conv2d
from ganinv.inversion import InversionConfig, build_problem, invert
from ganinv.inversion import optimize
from ganinv.inversion.optimize import W_NOISE_CHUNK, PerImageRandom, _LatentNoise
from ganinv.losses import LPIPSLoss
from ganinv.utils import regional_compile
from ganinv.utils.precision import autocast

FAST = dict(loss="mse", w_avg_samples=500, num_steps=20)


@pytest.fixture(scope="module")
def G(inversion_G):
    return inversion_G


@pytest.fixture(scope="module")
def targets(inversion_targets):
    return inversion_targets


def test_latent_noise_blocks_drawn_ahead_on_a_thread_equal_the_per_image_streams():
    shape, seeds = (2, 5), [3, 40, 7]
    noise = _LatentNoise(PerImageRandom(seeds, torch.device("cpu")), shape, num_blocks=3)
    got = torch.stack([noise.next() for _ in range(3 * W_NOISE_CHUNK)], dim=1)
    noise.close()
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    expected = torch.stack([torch.cat([torch.randn((W_NOISE_CHUNK, *shape), generator=g) for _ in range(3)])
                            for g in gens])
    assert torch.equal(got, expected)
    with pytest.raises(RuntimeError, match="more steps than the schedule"):
        noise.next()


def test_noise_blocks_stop_where_the_latent_noise_ramps_to_zero(G, targets):
    problem = build_problem(G, targets[:1], **{**FAST, "num_steps": 130})
    try:
        assert optimize.noise_steps(problem.config, problem.latent_std) == 98  # t < 0.75 of 130 steps
        problem.run()
        assert problem.latent_noise.remaining == 0 and problem.latent_noise._pending is None  # 2 blocks, no more
    finally:
        problem.close()


@pytest.mark.parametrize("space", ["z", "w", "w+"])
def test_static_input_step_equals_the_eager_step_bitwise_on_cpu(G, targets, space):
    eager = invert(G, targets, space=space, seed=3, **{**FAST, "num_steps": 60})
    static = invert(G, targets, space=space, seed=3, cuda_graph=True, **{**FAST, "num_steps": 60})  # no CUDA here
    assert torch.equal(eager.ws, static.ws) and torch.equal(eager.history, static.history)


def test_stylegan3_static_input_step_equals_the_eager_step_bitwise_on_cpu():
    G, targets = make_sg3_engine_world()
    run = dict(FAST, space="w+", num_steps=SG3_ENGINE_STEPS)
    eager = invert(G, targets, seed=3, **run)
    static = invert(G, targets, seed=3, cuda_graph=True, **run)  # no CUDA here: the static inputs without capture
    assert static.noise is None and torch.equal(eager.ws, static.ws) and torch.equal(eager.history, static.history)


def test_stylegan3_engine_world_is_well_conditioned_over_its_steps(monkeypatch):
    """The GPU checks compare execution paths in this world with tolerances of 1e-2 (ws) and 5e-3 (losses): that
    means something only if last-bit differences stay far below them. Adam's fused kernel (the eager CUDA path's)
    in place of this CPU's loop moves ws by ~5e-7 over SG3_ENGINE_STEPS and by 4.7e-4 over 30 steps, where the
    H100's paths ended 0.03-0.06 apart."""
    G, targets = make_sg3_engine_world()
    run = dict(FAST, space="w+", num_steps=SG3_ENGINE_STEPS)
    reference = invert(G, targets, seed=3, **run)

    def fused_adam(problem):
        return torch.optim.Adam(problem._params(), lr=problem.config.initial_learning_rate, betas=(0.9, 0.999),
                                fused=True)

    monkeypatch.setattr(optimize.InversionProblem, "_make_optimizer", fused_adam)
    rounded = invert(G, targets, seed=3, **run)
    assert not torch.equal(rounded.ws, reference.ws)  # the perturbation is real
    assert (rounded.ws - reference.ws).abs().max() < 1e-5
    assert ((rounded.losses - reference.losses).abs() / reference.losses).max() < 1e-5


def test_channels_last_gives_the_contiguous_result(G, targets):
    contiguous = invert(G, targets, space="w+", seed=3, **FAST)
    nhwc = invert(G, targets, space="w+", seed=3, channels_last=True, **FAST)
    torch.testing.assert_close(nhwc.ws, contiguous.ws, rtol=1e-4, atol=1e-5)
    assert nhwc.images.shape == contiguous.images.shape


@pytest.mark.parametrize("space", ["w", "w+"])
def test_bf16_image_follows_the_same_trajectory_alone_and_in_a_batch(G, targets, space):
    # Kernels may sum in another order for another batch (or buffer alignment); in bf16 that rounding is ~1e-3 and
    # grows over the steps (6e-4 seen after 20 steps), so the bound is bf16's, not fp32's 1e-5. Drawing another
    # image's latent noise instead moves ws by 0.4-0.6 here.
    cfg = dict(FAST, space=space, precision="bf16")
    together = invert(G, targets[:2], seed=[11, 22], **cfg)
    for i in range(2):
        alone = invert(G, targets[i:i + 1], seed=[[11, 22][i]], **cfg)
        torch.testing.assert_close(together.ws[i:i + 1], alone.ws, rtol=0, atol=1e-2)
        torch.testing.assert_close(together.history[:, i:i + 1], alone.history, rtol=1e-2, atol=1e-5)


def test_bf16_is_deterministic_and_close_to_fp32(G, targets):
    first = invert(G, targets, space="w+", seed=3, precision="bf16", **{**FAST, "num_steps": 60})
    second = invert(G, targets, space="w+", seed=3, precision="bf16", **{**FAST, "num_steps": 60})
    fp32 = invert(G, targets, space="w+", seed=3, **{**FAST, "num_steps": 60})
    assert torch.equal(first.ws, second.ws)
    assert (first.ws - fp32.ws).abs().max() > 0  # bf16 did run
    relative = (first.losses - fp32.losses).abs() / fp32.losses
    assert (relative < 0.05).all(), relative


def test_bf16_results_are_evaluated_in_fp32(G, targets):
    result = invert(G, targets, space="w+", seed=3, precision="bf16", **FAST)
    loss = optimize.build_loss("mse")
    with torch.no_grad():
        images = G.synthesis(result.ws, noise=result.noise, force_fp32=True)
    assert result.images.dtype == torch.float32
    torch.testing.assert_close(result.images, images, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.losses, loss(images, loss.prepare(targets)), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("scope", optimize.COMPILE_SCOPES)
def test_compiled_objective_gives_the_eager_result(G, targets, monkeypatch, scope):
    # aot_eager traces exactly what inductor compiles (Dynamo + AOTAutograd, forward and backward) in seconds;
    # inductor itself is exercised on the GPU (test_inversion_gpu.py, benchmarks/perf_inversion.py). fullgraph: each
    # scope's graphs trace whole (a graph break would split them silently: tests/test_regional_compile.py).
    monkeypatch.setattr(optimize, "COMPILE_OPTIONS", dict(dynamic=False, backend="aot_eager", fullgraph=True))
    monkeypatch.setitem(regional_compile.REGION_OPTIONS, "backend", "aot_eager")
    monkeypatch.setitem(regional_compile.REGION_OPTIONS, "fullgraph", True)
    eager = invert(G, targets, space="w+", seed=3, **FAST)
    problem = build_problem(G, targets, InversionConfig(space="w+", compile=True, **FAST), seed=3, compile_scope=scope)
    try:
        compiled = problem.finish(*problem.run())
    finally:
        problem.close()
    torch.testing.assert_close(compiled.ws, eager.ws, rtol=1e-5, atol=1e-6)


def test_config_checks_precision_and_round_trips_the_execution_options():
    with pytest.raises(ValueError, match="precision must be one of"):
        InversionConfig(precision="fp16")
    cfg = InversionConfig(precision="bf16", channels_last=True, compile=True, cuda_graph=True)
    assert InversionConfig.from_dict(cfg.to_dict()) == cfg
    assert InversionConfig.from_dict({k: v for k, v in InversionConfig().to_dict().items()
                                      if k not in ("precision", "channels_last", "compile", "cuda_graph")}) \
        == InversionConfig()  # configs saved before these options existed still load


def test_demodulation_coefficients_factor_through_a_matrix_product():
    gen = torch.Generator().manual_seed(0)
    weight, styles = torch.randn(6, 5, 3, 3, generator=gen), torch.randn(4, 5, generator=gen)
    per_sample = weight.unsqueeze(0) * styles.reshape(4, 1, 5, 1, 1)
    expected = (per_sample.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    torch.testing.assert_close(_demodulation_coefficients(weight, styles), expected, rtol=1e-6, atol=0)


def test_unfused_modulated_conv_under_bf16_autocast_stays_close_to_fp32():
    gen = torch.Generator().manual_seed(0)
    x, weight, styles = torch.randn(3, 8, 8, 8, generator=gen), torch.randn(8, 8, 3, 3, generator=gen), \
        torch.randn(3, 8, generator=gen)
    fp32 = modulated_conv2d(x, weight, styles, padding=1, fused_modconv=False)
    with autocast("bf16", "cpu"):
        bf16 = modulated_conv2d(x, weight, styles, padding=1, fused_modconv=False)
    assert bf16.dtype == torch.bfloat16
    assert ((bf16.float() - fp32).norm() / fp32.norm()) < 1e-2


def test_lpips_distance_under_bf16_autocast_is_fp32_and_close():
    loss = LPIPSLoss("alex", random_trunk=True)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1, torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1
    fp32 = loss(x, loss.prepare(y))
    with autocast("bf16", "cpu"):
        bf16 = loss(x, loss.prepare(y))
        same = loss(y, loss.prepare(y))
    assert bf16.dtype == torch.float32 and (same == 0).all()
    torch.testing.assert_close(bf16, fp32, rtol=2e-2, atol=0)
