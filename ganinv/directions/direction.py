"""`Direction`: one latent edit direction and a record of how it was made.

A flow writes `vector` to the store's `directions/<name>` array and `attrs()` to its attributes, so a direction found
years later still says which method, space, layers, data and generator produced it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPACES = ("z", "w", "w+")


@dataclass(frozen=True, eq=False)
class Direction:
    """A latent edit direction.

    name:       unique name, e.g. `interfacegan-smiling`, `sefa-3`, `ganspace-0`.
    method:     `interfacegan` | `ganspace` | `sefa`.
    space:      `z`, `w` (vector `[D]`) or `w+` (vector `[num_ws, w_dim]`, one row per ws entry).
    vector:     float32, unit norm over all entries.
    layers:     the ws rows (0 .. num_ws-1) an edit touches; `None` = all of them.
    scale:      latent distance of one unit of edit strength (GANSpace: the component's stdev, so strengths are in
                sigmas as in the paper's sliders; 1 for the others).
    provenance: JSON-serialisable facts: method parameters, `source` ('samples': codes sampled from G, 'store': the
                inverted corpus, 'generator': G's weights, as in SeFa), generator identity when known, metrics
                (validation accuracy, eigenvalue, stdev, ...).
    """

    name: str
    method: str
    space: str
    vector: np.ndarray
    layers: tuple[int, ...] | None = None
    scale: float = 1.0
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"Direction {self.name!r}: space must be one of {SPACES}, got {self.space!r}")
        vector = np.array(self.vector, dtype=np.float32)  # a private copy, read-only below
        want_ndim = 2 if self.space == "w+" else 1
        if vector.ndim != want_ndim or vector.size == 0:
            raise ValueError(f"Direction {self.name!r}: a {self.space!r} vector must have {want_ndim} dimension(s) "
                             f"({'[num_ws, w_dim]' if want_ndim == 2 else '[D]'}), got shape {list(vector.shape)}")
        norm = float(np.linalg.norm(vector))
        if not math.isclose(norm, 1.0, rel_tol=1e-3):
            raise ValueError(f"Direction {self.name!r}: vector must have unit norm, got {norm:.6f}")
        vector.setflags(write=False)
        object.__setattr__(self, "vector", vector)
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Direction {self.name!r}: scale must be a positive number, got {self.scale}")
        try:
            json.dumps(self.provenance)
        except TypeError as exc:
            raise ValueError(f"Direction {self.name!r}: provenance must be JSON-serialisable (plain str, int, float, "
                             f"list, dict; convert numpy scalars with float()): {exc}") from exc

    def attrs(self) -> dict[str, Any]:
        """Everything except the vector, as JSON-serialisable attributes for the store."""
        return dict(name=self.name, method=self.method, space=self.space, shape=list(self.vector.shape),
                    layers=None if self.layers is None else list(self.layers), scale=float(self.scale),
                    provenance=self.provenance)
