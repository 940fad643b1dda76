"""Prefect tasks that find edit directions. Thin wrappers: the algorithms are `ganinv.directions`, the store I/O
`storage.directions`. Each returns `Direction` records (a few kilobytes each), which the flow writes to the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from prefect import task

from ganinv.directions import ganspace, interfacegan, sefa
from ganinv.directions.direction import Direction
from storage import LatentStore
from storage.directions import done_codes, labelled_codes
from tasks import models

# InterFaceGAN takes 2 % of each end of 500k scored samples; on a corpus with 0/1 labels every labelled code is used,
# as many of each class as the smaller class has (balanced), and continuous labels use their top and bottom quarter.
CONTINUOUS_LABEL_RATIO = 0.25


@task(name="fit-boundaries-from-store")
def fit_from_store(store_url: str, *, attributes: Sequence[str] | None, conditions: Mapping[str, Sequence[str]],
                   space: str = "w", chosen_num_or_ratio: float | None = None, svm: str = "linear_svc",
                   split_ratio: float = 0.7, seed: int = 0,
                   storage_options: Mapping[str, Any] | None = None) -> list[Direction]:
    """InterFaceGAN on the store's done items and their `labels/` (missing labels are left out per attribute)."""
    store = LatentStore.open(store_url, "r", storage_options=storage_options)
    rows, codes, labels = labelled_codes(store, attributes, space=space)
    if len(rows) < 4:
        raise ValueError(f"{store_url} has {len(rows)} done items with labels: fitting boundaries needs more")
    per_attribute = {name: dict(chosen_num_or_ratio=chosen_num_or_ratio or _balanced(values))
                     for name, values in labels.items()}
    identity = store.attributes.generator
    provenance = dict(generator={"sha256": identity.sha256, "source": identity.source}, num_items=int(len(rows)),
                      labelled={name: int(np.isfinite(v).sum()) for name, v in labels.items()},
                      store_manifest_hash=store.attributes.dataset.manifest_hash)
    return interfacegan.fit_directions(codes, labels, space=space, conditions=conditions, source="store",
                                       provenance=provenance, attribute_options=per_attribute,
                                       invalid_value=float("nan"), svm=svm, split_ratio=split_ratio, seed=seed)


def _balanced(labels: np.ndarray) -> float:
    """Codes per side: the smaller class for 0/1 labels, else the top and bottom quarter."""
    valid = labels[np.isfinite(labels)]
    if np.isin(valid, (0.0, 1.0)).all():
        smaller = int(min((valid == 1).sum(), (valid == 0).sum()))
        if smaller == 0:
            raise ValueError("a 0/1 label has only one class among the done items: nothing to separate")
        return float(max(smaller, 2))
    return CONTINUOUS_LABEL_RATIO


@task(name="fit-boundaries-from-samples")
def fit_from_samples(generator: str, *, classifier: str = "builtin", attributes: Sequence[str] | None,
                     conditions: Mapping[str, Sequence[str]], space: str = "w", num_samples: int = 20000,
                     truncation_psi: float = 0.7, chosen_num_or_ratio: float = 0.02, svm: str = "linear_svc",
                     split_ratio: float = 0.7, seed: int = 0, batch_size: int = 64,
                     device: str = "cpu") -> list[Direction]:
    """InterFaceGAN as in the paper: sample, render, score with the classifier, fit on the extremes."""
    G, C = models.generator(generator, device), models.classifier(classifier, device)
    latents, scores = interfacegan.sample_and_score(G, C.predict, num_samples, seed=seed, batch_size=batch_size,
                                                    truncation_psi=truncation_psi, space=space, attributes=attributes)
    provenance = dict(generator=models.identity(generator), classifier=classifier, num_samples=num_samples,
                      truncation_psi=truncation_psi, sample_seed=seed)
    return interfacegan.fit_directions(latents, scores, space=space, conditions=conditions, source="samples",
                                       provenance=provenance, chosen_num_or_ratio=chosen_num_or_ratio, svm=svm,
                                       split_ratio=split_ratio, seed=seed)


@task(name="discover-sefa")
def discover_sefa(generator: str, *, num_directions: int = 5, layers: str | Sequence[int] = "all") -> list[Direction]:
    """SeFa: closed form from the generator's style weights (no sampling)."""
    return sefa.discover(models.generator(generator), num_directions=num_directions, layers=layers,
                         provenance=dict(generator=models.identity(generator)))


@task(name="discover-ganspace-samples")
def discover_ganspace_samples(generator: str, *, num_directions: int = 10, num_samples: int = 100_000,
                              seed: int = 0, layers: Sequence[int] | None = None,
                              device: str = "cpu") -> list[Direction]:
    """GANSpace on w sampled from the generator's mapping network (paper: 10^6 samples)."""
    return ganspace.discover(models.generator(generator, device), num_directions=num_directions,
                             num_samples=num_samples, seed=seed, layers=layers,
                             provenance=dict(generator=models.identity(generator)))


@task(name="discover-ganspace-store")
def discover_ganspace_store(store_url: str, *, num_directions: int = 10, layers: Sequence[int] | None = None,
                            storage_options: Mapping[str, Any] | None = None) -> list[Direction]:
    """GANSpace on the inverted corpus: PCA of the done items' w (mean of their ws rows), chunk by chunk."""
    store = LatentStore.open(store_url, "r", storage_options=storage_options)
    batches = (codes for _, codes in done_codes(store, space="w"))
    result = ganspace.pca(batches, num_directions)
    identity = store.attributes.generator
    return ganspace.directions_from_pca(
        result, layers=layers, source="store", name_prefix="ganspace-store",
        provenance=dict(generator={"sha256": identity.sha256, "source": identity.source},
                        store_manifest_hash=store.attributes.dataset.manifest_hash))
