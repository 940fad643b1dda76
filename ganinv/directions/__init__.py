"""Latent edit directions: InterFaceGAN (supervised boundaries), GANSpace (PCA of W) and SeFa (closed form from the
style weights), each in its own module, all producing `Direction` records that say how they were made.

`DISCOVERY_METHODS` picks an unsupervised finder by name (`--method sefa`): each is `discover(G, *, num_directions,
**options) -> list[Direction]`. InterFaceGAN needs attribute scores, so flows call `interfacegan.fit_directions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from ganinv.directions import ganspace, sefa
from ganinv.directions.direction import SPACES, Direction


class DirectionFinder(Protocol):
    def __call__(self, G: torch.nn.Module, *, num_directions: int, **options: Any) -> Sequence[Direction]: ...


DISCOVERY_METHODS: dict[str, DirectionFinder] = {"ganspace": ganspace.discover, "sefa": sefa.discover}


def get_discovery_method(name: str) -> DirectionFinder:
    try:
        return DISCOVERY_METHODS[name]
    except KeyError:
        raise KeyError(f"unknown direction method {name!r}; choose one of {sorted(DISCOVERY_METHODS)} "
                       f"(InterFaceGAN needs labels: use interfacegan.fit_directions)") from None


__all__ = ["DISCOVERY_METHODS", "Direction", "DirectionFinder", "SPACES", "get_discovery_method"]
