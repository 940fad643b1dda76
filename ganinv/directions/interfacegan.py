"""InterFaceGAN (Shen et al. 2020, "Interpreting the Latent Space of GANs for Semantic Face Editing", CVPR; TPAMI).

A binary attribute is (close to) linearly separable in the latent space, so the unit normal `n` of a linear SVM's
separating hyperplane is an edit direction: `w' = w + alpha * n` (Sec. 2.1). Training data are the latent codes whose
attribute scores are the most extreme (`chosen_num_or_ratio` of the top and of the bottom). Conditional manipulation
(Sec. 2.2) removes from `n` its components along other attributes' normals, so that editing one attribute leaves the
conditioned ones alone.

Spaces: `z`, `w` (default) and `w+`. `train_boundary` fits W+ codes `[N, num_ws, w_dim]` with one SVM on the flattened
codes and returns the boundary as `[1, num_ws, w_dim]` (unit norm over all entries); `train_layer_boundaries` fits
one boundary per ws row instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ganinv.directions.direction import Direction, SPACES
from ganinv.directions.sampling import Scorer, concat_scores, iter_latents, score_dict

# `linear_svc` (liblinear) is the default. At the paper's size (14k training codes, 512-d, planted normal) it matched
# libsvm's `SVC(kernel='linear')` (the original code): cosine to the truth 0.922 vs 0.920 at validation accuracy 0.98,
# 0.970 vs 0.962 at 0.87; fit 1.5 s vs 4.6 s and 1.1 s vs 407 s - libsvm slows down badly once the tails overlap.
# See benchmarks/interfacegan_svm.py.
SVMS = ("linear_svc", "svc")


@dataclass(frozen=True, eq=False)
class BoundaryFit:
    """A trained boundary.

    boundary:           `[1, D]` (or `[1, num_ws, w_dim]` for W+ codes) unit normal; the positive side has high scores.
    offset:             signed distance of a code x to the hyperplane is `<x, boundary> + offset`.
    val_accuracy:       SVM accuracy on the held-out share of the extreme codes (None when `split_ratio` = 1).
    remaining_accuracy: accuracy on the codes between the extremes, labelled by the midpoint of the score range, as in
                        the original code (None when no codes remain).
    num_train, num_val: codes per side (positive = negative).
    """

    boundary: np.ndarray
    offset: float
    val_accuracy: float | None
    remaining_accuracy: float | None
    num_train: int
    num_val: int

    def metrics(self) -> dict[str, Any]:
        return dict(offset=self.offset, val_accuracy=self.val_accuracy, remaining_accuracy=self.remaining_accuracy,
                    num_train=self.num_train, num_val=self.num_val)


def train_boundary(latent_codes: np.ndarray | torch.Tensor, scores: np.ndarray | torch.Tensor, *,
                   chosen_num_or_ratio: float = 0.02, split_ratio: float = 0.7, invalid_value: float | None = None,
                   seed: int = 0, svm: str = "linear_svc", C: float = 1.0) -> BoundaryFit:
    """Fit the InterFaceGAN boundary of one attribute.

    latent_codes:        `[N, D]` (Z or W) or `[N, num_ws, w_dim]` (W+).
    scores:              `[N]` or `[N, 1]` attribute scores (probabilities, logits, or labels: only their order counts).
    chosen_num_or_ratio: codes taken from each end of the score order: a share of N if in (0, 1], else a count; at most
                         N // 2 (the paper's 2 % of 500k samples = 10k per side).
    split_ratio:         share of the chosen codes used for training; the rest validates.
    invalid_value:       scores equal to this (NaN allowed) are dropped first, e.g. missing labels.
    svm:                 `linear_svc` (liblinear, fast) or `svc` (libsvm `SVC(kernel='linear')`, the original code).
    """
    codes, scores = _check_codes_and_scores(latent_codes, scores)
    _check_options(chosen_num_or_ratio, split_ratio, svm)
    flat = codes.reshape(len(codes), -1)  # indices below: only the chosen codes are ever copied
    order = _valid_order(scores, invalid_value)  # descending score: positives first
    chosen = _chosen_num(len(order), chosen_num_or_ratio)
    num_train, num_val = int(chosen * split_ratio), chosen - int(chosen * split_ratio)
    if num_train < 1:
        raise ValueError(f"only {chosen} codes per side with split_ratio={split_ratio}: no training data; "
                         f"pass more codes or a larger chosen_num_or_ratio")
    rng = np.random.default_rng(seed)
    top = order[:chosen][rng.permutation(chosen)]
    bottom = order[len(order) - chosen:][rng.permutation(chosen)]
    train = np.concatenate([top[:num_train], bottom[:num_train]])
    clf = _make_svm(svm, C=C, seed=seed).fit(flat[train].astype(np.float64), _labels(num_train))
    coef, intercept = clf.coef_.reshape(-1).astype(np.float64), float(clf.intercept_[0])
    norm = float(np.linalg.norm(coef))
    if norm == 0:
        raise ValueError("the SVM found no separating direction (all coefficients zero): are the scores constant?")
    val = np.concatenate([top[num_train:], bottom[num_train:]])
    middle = order[chosen:len(order) - chosen]
    middle_labels = scores[middle] >= (scores[order[0]] + scores[order[-1]]) / 2  # the original code's midpoint
    return BoundaryFit(
        boundary=(coef / norm).astype(np.float32).reshape(1, *codes.shape[1:]), offset=intercept / norm,
        val_accuracy=_accuracy(flat, val, _labels(num_val), coef, intercept) if num_val else None,
        remaining_accuracy=_accuracy(flat, middle, middle_labels, coef, intercept) if len(middle) else None,
        num_train=num_train, num_val=num_val)


def train_layer_boundaries(latent_codes: np.ndarray | torch.Tensor, scores: np.ndarray | torch.Tensor,
                           **options: Any) -> list[BoundaryFit]:
    """W+ per layer: one `train_boundary` on each ws row, `latent_codes [N, num_ws, w_dim]` -> num_ws fits `[1, w_dim]`
    (a direction from fit i edits layer i only: `Direction(..., layers=(i,))`)."""
    codes = latent_codes.detach().cpu().numpy() if isinstance(latent_codes, torch.Tensor) else np.asarray(latent_codes)
    if codes.ndim != 3:
        raise ValueError(f"latent_codes must be W+ codes [N, num_ws, w_dim], got {list(codes.shape)}")
    return [train_boundary(codes[:, i], scores, **options) for i in range(codes.shape[1])]


def conditional_boundary(primal: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    """Conditional boundary (InterFaceGAN Sec. 2.2): `primal` `[D]` with its component in the span of `conditions`
    `[k, D]` (linearly independent) removed, renormalised to a unit `[D]`. A primal in that span leaves only rounding
    error, which is renormalised too (an arbitrary unit vector; all zeros only when the residual is exactly zero):
    `project_boundary` refuses that case, this function cannot without a host sync.

    Any dtype and device, differentiable, no host sync: the linear-attribute regulariser conditions its probe's
    normals with it at every edit step; `project_boundary` is the checked front for boundaries from `train_boundary`.
    """
    return F.normalize(_off_span(primal, conditions), dim=0, eps=1e-12)


def _off_span(primal: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    """`primal` `[D]` less its orthogonal projection onto the span of `conditions` `[k, D]` (linearly independent)."""
    basis = torch.linalg.qr(conditions.T).Q  # [D, k] orthonormal
    return primal - basis @ (basis.T @ primal)


def project_boundary(primal: np.ndarray | torch.Tensor, *conditions: np.ndarray | torch.Tensor) -> np.ndarray:
    """Conditional boundary (InterFaceGAN Sec. 2.2): the primal with its component in span(conditions) removed.

    primal, conditions: `[1, D]` (or `[D]`, `[1, num_ws, w_dim]`), same size. Returns a unit `[1, ...]` boundary
    orthogonal to every condition. Its dot product with the primal is positive (the sign is kept): it equals the
    norm of the residual before normalisation.

    For one condition this is `n1 - <n1, n2> n2` and for two it equals the original code's closed form; any number of
    conditions (unit or not, even linearly dependent: those are left out first) are handled, in float64, by the
    projection of `conditional_boundary`.
    """
    p = _as_flat_boundary(primal, "primal")
    shape = np.shape(primal)[1:] if np.ndim(primal) >= 2 else np.shape(primal)
    cond = np.stack([_as_flat_boundary(c, f"conditions[{i}]") for i, c in enumerate(conditions)]) if conditions \
        else np.zeros([0, p.shape[0]])  # [k, D]
    if cond.shape[1] != p.shape[0]:
        raise ValueError(f"conditions have {cond.shape[1]} entries, the primal {p.shape[0]}: same space required")
    residual = _off_span(torch.from_numpy(p), torch.from_numpy(_independent(cond))).numpy()
    norm = float(np.linalg.norm(residual))
    if norm <= 1e-6 * float(np.linalg.norm(p)):  # checked here: `conditional_boundary` renormalises the rounding error
        raise ValueError("the primal boundary lies in the span of the conditions: nothing is left after projection")
    return (residual / norm).astype(np.float32).reshape(1, *shape)


def _independent(conditions: np.ndarray) -> np.ndarray:
    """The conditions `[k, D]` that each add a dimension to the span of those before them (numerical rank, with
    least squares' default cutoff): a dependent one changes nothing in the span, and QR needs independent columns."""
    kept = []
    for condition in conditions:
        if np.linalg.matrix_rank(np.stack([*kept, condition])) > len(kept):
            kept.append(condition)
    return np.stack(kept) if kept else conditions[:0]


@torch.no_grad()
def sample_and_score(G: torch.nn.Module, scorer: Scorer, n: int, *, seed: int = 0, truncation_psi: float = 0.7,
                     truncation_cutoff: int | None = None, batch_size: int = 64, space: str = "w",
                     attributes: Sequence[str] | None = None, noise_mode: str = "const",
                     progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """InterFaceGAN's data: sample z, map to w (truncated, psi 0.7 as in the paper), render, score.

    Returns `(latents, scores)`: latents float32 `[n, z_dim]` (`z`), `[n, w_dim]` (`w`, the truncated w that was
    rendered) or `[n, num_ws, w_dim]` (`w+`); scores `{attribute: float64 [n]}` (see `sampling.score_dict`).
    Images live one batch at a time; `progress(B)` is called after each batch is scored.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    latents, chunks = [], []
    for z, ws in iter_latents(G, n, seed=seed, batch_size=batch_size, truncation_psi=truncation_psi,
                              truncation_cutoff=truncation_cutoff, progress=progress):
        chunks.append(score_dict(scorer(G.synthesis(ws, noise_mode=noise_mode)), attributes))
        code = {"z": z, "w": ws[:, 0], "w+": ws}[space]
        latents.append(code.to("cpu", torch.float32).numpy())
    return np.concatenate(latents), concat_scores(chunks)


def fit_directions(latent_codes: np.ndarray | torch.Tensor, scores: Mapping[str, np.ndarray | torch.Tensor], *,
                   space: str = "w", conditions: Mapping[str, Sequence[str]] | None = None,
                   source: str = "samples", provenance: Mapping[str, Any] | None = None, scale: str = "std",
                   attribute_options: Mapping[str, Mapping[str, Any]] | None = None,
                   progress: Callable[[int], None] | None = None, **train_options: Any) -> list[Direction]:
    """One `Direction` per attribute in `scores`, plus conditional ones.

    conditions: `{attribute: [attributes to hold fixed]}` adds a direction `interfacegan-<a>|<b>,<c>` that is the
                attribute's boundary projected orthogonal to the others' (all must be in `scores`).
    provenance: extra facts recorded with every direction (generator identity, sampling parameters, ...).
    scale:      `std` (default): a direction's `scale` is the standard deviation of `<code, boundary>` over
                `latent_codes`, so strengths are in sigmas as in the paper's Z (where `<z, n>` is standard normal and
                edits go to about +-3); W's spread along a boundary depends on the generator. `unit`: scale 1.
    attribute_options: per-attribute `train_boundary` options over `train_options`, e.g. a `chosen_num_or_ratio`
                per attribute when label counts differ.
    progress:   called with 1 after each attribute's SVM is fitted (for a progress bar).
    train_options: passed to `train_boundary`.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if scale not in ("std", "unit"):
        raise ValueError(f"scale must be 'std' or 'unit', got {scale!r}")
    options = {name: {**train_options, **dict((attribute_options or {}).get(name, {}))} for name in scores}
    fits = {}
    for name, value in scores.items():
        fits[name] = train_boundary(latent_codes, value, **options[name])
        if progress is not None:
            progress(1)
    base = dict(provenance or {}, source=source, scale_unit=scale)
    spread = _projection_std(latent_codes) if scale == "std" else (lambda boundary: 1.0)
    directions = [_direction(f"interfacegan-{name}", space, fit.boundary, spread(fit.boundary),
                             dict(base, attribute=name, **_jsonable(options[name]), **fit.metrics()))
                  for name, fit in fits.items()]
    for name, held in (conditions or {}).items():
        missing = [a for a in [name, *held] if a not in fits]
        if missing:
            raise KeyError(f"conditions name attribute(s) {missing} that are not in scores ({sorted(fits)})")
        boundary = project_boundary(fits[name].boundary, *(fits[a].boundary for a in held))
        directions.append(_direction(f"interfacegan-{name}|{','.join(held)}", space, boundary, spread(boundary),
                                     dict(base, attribute=name, conditions=list(held), **_jsonable(options[name]),
                                          **fits[name].metrics())))
    return directions


def _projection_std(latent_codes: np.ndarray | torch.Tensor):
    """boundary -> std of `<code, boundary>` over the (finite) codes, computed in chunks."""
    codes = _check_codes(latent_codes)
    flat = codes.reshape(len(codes), -1)

    def spread(boundary: np.ndarray) -> float:
        n = boundary.reshape(-1).astype(np.float64)
        proj = np.concatenate([flat[i:i + 65536].astype(np.float64) @ n for i in range(0, len(flat), 65536)])
        std = float(np.std(proj[np.isfinite(proj)]))
        if not std > 0:
            raise ValueError("the codes do not vary along the boundary (std 0): cannot scale strengths by it")
        return std

    return spread


def _direction(name: str, space: str, boundary: np.ndarray, scale: float, provenance: dict[str, Any]) -> Direction:
    vector = boundary.reshape(boundary.shape[1:])
    return Direction(name=name, method="interfacegan", space=space, vector=vector, scale=scale,
                     provenance=dict(provenance, latent_std=scale) if provenance["scale_unit"] == "std" else provenance)


def _check_codes(latent_codes) -> np.ndarray:
    codes = np.asarray(latent_codes.detach().cpu() if isinstance(latent_codes, torch.Tensor) else latent_codes)
    if not np.issubdtype(codes.dtype, np.floating):
        codes = codes.astype(np.float32)
    if codes.ndim not in (2, 3) or len(codes) < 2:
        raise ValueError(f"latent_codes must be [N, D] or [N, num_ws, w_dim] with N >= 2, got {list(codes.shape)}")
    return codes


def _check_codes_and_scores(latent_codes, scores) -> tuple[np.ndarray, np.ndarray]:
    codes = _check_codes(latent_codes)
    values = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.shape != (len(codes),):
        raise ValueError(f"scores must be [N] or [N, 1] with N = {len(codes)} (one per latent code), "
                         f"got {list(np.shape(scores))}")
    return codes, values


def _check_options(chosen_num_or_ratio: float, split_ratio: float, svm: str) -> None:
    if chosen_num_or_ratio <= 0:
        raise ValueError(f"chosen_num_or_ratio must be positive, got {chosen_num_or_ratio}")
    if not 0 < split_ratio <= 1:
        raise ValueError(f"split_ratio must be in (0, 1], got {split_ratio}")
    if svm not in SVMS:
        raise ValueError(f"svm must be one of {SVMS}, got {svm!r}")


def _labels(num_per_side: int) -> np.ndarray:
    """1 for the positive (high-score) codes, then 0 for the negative ones."""
    return np.concatenate([np.ones(num_per_side, dtype=np.int64), np.zeros(num_per_side, dtype=np.int64)])


def _valid_order(scores: np.ndarray, invalid_value: float | None) -> np.ndarray:
    """Indices of the codes with valid scores, by descending score."""
    valid = np.ones(len(scores), dtype=bool)
    if invalid_value is not None:
        valid = ~np.isnan(scores) if math.isnan(invalid_value) else scores != invalid_value
    if not np.all(np.isfinite(scores[valid])):
        raise ValueError("scores contain NaN or inf: pass invalid_value=float('nan') to drop them")
    index = np.flatnonzero(valid)
    return index[np.argsort(-scores[index], kind="stable")]


def _chosen_num(num_samples: int, chosen_num_or_ratio: float) -> int:
    chosen = int(num_samples * chosen_num_or_ratio) if chosen_num_or_ratio <= 1 else int(chosen_num_or_ratio)
    return min(chosen, num_samples // 2)


def _make_svm(svm: str, *, C: float, seed: int):
    from sklearn.svm import SVC, LinearSVC  # here: the regulariser imports this module for `conditional_boundary`

    if svm == "svc":
        return SVC(kernel="linear", C=C)
    return LinearSVC(C=C, random_state=seed, max_iter=10_000)


def _accuracy(flat: np.ndarray, index: np.ndarray, labels: np.ndarray, coef: np.ndarray, intercept: float,
              chunk: int = 65536) -> float:
    """Share of `flat[index]` on the side of the hyperplane that `labels` (1 = positive) says, in chunks."""
    correct = 0
    for start in range(0, len(index), chunk):
        part = index[start:start + chunk]
        predicted = flat[part].astype(np.float64) @ coef + intercept > 0
        correct += int(np.sum(predicted == labels[start:start + chunk].astype(bool)))
    return correct / len(index)


def _as_flat_boundary(value, name: str) -> np.ndarray:
    array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
    if array.ndim > 1 and array.shape[0] != 1:
        raise ValueError(f"{name} must be one boundary, [1, D] or [D], got shape {list(array.shape)}")
    flat = array.reshape(-1)
    if not np.any(flat):
        raise ValueError(f"{name} is all zeros")
    return flat


def _jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in options.items()}
