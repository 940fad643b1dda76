"""Encoder training on CUDA (run through the device tool: `pytest -m gpu tests/test_encoder_training_gpu.py`): bf16
chunks resume where the uninterrupted run is, the embedded world's sized encoder trains at speed and checkpoints
compactly, and refinement continues a CUDA inversion."""

import dataclasses

import numpy as np
import pytest
import torch

from conftest import make_tiny_generator, tf32_disabled
from ganinv.inversion import InversionConfig, continued_config, invert, refine
from ganinv.training.checkpoint import checkpoint_bytes
from ganinv.training.train_encoder import EncoderTrainConfig, EncoderTrainer

pytestmark = pytest.mark.gpu
SMALL = EncoderTrainConfig(batch_size=8, total_steps=8, checkpoint_every=4, channels=(16, 32), style_channels=16,
                           perceptual="none", data="given images")


def test_cuda_chunks_follow_the_uninterrupted_run(tmp_path):
    """Bitwise on the CPU; on CUDA the kernels' nondeterminism (atomics in convolution backward) is all that
    separates a resumed bf16 run from the uninterrupted one."""
    G = make_tiny_generator(resolution=16)
    images = np.random.default_rng(0).integers(0, 255, [16, 16, 16, 3], dtype=np.uint8)
    with tf32_disabled():
        whole = EncoderTrainer(SMALL, G, tmp_path / "whole", device="cuda", images=images)
        whole.train()
        for stop in (4, 8):
            chunk = EncoderTrainer(SMALL, G, tmp_path / "chunks", device="cuda", images=images)
            chunk.train(stop_at=stop)
    for key, value in whole.E.state_dict().items():
        torch.testing.assert_close(chunk.E.state_dict()[key], value, rtol=2e-2, atol=2e-3, msg=key)


def test_the_embedded_world_encoder_trains_one_interval_on_cuda(tmp_path):
    from ganinv.generators import load_generator

    config = EncoderTrainConfig(total_steps=100, checkpoint_every=100, perceptual="clf-perceptual",
                                data="procedural:512:2")
    trainer = EncoderTrainer(config, load_generator("faces64"), tmp_path, device="cuda")
    first = trainer.train_step()
    trainer.train()
    last = trainer.train_step()
    assert trainer.step == 101 and float(last["loss"]) < float(first["loss"])
    assert checkpoint_bytes(tmp_path / "checkpoint") <= 25e6


def test_refinement_continues_a_cuda_inversion(tmp_path):
    G = make_tiny_generator(resolution=32, channel_base=1024, channel_max=32, seed=1).cuda()
    with torch.no_grad():
        targets = G(torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(7)).cuda(), None).clamp(-1, 1)
    config = InversionConfig(space="w+", num_steps=20, loss="mse", w_avg_samples=500, optimize_noise=False)
    first = invert(G, targets, config, seed=[1, 2, 3, 4])
    refined = refine(G, targets, first.ws, config, more_steps=20, seed=[1, 2, 3, 4])
    one_go = invert(G, targets, continued_config(config, 20), seed=[1, 2, 3, 4])
    assert refined.metrics["psnr"].mean() >= 0.99 * one_go.metrics["psnr"].mean()
    assert dataclasses.asdict(refined.config) == dataclasses.asdict(one_go.config)
