"""SeFa (Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in GANs", CVPR).

A style-based layer first maps w to styles `y = A w + b` (the `affine` layer). Moving w along n changes the styles by
`A n`, so the directions that change them most solve `max_n ||A n||^2` s.t. `||n|| = 1` (eq. 5): the eigenvectors of
`A^T A` with the largest eigenvalues (eq. 6). For several layers, their `A` are stacked along the style axis (Sec. 3.2).

Matches the official code (genforce/sefa `utils.factorize_weight`) in:
- `A` = the affine (style) weights `[in_channels, w_dim]` of the chosen layers concatenated along the channel axis;
- each style channel's weight vector (one row of `affine.weight`, a column of the official `style.weight.T`) is
  normalised to unit length (`weight / np.linalg.norm(weight, axis=0)` on `[w_dim, sum C]`) - which also makes the
  equalized-learning-rate gain irrelevant;
- layers are named by the ws row they read (`G.synthesis.style_layers()`), so an edit adds the direction to
  `ws[:, layers]`; for StyleGAN2, row i is the i-th synthesis conv in forward order.
Differs in:
- eigenvalues come from `numpy.linalg.eigh` (symmetric) sorted descending; the official code takes `np.linalg.eig`
  in LAPACK's order, unsorted;
- toRGB layers are never included; the official `'all'` for StyleGAN2 also takes the last toRGB's weights (its
  layer index num_ws - 1), here `'all'` = the num_ws - 1 conv layers.

StyleGAN3 (the official SeFa code predates it): the style layers are the modulated convolutions `L0 ... L{n-1}`,
ws rows 1 to num_ws - 2. Their `affine` turns w into per-channel modulation exactly as StyleGAN2's do, which is what
SeFa factorises. Left out: the ToRGB layer (as for StyleGAN2) and `input.affine`, which maps w to 4 numbers that are
normalised into a rotation and a translation of the input grid: a geometric transform, not a modulation, whose rows
would count like 4 more style channels.
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
    """`A`: the chosen style layers' affine weights stacked, each row unit length: `[sum C, w_dim]` float64."""
    style_layers = G.synthesis.style_layers()
    chosen = _parse_layers(layers, sorted(style_layers))
    A = np.concatenate([style_layers[i].affine.weight.detach().cpu().double().numpy() for i in chosen])
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a style channel has an all-zero affine weight: cannot normalise it (is G initialised?)")
    return A / norms, chosen


def factorize(G: torch.nn.Module, layers: str | Sequence[int] = "all") -> SeFaResult:
    """SeFa directions of G's style modulation.

    layers: `'all'` or the ws rows of style layers: StyleGAN2 conv layers in forward order (0 = b4.conv1,
            1 = b8.conv0, 2 = b8.conv1, ...; toRGB excluded), e.g. the paper's coarse `[0, 1]`; StyleGAN3 rows 1 to
            num_ws - 2 (layers L0 ...).
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


def _parse_layers(layers: str | Sequence[int], rows: Sequence[int]) -> tuple[int, ...]:
    """The chosen ws rows, from `'all'` or a list of rows that have a style layer (`rows`, ascending)."""
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all' or a list of style layer rows, got {layers!r}")
        return tuple(rows)
    chosen = sorted({int(i) for i in layers})
    if not chosen or not set(chosen) <= set(rows):
        raise ValueError(f"layers must be a non-empty list of the ws rows that have a style layer, in "
                         f"[{rows[0]}, {rows[-1]}] (StyleGAN2: 0 = b4.conv1, 1 = b8.conv0, ...; StyleGAN3: 1 = L0, "
                         f"...), got {list(layers)}")
    return tuple(chosen)
