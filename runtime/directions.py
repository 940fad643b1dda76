"""Finding edit directions for a store, as plain functions: the algorithms are `ganinv.directions`, the store I/O
`storage.directions`. Each returns `Direction` records (a few kilobytes each); `save` writes them under the lease.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ganinv.directions import DISCOVERY_METHOD_NAMES, ganspace, interfacegan, sefa
from ganinv.directions.direction import Direction
from runtime import models
from runtime.progress import step
from runtime.config import DiscoverDirectionsConfig, FitBoundariesConfig
from runtime.errors import ConfigError
from storage import LatentStore
from storage.directions import done_codes, labelled_codes, list_directions, write_directions

# InterFaceGAN takes 2 % of each end of 500k scored samples; on a corpus with 0/1 labels every labelled code is used,
# as many of each class as the smaller class has (balanced), and continuous labels use their top and bottom quarter.
CONTINUOUS_LABEL_RATIO = 0.25
SOURCES = ("store", "samples")
METHODS = DISCOVERY_METHOD_NAMES  # the unsupervised finders, named once in ganinv.directions
GANSPACE_SOURCES = ("samples", "store", "both")


def fit_boundaries(store_url: str, config: FitBoundariesConfig, *, device: str, batch_size: int | str | None = None,
                   storage_options: Mapping[str, Any] | None = None) -> list[Direction]:
    """InterFaceGAN boundaries per `config.source`: from the store's labels, or from scored samples (rendered
    `batch_size` at a time; None or 'auto': the sampler's default)."""
    if config.source not in SOURCES:
        raise ConfigError(f"source must be one of {SOURCES}, got {config.source!r}")
    if config.source == "store":
        return fit_from_store(store_url, config, storage_options=storage_options)
    store = LatentStore.open(store_url, "r", storage_options=storage_options)
    generator = models.store_generator_source(store.attributes.generator, config.generator)
    return fit_from_samples(generator, config, device=device,
                            batch_size=batch_size if isinstance(batch_size, int) else None)


def fit_from_store(store_url: str, config: FitBoundariesConfig, *,
                   storage_options: Mapping[str, Any] | None = None) -> list[Direction]:
    """InterFaceGAN on the store's done items and their labels (missing labels are left out per attribute)."""
    store = LatentStore.open(store_url, "r", storage_options=storage_options)
    rows, codes, labels = labelled_codes(store, config.attributes, space=config.space)
    if len(rows) < 4:
        raise ConfigError(f"{store_url} has {len(rows)} done items with labels: fitting boundaries needs more")
    per_attribute = {name: dict(chosen_num_or_ratio=config.chosen_num_or_ratio or _balanced(values))
                     for name, values in labels.items()}
    identity = store.attributes.generator
    provenance = dict(generator={"sha256": identity.sha256, "source": identity.source}, num_items=int(len(rows)),
                      labelled={name: int(np.isfinite(v).sum()) for name, v in labels.items()},
                      store_manifest_hash=store.attributes.dataset.manifest_hash)
    return interfacegan.fit_directions(codes, labels, space=config.space, conditions=config.conditions,
                                       source="store", provenance=provenance, attribute_options=per_attribute,
                                       invalid_value=float("nan"), svm=config.svm, seed=config.seed,
                                       progress=_fitting(len(labels), len(rows)))


def _balanced(labels: np.ndarray) -> float:
    """Codes per side: the smaller class for 0/1 labels, else the top and bottom quarter."""
    valid = labels[np.isfinite(labels)]
    if np.isin(valid, (0.0, 1.0)).all():
        smaller = int(min((valid == 1).sum(), (valid == 0).sum()))
        if smaller == 0:
            raise ConfigError("a 0/1 label has only one class among the done items: nothing to separate")
        return float(max(smaller, 2))
    return CONTINUOUS_LABEL_RATIO


def fit_from_samples(generator: str, config: FitBoundariesConfig, *, device: str,
                     batch_size: int | None = None) -> list[Direction]:
    """InterFaceGAN as in the paper: sample, render, score with the classifier, fit on the extremes."""
    G, C = models.generator(generator, device), models.classifier(config.classifier, device)
    sampling = {} if batch_size is None else {"batch_size": batch_size}
    latents, scores = interfacegan.sample_and_score(
        G, C.predict, config.num_samples, seed=config.seed, truncation_psi=config.truncation_psi, space=config.space,
        attributes=config.attributes, progress=step("InterFaceGAN: sampling, rendering and scoring images",
                                                    config.num_samples), **sampling)
    provenance = dict(generator=models.identity(generator), classifier=config.classifier,
                      num_samples=config.num_samples, truncation_psi=config.truncation_psi, sample_seed=config.seed)
    chosen = {} if config.chosen_num_or_ratio is None else {"chosen_num_or_ratio": config.chosen_num_or_ratio}
    return interfacegan.fit_directions(latents, scores, space=config.space, conditions=config.conditions,
                                       source="samples", provenance=provenance, svm=config.svm, seed=config.seed,
                                       progress=_fitting(len(scores), len(latents)), **chosen)


def _fitting(attributes: int, codes: int):
    return step(f"InterFaceGAN: fitting {attributes} boundaries on {codes} codes", attributes)


def discover(store_url: str, config: DiscoverDirectionsConfig, *, device: str,
             storage_options: Mapping[str, Any] | None = None) -> list[Direction]:
    """SeFa and GANSpace directions per `config` (the generator must be the one the store's codes belong to)."""
    unknown = sorted(set(config.methods) - set(METHODS))
    if unknown or config.ganspace_source not in GANSPACE_SOURCES:
        raise ConfigError(f"methods must be among {METHODS} (got {list(config.methods)}) and ganspace_source one of "
                          f"{GANSPACE_SOURCES} (got {config.ganspace_source!r})")
    store = LatentStore.open(store_url, "r", storage_options=storage_options)
    found = []
    if "sefa" in config.methods or ("ganspace" in config.methods and config.ganspace_source != "store"):
        generator = models.store_generator_source(store.attributes.generator, config.generator)
        if "sefa" in config.methods:
            found += sefa.discover(models.generator(generator), num_directions=config.num_directions,
                                   layers=config.sefa_layers, provenance=dict(generator=models.identity(generator)))
        if "ganspace" in config.methods and config.ganspace_source in ("samples", "both"):
            found += ganspace.discover(models.generator(generator, device), num_directions=config.num_directions,
                                       num_samples=config.num_samples, seed=config.seed,
                                       layers=config.ganspace_layers,
                                       provenance=dict(generator=models.identity(generator)),
                                       progress=step("GANSpace: sampling w and fitting the PCA", config.num_samples))
    if "ganspace" in config.methods and config.ganspace_source in ("store", "both"):
        found += _ganspace_of_store(store, config)
    return found


def _ganspace_of_store(store: LatentStore, config: DiscoverDirectionsConfig) -> list[Direction]:
    """GANSpace on the inverted corpus: PCA of the done items' w (mean of their ws rows), chunk by chunk."""
    result = ganspace.pca((codes for _, codes in done_codes(store, space="w")), config.num_directions)
    identity = store.attributes.generator
    return ganspace.directions_from_pca(
        result, layers=config.ganspace_layers, source="store", name_prefix="ganspace-store",
        provenance=dict(generator={"sha256": identity.sha256, "source": identity.source},
                        store_manifest_hash=store.attributes.dataset.manifest_hash))


def save(store_url: str, directions: Sequence[Direction], *, made_by: Mapping[str, Any], overwrite: bool,
         run_id: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Writes the directions to `directions/<name>` under the store's run lease (held by `run_id` for the write);
    refuses (before writing any) names that exist unless overwrite. Returns the names written."""
    from storage.lease import RENEWED_LEASE_TTL_S

    store = LatentStore.open(store_url, "r+", storage_options=storage_options)
    clash = sorted(set(list_directions(store)) & {d.name for d in directions})
    if clash and not overwrite:
        raise DirectionsExistError(f"{store_url} already has directions {clash}: pass overwrite=True (--overwrite) "
                                   "to replace them")
    with store.acquire_lease(run_id, ttl_s=RENEWED_LEASE_TTL_S):
        return write_directions(store, directions, made_by=made_by, overwrite=overwrite)


class DirectionsExistError(ConfigError, FileExistsError):
    """Directions of those names are in the store already (and overwrite was not asked for)."""
