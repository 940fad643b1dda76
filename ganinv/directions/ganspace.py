"""GANSpace (Härkönen et al. 2020, "GANSpace: Discovering Interpretable GAN Controls", NeurIPS).

For StyleGAN the principal components of W itself are the controls (Sec. 2.2): sample many w = mapping(z) (10^6 in
the paper), run PCA, and edit `w' = w + sigma * stdev_k * v_k`, applied to a range of ws entries only ("E(v_k, j-l)",
Sec. 3) to separate e.g. head pose (coarse layers) from lighting (fine layers). As in the official code, the
incremental estimator (scikit-learn `IncrementalPCA`) makes the sample count independent of memory, and a component's
stdev is `sqrt(explained_variance)`.

`pca` also runs on the inverted corpus (an `[N, D]` array or iterable of batches), e.g. one layer of the W+ codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA, IncrementalPCA

from ganinv.directions.direction import Direction
from ganinv.directions.sampling import iter_latents

METHODS = ("incremental", "full")
# GANSpace fits IncrementalPCA on chunks of max(2000, 3 * n_components) samples ("as large as possible").
MIN_CHUNK = 2000


@dataclass(frozen=True, eq=False)
class PCAResult:
    """components `[K, D]` unit rows by decreasing variance (sign: largest-magnitude entry positive), stdev `[K]`,
    mean `[D]`, explained_variance_ratio `[K]`, and the number of samples seen."""

    components: np.ndarray
    stdev: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray
    num_samples: int


def pca(latents: np.ndarray | torch.Tensor | Iterable[np.ndarray | torch.Tensor], n_components: int, *,
        method: str = "incremental", chunk_size: int | None = None) -> PCAResult:
    """Principal components of latent codes.

    latents:    `[N, D]` array/tensor, or (`method='incremental'` only) an iterable of `[B, D]` batches of any sizes,
                which are regrouped into chunks of `chunk_size` (default max(2000, 3 * n_components)) and never
                all held at once.
    method:     `incremental` (`IncrementalPCA`, memory O(chunk)) or `full` (`PCA(svd_solver='full')`, in memory).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    chunk_size = chunk_size or max(MIN_CHUNK, 3 * n_components)
    if chunk_size < n_components:
        raise ValueError(f"chunk_size ({chunk_size}) must be >= n_components ({n_components})")
    if isinstance(latents, (np.ndarray, torch.Tensor)):
        array = _as_2d(latents)
        if method == "full":
            return _result(PCA(n_components, svd_solver="full").fit(_check_enough(array, n_components)))
        batches: Iterable[np.ndarray] = (array[i:i + chunk_size] for i in range(0, len(array), chunk_size))
    elif method == "full":
        raise ValueError("method='full' needs the latents as one [N, D] array; use method='incremental' for batches")
    else:
        batches = (_as_2d(batch) for batch in latents)
    estimator = IncrementalPCA(n_components)
    for chunk in _rechunk(batches, chunk_size):
        estimator.partial_fit(_check_enough(chunk, n_components))
    if not hasattr(estimator, "components_"):
        raise ValueError("latents is empty")
    return _result(estimator)


@torch.no_grad()
def sample_w(G: torch.nn.Module, num_samples: int, *, seed: int = 0, batch_size: int = 2000,
             truncation_psi: float = 1.0, progress: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """Yield `[B, w_dim]` float32 batches of w = mapping(z), never holding more than one batch (`progress(B)` once
    the caller is done with one)."""
    for _, ws in iter_latents(G, num_samples, seed=seed, batch_size=batch_size, truncation_psi=truncation_psi,
                              progress=progress):
        yield ws[:, 0].to("cpu", torch.float32).numpy()


def directions_from_pca(result: PCAResult, *, space: str = "w", layers: Sequence[int] | None = None,
                        source: str = "samples", provenance: Mapping[str, Any] | None = None,
                        name_prefix: str = "ganspace") -> list[Direction]:
    """One `Direction` per component: unit vector, `scale` = its stdev (strengths in sigmas), edits on `layers`."""
    base = dict(provenance or {}, source=source, num_samples=int(result.num_samples),
                layers=None if layers is None else [int(i) for i in layers])
    return [Direction(name=f"{name_prefix}-{k}", method="ganspace", space=space, vector=component,
                      layers=None if layers is None else tuple(layers), scale=float(result.stdev[k]),
                      provenance=dict(base, component=k, stdev=float(result.stdev[k]),
                                      explained_variance_ratio=float(result.explained_variance_ratio[k])))
            for k, component in enumerate(result.components)]


def discover(G: torch.nn.Module, *, num_directions: int = 80, num_samples: int = 1_000_000, seed: int = 0,
             batch_size: int = 2000, truncation_psi: float = 1.0, layers: Sequence[int] | None = None,
             method: str = "incremental", provenance: Mapping[str, Any] | None = None,
             progress: Callable[[int], None] | None = None) -> list[Direction]:
    """GANSpace on G's W: PCA of `num_samples` sampled w (paper: 10^6; official default 80 components);
    `progress(B)` as each batch of samples is taken in."""
    options = dict(num_samples=num_samples, seed=seed, truncation_psi=truncation_psi, method=method)
    batches = sample_w(G, num_samples, seed=seed, batch_size=batch_size, truncation_psi=truncation_psi,
                       progress=progress)
    latents = np.concatenate(list(batches)) if method == "full" else batches
    result = pca(latents, num_directions, method=method)
    return directions_from_pca(result, layers=layers, provenance=dict(provenance or {}, **options))


def _result(estimator: PCA | IncrementalPCA) -> PCAResult:
    components = estimator.components_.astype(np.float64)
    components /= np.linalg.norm(components, axis=1, keepdims=True)
    # A fixed sign per component, so that 'full' and 'incremental' (and reruns) agree.
    peaks = components[np.arange(len(components)), np.abs(components).argmax(axis=1)]
    components *= np.sign(peaks)[:, None]
    return PCAResult(components=components.astype(np.float32),
                     stdev=np.sqrt(estimator.explained_variance_).astype(np.float32),
                     mean=estimator.mean_.astype(np.float32),
                     explained_variance_ratio=estimator.explained_variance_ratio_.astype(np.float32),
                     num_samples=int(getattr(estimator, "n_samples_seen_", None) or estimator.n_samples_))


def _rechunk(batches: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup batches into chunks of `size` rows; the last chunk takes the remainder (size <= rows < 2 * size)."""
    pending: list[np.ndarray] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += len(batch)
        while count >= 2 * size:
            buffer = np.concatenate(pending)
            yield buffer[:size]
            pending, count = [buffer[size:]], count - size
    if count:
        yield np.concatenate(pending)


def _as_2d(latents: np.ndarray | torch.Tensor) -> np.ndarray:
    array = latents.detach().cpu().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents)
    if array.ndim != 2:
        raise ValueError(f"latents must be [N, D] (for W+ codes pick a layer or flatten), got {list(array.shape)}")
    return array.astype(np.float64)


def _check_enough(chunk: np.ndarray, n_components: int) -> np.ndarray:
    if len(chunk) < n_components:
        raise ValueError(f"PCA with n_components={n_components} needs at least that many samples, got {len(chunk)}")
    return chunk
