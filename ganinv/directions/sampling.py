"""Latent sampling in batches and attribute-score plumbing shared by InterFaceGAN, GANSpace and edit evaluation.

Nothing here holds more than one batch of latents or images: GANSpace samples 10^6 w and InterFaceGAN 500k images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

# An attribute scorer: images [N, 3, H, W] in [-1, 1] -> scores [N], [N, A] or {attribute: [N]}.
Scorer = Callable[[torch.Tensor], "torch.Tensor | Mapping[str, torch.Tensor]"]


def generator_device(G: torch.nn.Module) -> torch.device:
    return next(G.parameters()).device


@torch.no_grad()
def iter_latents(G: torch.nn.Module, num_samples: int, *, seed: int = 0, batch_size: int = 1000,
                 truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                 progress: Callable[[int], None] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield `(z [B, z_dim], ws [B, num_ws, w_dim])` batches of `num_samples` random latents on G's device;
    `progress(B)` is called once the caller is done with a batch (for a progress bar).

    z comes from `numpy.random.default_rng(seed)`, whose stream does not depend on how it is cut into batches: the
    same seed gives the same latents for every `batch_size`.
    """
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples} and {batch_size}")
    device = generator_device(G)
    rng = np.random.default_rng(seed)
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        z = torch.from_numpy(rng.standard_normal((n, G.z_dim), dtype=np.float32)).to(device)
        c = torch.zeros([n, G.c_dim], device=device)
        ws = G.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                       skip_w_avg_update=True)
        yield z, ws
        if progress is not None:
            progress(n)


def score_dict(scores: torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray],
               attributes: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """A scorer's output as `{attribute: float64 [N]}`, keeping `attributes` (default: all) in that order.

    Dict outputs are selected by name; a tensor `[N]` is named `attributes[0]` (default `score`); a tensor `[N, A]`
    is named by `attributes` (default `attr0`, `attr1`, ...).
    """
    if isinstance(scores, Mapping):
        names = list(scores) if attributes is None else list(attributes)
        missing = [name for name in names if name not in scores]
        if missing:
            raise KeyError(f"scorer has no attribute(s) {missing}; it returns {sorted(scores)}")
        return {name: _as_vector(scores[name], name) for name in names}
    array = _to_numpy(scores)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 1:
        names = ["score"] if attributes is None else list(attributes)
        if len(names) != 1:
            raise ValueError(f"scorer returned one score per image but attributes={names} names {len(names)}")
        return {names[0]: array.astype(np.float64)}
    if array.ndim != 2:
        raise ValueError(f"scorer output must be [N], [N, A] or a dict of [N], got shape {list(array.shape)}")
    names = [f"attr{i}" for i in range(array.shape[1])] if attributes is None else list(attributes)
    if len(names) != array.shape[1]:
        raise ValueError(f"scorer returned {array.shape[1]} scores per image but attributes names {len(names)}")
    return {name: array[:, i].astype(np.float64) for i, name in enumerate(names)}


def concat_scores(chunks: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def _as_vector(value: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    array = _to_numpy(value)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"scorer output {name!r} must be [N] or [N, 1], got shape {list(array.shape)}")
    return array.astype(np.float64)


def _to_numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)
