"""Flow: InterFaceGAN boundaries for every labelled attribute (plus conditional ones) into `directions/<name>`.

Two sources of training data:
- `store`: the store's done items (their w, the mean of the ws rows, or W+) and the labels of its manifest;
- `samples`: InterFaceGAN's recipe: sample z, render with the store's generator, score with the attribute classifier,
  fit on the most extreme `chosen_num_or_ratio` of each end.

Each direction records method, space, source, generator identity, the data used (items or samples, label names,
conditions) and the SVM's validation accuracy (see `storage/directions.py` for the layout).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from prefect import flow, get_run_logger

from flows._common import directions_artifact, save_directions
from storage import LatentStore
from tasks import directions as direction_tasks
from tasks import models

SOURCES = ("store", "samples")


@dataclasses.dataclass(frozen=True)
class FitBoundariesConfig:
    """What `fit_boundaries` was asked to do; saved as `made_by` on every direction it writes."""

    attributes: tuple[str, ...] | None = None
    conditions: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    space: str = "w"
    source: str = "store"
    generator: str | None = None
    classifier: str = "builtin"
    num_samples: int = 20000
    truncation_psi: float = 0.7
    chosen_num_or_ratio: float | None = None
    svm: str = "linear_svc"
    seed: int = 0


@flow(name="fit-boundaries", log_prints=True)
def fit_boundaries(store: str, *, attributes: Sequence[str] | None = None,
                   conditions: Mapping[str, Sequence[str]] | None = None, space: str = "w", source: str = "store",
                   generator: str | None = None, classifier: str = "builtin", num_samples: int = 20000,
                   truncation_psi: float = 0.7, chosen_num_or_ratio: float | None = None, svm: str = "linear_svc",
                   seed: int = 0, batch_size: int = 64, device: str = "auto", overwrite: bool = False,
                   storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Fits one boundary per attribute (default: every label of the store, or every classifier attribute with
    source='samples') and one per `conditions` entry (`{'eyeglasses': ['blond_hair']}` adds
    `interfacegan-eyeglasses|blond_hair`, orthogonal to the blond_hair boundary). Returns the names written."""
    logger = get_run_logger()
    config = FitBoundariesConfig(attributes=None if attributes is None else tuple(attributes),
                                 conditions={k: tuple(v) for k, v in (conditions or {}).items()}, space=space,
                                 source=source, generator=generator, classifier=classifier, num_samples=num_samples,
                                 truncation_psi=truncation_psi, chosen_num_or_ratio=chosen_num_or_ratio, svm=svm,
                                 seed=seed)
    # 1. open the store and check the request against it
    latent_store = LatentStore.open(store, "r+", storage_options=storage_options)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    # 2. fit the boundaries, from the store's labels or from scored samples of the store's generator
    if source == "store":
        directions = direction_tasks.fit_from_store(
            store, attributes=attributes, conditions=config.conditions, space=space,
            chosen_num_or_ratio=chosen_num_or_ratio, svm=svm, seed=seed, storage_options=storage_options)
    else:
        source_name = models.store_generator_source(latent_store.attributes.generator, generator)
        directions = direction_tasks.fit_from_samples(
            source_name, classifier=classifier, attributes=attributes, conditions=config.conditions, space=space,
            num_samples=num_samples, truncation_psi=truncation_psi, chosen_num_or_ratio=chosen_num_or_ratio or 0.02,
            svm=svm, seed=seed, batch_size=batch_size, device=device)
    # 3. write them to directions/<name> under the store's run lease
    made_by = dict(flow="fit_boundaries", method="interfacegan", config=dataclasses.asdict(config))
    names = save_directions(latent_store, directions, made_by=made_by, overwrite=overwrite, prefix="fit-boundaries")
    # 4. summarise
    directions_artifact("fit-boundaries", directions, f"InterFaceGAN boundaries written to {store} ({source})")
    logger.info("wrote %d directions to %s: %s", len(names), store, ", ".join(names))
    return names
