"""Latent edit directions: InterFaceGAN (supervised boundaries), GANSpace (PCA of W) and SeFa (closed form from the
style weights), each in its own module, all producing `Direction` records that say how they were made.

`DISCOVERY_METHODS` picks an unsupervised finder by name (`--method sefa`): each is `discover(G, *, num_directions,
**options) -> list[Direction]`. InterFaceGAN needs attribute scores, so flows call `interfacegan.fit_directions`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ganinv.directions.direction import SPACES, Direction

if TYPE_CHECKING:  # only the finders' signature names it: `list-directions` reads Directions without torch
    import torch

# The finders' modules are imported on first use: ganspace imports scikit-learn (seconds), and every command that
# touches a Direction (the inversion's hybrid mode included) imports this package.
_FINDERS = {"ganspace": "ganinv.directions.ganspace", "sefa": "ganinv.directions.sefa"}
DISCOVERY_METHOD_NAMES = tuple(sorted(_FINDERS))


class DirectionFinder(Protocol):
    def __call__(self, G: torch.nn.Module, *, num_directions: int, **options: Any) -> Sequence[Direction]: ...


def get_discovery_method(name: str) -> DirectionFinder:
    if name not in _FINDERS:
        raise KeyError(f"unknown direction method {name!r}; choose one of {sorted(_FINDERS)} "
                       f"(InterFaceGAN needs labels: use interfacegan.fit_directions)")
    return importlib.import_module(_FINDERS[name]).discover


def __getattr__(name: str) -> Any:
    """`DISCOVERY_METHODS`: {name: discover}, built when first asked for (see `_FINDERS`)."""
    if name == "DISCOVERY_METHODS":
        return {method: get_discovery_method(method) for method in _FINDERS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DISCOVERY_METHODS", "DISCOVERY_METHOD_NAMES", "Direction", "DirectionFinder", "SPACES", "get_discovery_method"]
