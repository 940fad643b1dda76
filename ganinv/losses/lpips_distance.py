"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric") through the
`lpips` package, with the target's features computed once per inversion.

The `lpips` package ships only its calibrated linear layers; the VGG16 / AlexNet trunks are torchvision's ImageNet
weights, which torchvision would download on first use. ganinv never downloads at run time: before building the
network we look for the exact file torchvision expects in `$TORCH_HOME/hub/checkpoints` and raise
`PerceptualWeightsMissing` (naming the file, the folder and the offline alternative) when it is not there.

As in the StyleGAN2-ADA projector, images larger than 256 px are area-downsampled to 256 px before the trunk.

Under bf16 autocast the trunk's convolutions run in bf16 and the normalised features of both images are kept in
bf16 (the target's, prepared once, take half the memory); the feature normalisation and the distance (the
calibrated per-channel weights applied to spatially averaged squared differences) are computed in fp32.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganinv.utils.precision import full_precision
from ganinv.errors import UserError

LPIPS_NETS = ("vgg", "alex")
MAX_RESOLUTION = 256


class PerceptualWeightsMissing(UserError, FileNotFoundError):
    """The ImageNet trunk weights LPIPS needs are not on disk (and ganinv will not download them)."""


# torchvision's `VGG16_Weights.IMAGENET1K_V1.url` and `AlexNet_Weights.IMAGENET1K_V1.url` (tests/test_losses.py checks
# they still are), spelt out: asking whether a trunk is on disk (the flow's settings check, refine-store, the metrics'
# `available_lpips`, the encoder's default loss) imported torchvision.models for two strings, ~1.3 s of CPU. Building
# the network still imports torchvision (lpips' pretrained_networks does, for the trunk's layers).
TRUNK_URLS = {"vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
              "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"}


def _trunk_url(net: str) -> str:
    return TRUNK_URLS[net]


def trunk_weights_path(net: str) -> Path:
    """Where torchvision looks for the ImageNet trunk of `net`: `$TORCH_HOME/hub/checkpoints/<file>`."""
    if net not in LPIPS_NETS:
        raise ValueError(f"LPIPS net must be one of {LPIPS_NETS}, got {net!r}")
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(_trunk_url(net))


def require_trunk_weights(net: str) -> Path:
    """Return the trunk file's path, or raise `PerceptualWeightsMissing` saying what to put where."""
    path = trunk_weights_path(net)
    if not path.is_file():
        raise PerceptualWeightsMissing(
            f"loss 'lpips-{net}' needs torchvision's ImageNet weights file {path.name!r} in {path.parent} "
            f"($TORCH_HOME/hub/checkpoints; TORCH_HOME is {os.environ.get('TORCH_HOME', 'unset')}). ganinv downloads "
            f"nothing at run time: on a machine with network, fetch {_trunk_url(net)} and copy it to {path}, or set "
            f"TORCH_HOME to a folder whose hub/checkpoints holds it. Offline alternative: --loss clf-perceptual "
            f"(a perceptual distance on the embedded world's attribute classifier features).")
    return path


def area_downsample(images: torch.Tensor, max_resolution: int = MAX_RESOLUTION) -> torch.Tensor:
    """Area-average `[N, C, H, W]` down to `max_resolution` when larger, as the projector does before VGG."""
    if images.shape[2] <= max_resolution:
        return images
    return F.interpolate(images, size=(max_resolution, max_resolution), mode="area")


class LPIPSLoss(nn.Module):
    """LPIPS distance per image: `[N, 3, H, W]` pairs in [-1, 1] -> `[N]` (equal to `lpips.LPIPS(net)(x, y)`).

    `random_trunk=True` builds the same network with a randomly initialised trunk (nothing is read or fetched):
    it has LPIPS's shape and cost but is *not* LPIPS, so it is named `<net>-random-trunk`; use it for timing only.
    """

    def __init__(self, net: str = "vgg", *, random_trunk: bool = False):
        super().__init__()
        if net not in LPIPS_NETS:
            raise ValueError(f"LPIPS net must be one of {LPIPS_NETS}, got {net!r}")
        if not random_trunk:
            require_trunk_weights(net)
        import lpips

        self._normalize = lpips.normalize_tensor
        with warnings.catch_warnings():  # torchvision's deprecation notice for the `pretrained` flag lpips passes
            warnings.simplefilter("ignore", UserWarning)
            self.lpips = lpips.LPIPS(net=net, pretrained=True, pnet_rand=random_trunk, verbose=False)
        self.lpips.eval().requires_grad_(False)
        # Each calibrated layer is a bias-free 1x1 conv to one channel: keep its weights as a [C] vector.
        for lin in self.lpips.lins:
            assert isinstance(lin.model[-1], nn.Conv2d) and lin.model[-1].bias is None
        self.net = net
        self.name = f"{net}-random-trunk" if random_trunk else f"lpips-{net}"

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's five unit-normalised feature maps `[N, C_l, H_l, W_l]`, normalised in fp32 and returned in
        the trunk's own precision (fp32, or bf16 under autocast)."""
        assert images.ndim == 4 and images.shape[1] == 3, f"LPIPS takes [N, 3, H, W] images, got {list(images.shape)}"
        h = self.lpips.scaling_layer(area_downsample(images))
        outs = []
        for k in range(1, self.lpips.net.N_slices + 1):  # the trunk's own forward, minus its namedtuple per call
            h = getattr(self.lpips.net, f"slice{k}")(h)
            outs.append(h)
        with full_precision(images):
            feats = [self._normalize(out.float()) for out in outs]
        return [f.to(out.dtype) for f, out in zip(feats, outs)]

    @torch.no_grad()
    def prepare(self, target: torch.Tensor) -> list[torch.Tensor]:
        # In the trunk's precision: under bf16 autocast half the memory per image (256 px: 16 MB instead of 32, held
        # for the whole inversion). The synthesised features are rounded the same way, so identical images are at
        # distance 0; the distance itself is taken in fp32.
        return self._features(target)

    def forward(self, synth: torch.Tensor, prepared: list[torch.Tensor]) -> torch.Tensor:
        feats = self._features(synth)
        with full_precision(synth):
            dist = torch.zeros(synth.shape[0], device=synth.device, dtype=torch.float32)
            for lin, feat, target_feat in zip(self.lpips.lins, feats, prepared):
                # mean over space of the 1x1 conv == the conv's weights applied to the spatial means (one pass)
                weight = lin.model[-1].weight.reshape(-1).float()
                diff = feat.float() - target_feat.float()
                dist = dist + (diff.square().mean(dim=(2, 3)) * weight).sum(dim=1)
            return dist
