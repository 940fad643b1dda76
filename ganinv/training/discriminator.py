"""StyleGAN2's residual discriminator (Karras et al. 2020a, fig. 7b and appendix), for training the embedded model.

From full resolution down to 4x4: a 1x1 fromRGB at the top, then per octave two 3x3 convolutions (the second
downsampling through the [1,3,3,1] filter) plus a 1x1 downsampling skip, summed with gain sqrt(1/2); the 4x4
epilogue adds the minibatch standard deviation feature (Karras et al. 2018) before a conv and two dense layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganinv.generators.layers import Conv2dLayer, FullyConnectedLayer


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, *, img_channels: int,
                 conv_clamp: float | None):
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class MinibatchStdLayer(nn.Module):
    """Appends the std of features across groups of samples as extra channels (mode-collapse signal)."""

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if n % min(self.group_size, n) == 0 else 1
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n/g, f]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Image `[N, C, H, W]` in [-1, 1] -> realness logit `[N, 1]` (unconditional)."""

    def __init__(self, img_resolution: int, img_channels: int = 3, *, channel_base: int = 4096,
                 channel_max: int = 128, conv_clamp: float | None = 256, mbstd_group_size: int = 4):
        super().__init__()
        log2 = int(math.log2(img_resolution))
        assert 2 ** log2 == img_resolution and img_resolution >= 8, "img_resolution must be a power of two >= 8"
        self.init_kwargs = dict(img_resolution=img_resolution, img_channels=img_channels, channel_base=channel_base,
                                channel_max=channel_max, conv_clamp=conv_clamp, mbstd_group_size=mbstd_group_size)
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_channels, channels[res], channels[res // 2],
                                                         img_channels=img_channels, conv_clamp=conv_clamp))
        c4 = channels[4]
        self.mbstd = MinibatchStdLayer(group_size=mbstd_group_size)
        self.conv = Conv2dLayer(c4 + 1, c4, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(c4 * 16, c4, activation="lrelu")
        self.out = FullyConnectedLayer(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1)))
