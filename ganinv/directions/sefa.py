"""SeFa (Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in GANs", CVPR).

A style-based layer first maps w to styles `y = A w + b` (the `affine` layer). Moving w along n changes the styles by
`A n`, so the directions that change them most solve `max_n ||A n||^2` s.t. `||n|| = 1` (eq. 5): the eigenvectors of
`A^T A` with the largest eigenvalues (eq. 6). For several layers, their `A` are stacked along the style axis (Sec. 3.2).

Matches the official code (genforce/sefa `utils.factorize_weight`) in:
- `A` = the affine (style) weights `[in_channels, w_dim]` of the chosen layers concatenated along the channel axis;
- each style channel's weight vector (one row of `affine.weight`, a column of the official `style.weight.T`) is
  normalised to unit length (`weight / np.linalg.norm(weight, axis=0)` on `[w_dim, sum C]`) - which also makes the
  equalized-learning-rate gain irrelevant;
- layer i is the i-th synthesis conv in forward order, which is also the ws entry it reads, so an edit adds the
  direction to `ws[:, layers]`.
Differs in:
- eigenvalues come from `numpy.linalg.eigh` (symmetric) sorted descending; the official code takes `np.linalg.eig`
  in LAPACK's order, unsorted;
- toRGB layers are never included; the official `'all'` for StyleGAN2 also takes the last toRGB's weights (its
  layer index num_ws - 1), here `'all'` = the num_ws - 1 conv layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ganinv.directions.direction import Direction


@dataclass(frozen=True, eq=False)
class SeFaResult:
    """eigenvalues `[K]` descending, directions `[K, w_dim]` unit rows (largest-magnitude entry positive),
    layers: the conv layer (= ws) indices that were factorised."""

    eigenvalues: np.ndarray
    directions: np.ndarray
    layers: tuple[int, ...]


def style_weight(G: torch.nn.Module, layers: str | Sequence[int] = "all") -> tuple[np.ndarray, tuple[int, ...]]:
    """`A`: the chosen conv layers' affine weights stacked, each row unit length: `[sum C, w_dim]` float64."""
    convs = G.synthesis.noise_layers()
    chosen = _parse_layers(layers, len(convs))
    A = np.concatenate([convs[i].affine.weight.detach().cpu().double().numpy() for i in chosen])
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a style channel has an all-zero affine weight: cannot normalise it (is G initialised?)")
    return A / norms, chosen


def factorize(G: torch.nn.Module, layers: str | Sequence[int] = "all") -> SeFaResult:
    """SeFa directions of G's style modulation.

    layers: `'all'` or conv layer indices in forward order (0 = b4.conv1, 1 = b8.conv0, 2 = b8.conv1, ...; toRGB
            excluded), e.g. the paper's coarse `[0, 1]`.
    Returns all K = w_dim eigenpairs of `A^T A`, eigenvalues descending.
    """
    A, chosen = style_weight(G, layers)
    eigenvalues, eigenvectors = np.linalg.eigh(A.T @ A)  # ascending
    order = np.argsort(eigenvalues)[::-1]
    directions = eigenvectors[:, order].T
    peaks = directions[np.arange(len(directions)), np.abs(directions).argmax(axis=1)]
    directions = directions * np.sign(peaks)[:, None]  # fixed sign, so reruns agree
    return SeFaResult(eigenvalues=eigenvalues[order].astype(np.float32), directions=directions.astype(np.float32),
                      layers=chosen)


def discover(G: torch.nn.Module, *, num_directions: int = 5, layers: str | Sequence[int] = "all",
             provenance: Mapping[str, Any] | None = None) -> list[Direction]:
    """The top `num_directions` SeFa directions (official default 5), editing the factorised layers' ws."""
    result = factorize(G, layers)
    if not 1 <= num_directions <= len(result.eigenvalues):
        raise ValueError(f"num_directions must be in [1, {len(result.eigenvalues)}], got {num_directions}")
    base = dict(provenance or {}, source="generator", layers=list(result.layers),
                layers_arg=layers if isinstance(layers, str) else [int(i) for i in layers])
    return [Direction(name=f"sefa-{k}", method="sefa", space="w", vector=result.directions[k], layers=result.layers,
                      provenance=dict(base, index=k, eigenvalue=float(result.eigenvalues[k])))
            for k in range(num_directions)]


def _parse_layers(layers: str | Sequence[int], num_convs: int) -> tuple[int, ...]:
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all' or a list of conv layer indices, got {layers!r}")
        return tuple(range(num_convs))
    chosen = sorted({int(i) for i in layers})
    if not chosen or chosen[0] < 0 or chosen[-1] >= num_convs:
        raise ValueError(f"layers must be a non-empty list of conv layer indices in [0, {num_convs - 1}] "
                         f"(0 = b4.conv1, 1 = b8.conv0, ...), got {list(layers)}")
    return tuple(chosen)
