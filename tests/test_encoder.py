"""The pSp/e4e-style encoder and its trainer on a tiny generator."""

import numpy as np
import torch

import pytest

from conftest import FAMILIES, make_tiny_family_generator
from ganinv.models.encoder import Encoder, load_encoder, save_encoder
from ganinv.training.train_encoder import EncoderTrainConfig, EncoderTrainer


def test_encoder_maps_images_to_ws_of_the_generator():
    E = Encoder(img_resolution=32, num_ws=8, w_dim=24, channels=(16, 16, 32, 32), style_channels=16)
    assert E(torch.randn(2, 3, 32, 32)).shape == (2, 8, 24)
    # ws read the pyramid level matching their synthesis resolution: coarse ws from the coarsest level.
    assert E.level_resolutions[E.level_of_w[0]] == 4 and E.level_resolutions[E.level_of_w[-1]] == 16


def test_encoder_reads_levels_by_the_resolution_each_w_controls():
    # StyleGAN3's rows do not follow StyleGAN2's rule: the encoder takes them from the generator.
    G = make_tiny_family_generator("stylegan3")
    E = Encoder(img_resolution=16, num_ws=G.num_ws, w_dim=16, channels=(16, 16, 16), style_channels=16,
                ws_resolutions=G.ws_resolutions)
    assert E.init_kwargs["ws_resolutions"] == G.ws_resolutions
    assert [E.level_resolutions[level] for level in E.level_of_w] == [max(min(r, 8), 2) for r in G.ws_resolutions]
    assert E(torch.randn(2, 3, 16, 16)).shape == (2, G.num_ws, 16)


def test_untrained_encoder_starts_near_w_avg():
    E = Encoder(img_resolution=16, num_ws=6, w_dim=16, channels=(16, 16), style_channels=16)
    E.w_avg.fill_(3.0)
    ws = E(torch.randn(4, 3, 16, 16))
    assert (ws - 3.0).abs().mean() < 3.0


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_training_lowers_latent_error_and_roundtrips(tmp_path, family):
    G = make_tiny_family_generator(family)
    images = np.random.default_rng(0).integers(0, 255, [32, 16, 16, 3], dtype=np.uint8)
    cfg = EncoderTrainConfig(batch_size=8, lr=1e-2, total_steps=60, channels=(16, 32), style_channels=16,
                             mixed_precision=False, perceptual="none", real_fraction=0.25,
                             data="given")
    trainer = EncoderTrainer(cfg, G, tmp_path, device="cpu", images=images)
    torch.manual_seed(123)
    held_img, held_ws = trainer.generated_batch(64)

    def latent_error() -> float:
        with torch.no_grad():
            return float((trainer.E(held_img) - held_ws).square().mean() / trainer.w_var)

    before = latent_error()
    for _ in range(60):
        trainer.train_step()
    assert latent_error() < 0.8 * before
    save_encoder(trainer.E, tmp_path / "e.safetensors")
    E = load_encoder(tmp_path / "e.safetensors")
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(E(x), trainer.E.eval()(x))


def test_missing_builtin_encoder_says_where_it_belongs(tmp_path):
    try:
        load_encoder(tmp_path / "nope.safetensors")
    except FileNotFoundError as err:
        assert "nope.safetensors" in str(err)
    else:
        raise AssertionError("expected FileNotFoundError")
