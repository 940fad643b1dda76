"""A tiny GAN config and images for trainer tests."""

import numpy as np

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
