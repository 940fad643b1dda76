"""Step 2b of a report: how far the reconstructions' distribution is from the originals' (Fréchet distances).

Both sides are compared at the store's thumbnail resolution: reconstructions are the stored thumbnails, originals
are the input files resized to that size, so neither side gets detail the other lacks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from report.collect import RunData
from report.schema import FD_CLF_NAME, FID_NAME
from ganinv.metrics import (InceptionWeightsMissing, embedding_frechet_distance, fid_unavailable_reason,
                            frechet_inception_distance)
from ganinv.utils.images import to_model_input

DEFAULT_MAX_ITEMS = 2048
MIN_ITEMS = 2  # a covariance needs two samples; values at small N are biased upward, hence N in the report


def sample_done(data: RunData, max_items: int, *, seed: int = 0) -> np.ndarray:
    """Up to `max_items` done item indices, ascending; a seeded choice so reruns compare the same items."""
    done = np.flatnonzero(data.done)
    if len(done) > max_items:
        done = np.sort(np.random.default_rng(seed).choice(done, max_items, replace=False))
    return done


def image_pairs(data: RunData, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(originals, reconstructions, errors): uint8 `[n, t, t, 3]` each at the thumbnail size t, for the items whose
    original could be read; `errors` for the others."""
    originals, errors = data.originals(indices, data.thumbnail_size)
    readable = np.array([e is None for e in errors], bool)
    return originals[readable], data.thumbnails(indices[readable]), [e for e in errors if e is not None]


def fd_clf(originals: np.ndarray, reconstructions: np.ndarray, *, device: str = "cpu") -> float:
    """FD-clf on the built-in attribute classifier's embedding (the classifier resizes images to its resolution)."""
    from ganinv.models.attributes import load_classifier

    classifier = load_classifier("builtin", device=device).eval()
    return embedding_frechet_distance(_to_model(originals, device), _to_model(reconstructions, device),
                                      classifier.embedding)


def _to_model(images: np.ndarray, device: str) -> torch.Tensor:
    """uint8 `[N, H, W, 3]` -> `[N, 3, H, W]` in [-1, 1] on `device`."""
    return to_model_input(torch.from_numpy(images).permute(0, 3, 1, 2)).to(device)


def fid(originals: np.ndarray, reconstructions: np.ndarray, *, device: str = "cpu") -> float:
    as_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)  # noqa: E731
    return frechet_inception_distance(as_nchw(originals), as_nchw(reconstructions), device=device)


def distribution_distances(data: RunData, *, fid_mode: bool | None = None, max_items: int = DEFAULT_MAX_ITEMS,
                           device: str = "cpu") -> dict[str, dict[str, Any]]:
    """{'fd_clf': {...}, 'fid': {...}}, each with name, value (None when not computed), n and reason.

    fid_mode: None computes FID when torch-fidelity and the Inception weights are here and says why not otherwise;
    True requires it (raises InceptionWeightsMissing); False skips it.
    """
    fid_reason = fid_unavailable_reason() if fid_mode is not False else "not requested (--no-fid)"
    if fid_mode is True and fid_reason is not None:
        raise InceptionWeightsMissing(f"--fid was given but FID cannot be computed: {fid_reason}")
    out = {"fd_clf": _entry(FD_CLF_NAME), "fid": _entry(FID_NAME, reason=fid_reason)}
    problem = _no_pairs_reason(data)
    indices = sample_done(data, max_items) if problem is None else np.zeros(0, np.int64)
    if problem is None and len(indices) < MIN_ITEMS:
        problem = f"needs at least {MIN_ITEMS} done items, the store has {len(indices)}"
    if problem is not None:
        for entry in out.values():
            entry["reason"] = entry["reason"] or problem
        return out
    originals, reconstructions, errors = image_pairs(data, indices)
    if len(originals) < MIN_ITEMS:
        for entry in out.values():
            entry["reason"] = entry["reason"] or f"{len(errors)} of {len(indices)} originals unreadable ({errors[0]})"
        return out
    out["fd_clf"].update(value=fd_clf(originals, reconstructions, device=device), n=len(originals))
    if fid_reason is None:
        out["fid"].update(value=fid(originals, reconstructions, device=device), n=len(originals))
    if errors:
        for entry in out.values():
            entry["note"] = f"{len(errors)} sampled originals were unreadable and left out (e.g. {errors[0]})"
    return out


def _entry(name: str, *, reason: str | None = None) -> dict[str, Any]:
    return dict(name=name, value=None, n=0, reason=reason)


def _no_pairs_reason(data: RunData) -> str | None:
    if data.thumbnail_size is None:
        return "the store keeps no reconstruction thumbnails (create it with thumbnail_size=)"
    return None
