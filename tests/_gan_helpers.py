"""A tiny GAN config, images and a stand-in attribute classifier for trainer tests."""

import numpy as np
import torch

from ganinv.training.train_gan import GANTrainConfig

TINY = GANTrainConfig(data="unused", resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128,
                      channel_max=16, d_channel_base=128, d_channel_max=16, batch_size=8, r1_interval=2,
                      pl_interval=2, mixed_precision=False)


def blob_images(n: int = 64, size: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros([n, size, size, 3], np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(4, size - 4, 2)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < 9
        images[i][disk] = rng.integers(0, 255, 3)
    return images


class RegionClassifier(torch.nn.Module):
    """A stand-in attribute classifier for the linear-attribute regulariser: fixed logits of the mean colour of image
    regions (pixels clamped to [-1, 1], so a G cannot win by overshooting), differentiable in the image.

    smile: red of the left half; blond: green of the top half; glasses: blue of the bottom half and half as much of
    blond's green (entangled: glasses reads blond's region); tone (continuous): red of the right half."""

    attribute_names = ["smile", "blond", "glasses", "tone"]
    attribute_kinds = ["binary", "binary", "binary", "continuous"]

    def __init__(self, size: int = 16, sharpness: float = 6.0):
        super().__init__()
        half = size // 2
        masks = torch.zeros(4, 3, size, size)
        masks[0, 0, :, :half] = 1
        masks[1, 1, :half, :] = 1
        masks[2, 2, half:, :] = 1
        masks[2, 1, :half, :] = 0.5
        masks[3, 0, :, half:] = 1
        self.register_buffer("masks", masks / (masks > 0).sum((1, 2, 3), keepdim=True))
        self.register_buffer("scale", torch.tensor([sharpness] * 3 + [1.0]))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,achw->na", img.float().clamp(-1, 1), self.masks) * self.scale


def region_images(n: int = 256, size: int = 16, seed: int = 0) -> np.ndarray:
    """uint8 images whose attributes (as `RegionClassifier` reads them) are drawn independently, except glasses,
    which depends on blond (90 % with, 10 % without), as eyeglasses on blond hair in the embedded world."""
    rng = np.random.default_rng(seed)
    half = size // 2
    smile, blond = rng.random(n) < 0.5, rng.random(n) < 0.5
    glasses = rng.random(n) < np.where(blond, 0.9, 0.1)
    tone = rng.uniform(-0.6, 0.6, n)
    img = np.zeros([n, size, size, 3], np.float32)
    img[:, :, :half, 0] = np.where(smile, 0.5, -0.5)[:, None, None]
    img[:, :, half:, 0] = tone[:, None, None]
    img[:, :half, :, 1] = np.where(blond, 0.5, -0.5)[:, None, None]
    img[:, half:, :, 2] = np.where(glasses, 0.5, -0.5)[:, None, None]
    img += rng.normal(0, 0.1, img.shape)
    return np.clip((img + 1) * 127.5, 0, 255).astype(np.uint8)


# Every part of the linear-attribute regulariser on, with RegionClassifier (tests of the plumbing, not of effects).
REGULARISED = dict(classifier="regions", attr_interval=2, probe_warmup=2, linearity_weight=1.0, probe_orthogonality=1.0,
                   joint_weight=1.0, edit_weight=1.0, edit_conditional=0.5, correlated_pairs=(("glasses", "blond"),))
