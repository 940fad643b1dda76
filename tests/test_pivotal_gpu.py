"""Pivotal tuning on CUDA (run through the device tool: `pytest -m gpu tests/test_pivotal_gpu.py`): the same deltas as
on the CPU to float tolerance, the same alone and in a batch, and stored deltas rendering the reported images."""

import copy

import pytest
import torch

from conftest import make_tiny_generator, tf32_disabled
from ganinv.inversion.pivotal import pack, render, tune, unpack

pytestmark = pytest.mark.gpu
FAST = dict(loss="mse", num_steps=20, learning_rate=1e-2)


@pytest.fixture(scope="module", autouse=True)
def true_fp32():
    with tf32_disabled():  # Adam turns TF32 roundings (kernel choice differs per batch size) into visible differences
        yield


@pytest.fixture(scope="module")
def world():
    G = make_tiny_generator(resolution=32, channel_base=1024, channel_max=32, seed=1)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        pivots = G.mapping(torch.randn([4, G.z_dim], generator=gen), None)
        targets = make_tiny_generator(resolution=32, channel_base=1024, channel_max=32, seed=5)(
            torch.randn([4, G.z_dim], generator=gen), None).clamp(-1, 1)
    return G, targets, pivots


def _close(a, b, tol):
    for name, delta in a.deltas.layers.items():
        for x, y in zip(delta, b.deltas.layers[name]):
            if x is not None:
                torch.testing.assert_close(x.cpu(), y.cpu(), rtol=tol, atol=tol, msg=name)


def test_cuda_tuning_matches_the_cpu_and_is_independent_of_the_batch(world):
    G, targets, pivots = world
    cpu = tune(G, targets, pivots, seed=[1, 2, 3, 4], **FAST)
    Gc = copy.deepcopy(G).cuda()
    cuda = tune(Gc, targets, pivots, seed=[1, 2, 3, 4], **FAST)
    _close(cpu, cuda, 2e-3)
    alone = tune(Gc, targets[3:], pivots[3:], seed=[4], **FAST)
    for name, delta in alone.deltas.layers.items():
        for x, y in zip(delta, cuda.deltas.select([3]).layers[name]):
            if x is not None:
                torch.testing.assert_close(x, y, rtol=2e-3, atol=2e-3, msg=name)


@pytest.mark.parametrize("fused", [False, True])
def test_stored_deltas_render_the_reported_images_on_cuda(world, fused):
    G, targets, pivots = world
    Gc = copy.deepcopy(G).cuda()
    result = tune(Gc, targets, pivots, seed=[1, 2, 3, 4], fused_modconv=fused, **FAST)
    back = unpack(*pack(result.deltas), device="cuda")
    assert torch.equal(render(Gc, result.ws, back, fused_modconv=fused), result.images)
    other = render(Gc, result.ws, back, fused_modconv=not fused)  # the other form: same function, other rounding
    torch.testing.assert_close(other, result.images, rtol=0, atol=1e-4)
