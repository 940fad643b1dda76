"""FID (Heusel et al. 2017) through a maintained implementation: torchmetrics' `FrechetInceptionDistance`, whose
Inception network is torch-fidelity's port of the TensorFlow FID graph (2048-d pool features).

Nothing is downloaded: torch-fidelity fetches its weights into the torch hub cache on first use, which an offline
machine cannot do, so ganinv looks for that exact file first and gives the file's path to torchmetrics. Put
`weights-inception-2015-12-05-6726825d.pth` (torch-fidelity's release asset of that name) into
`inception_weights_path().parent` (`$TORCH_HOME/hub/checkpoints`, by default `~/.cache/torch/hub/checkpoints`).

FID is biased upward for small sample sizes (Chong & Forsyth 2020): report N beside it and compare values only at
equal N.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from ganinv.errors import UserError

# torch-fidelity's URL_INCEPTION_V3 ends in this name; torch.hub.load_state_dict_from_url saves it under it.
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
FID_FEATURES = 2048


class InceptionWeightsMissing(UserError, FileNotFoundError):
    """FID was asked for, but torch-fidelity or its Inception weights are not on this machine."""


def inception_weights_path() -> Path:
    """Where torch-fidelity's Inception weights are expected: the torch hub checkpoints folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def fid_unavailable_reason() -> str | None:
    """None when FID can be computed offline here, else a sentence saying what to install or put where."""
    if importlib.util.find_spec("torch_fidelity") is None:
        return "torch-fidelity is not installed (pip install torch-fidelity)"
    path = inception_weights_path()
    if not path.is_file():
        return f"Inception weights missing (put {INCEPTION_WEIGHTS_FILE} in {path.parent})"
    return None


@torch.no_grad()
def frechet_inception_distance(real: torch.Tensor, fake: torch.Tensor, *, batch_size: int = 64,
                               device: torch.device | str = "cpu") -> float:
    """FID between `real [N, 3, H, W]` and `fake [M, 3, H, W]`, both uint8 RGB (resized to 299 px inside).

    Raises InceptionWeightsMissing (with what to do) when torch-fidelity or the weights are absent.
    """
    assert real.dtype == fake.dtype == torch.uint8 and real.ndim == fake.ndim == 4, "real, fake: uint8 [N, 3, H, W]"
    reason = fid_unavailable_reason()
    if reason is not None:
        raise InceptionWeightsMissing(f"FID cannot be computed: {reason}")
    from torchmetrics.image.fid import FrechetInceptionDistance

    weights = str(inception_weights_path())
    metric = FrechetInceptionDistance(feature=FID_FEATURES, feature_extractor_weights_path=weights).to(device)
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start:start + batch_size].to(device), real=is_real)
    return float(metric.compute())
