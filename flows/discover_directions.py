"""Flow: unsupervised edit directions into `directions/<name>`: SeFa (closed form from the generator's style
weights, `sefa-<k>`) and GANSpace (PCA of w sampled from the mapping network, `ganspace-<k>`, and/or of the store's
inverted corpus, `ganspace-store-<k>`; strengths in the component's standard deviations)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import flow, get_run_logger

from flows._common import directions_artifact, save_directions
from storage import LatentStore
from tasks import directions as direction_tasks
from tasks import models

METHODS = ("sefa", "ganspace")
GANSPACE_SOURCES = ("samples", "store", "both")


@flow(name="discover-directions", log_prints=True)
def discover_directions(store: str, *, methods: Sequence[str] = METHODS, num_directions: int = 5,
                        sefa_layers: str | Sequence[int] = "all", ganspace_source: str = "samples",
                        num_samples: int = 100_000, ganspace_layers: Sequence[int] | None = None,
                        generator: str | None = None, seed: int = 0, device: str = "auto", overwrite: bool = False,
                        storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Discovers `num_directions` directions per method (and per GANSpace source) and writes them. `sefa_layers`:
    conv layers SeFa factorises (`'all'` or indices; the paper's coarse = [0, 1]); `ganspace_layers`: ws rows a
    GANSpace edit touches (default all). Returns the names written."""
    logger = get_run_logger()
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or ganspace_source not in GANSPACE_SOURCES:
        raise ValueError(f"methods must be among {METHODS} (got {list(methods)}) and ganspace_source one of "
                         f"{GANSPACE_SOURCES} (got {ganspace_source!r})")
    # 1. open the store; the generator must be the one its codes belong to
    latent_store = LatentStore.open(store, "r+", storage_options=storage_options)
    needs_generator = "sefa" in methods or ("ganspace" in methods and ganspace_source != "store")
    source = models.store_generator_source(latent_store.attributes.generator, generator) if needs_generator else None
    # 2. discover
    found = []
    if "sefa" in methods:
        found += direction_tasks.discover_sefa(source, num_directions=num_directions, layers=sefa_layers)
    if "ganspace" in methods and ganspace_source in ("samples", "both"):
        found += direction_tasks.discover_ganspace_samples(source, num_directions=num_directions,
                                                           num_samples=num_samples, seed=seed,
                                                           layers=ganspace_layers,
                                                           device=device)
    if "ganspace" in methods and ganspace_source in ("store", "both"):
        found += direction_tasks.discover_ganspace_store(store, num_directions=num_directions,
                                                         layers=ganspace_layers, storage_options=storage_options)
    # 3. write them to directions/<name> under the store's run lease
    made_by = dict(flow="discover_directions", methods=list(methods), num_directions=num_directions,
                   sefa_layers=sefa_layers if isinstance(sefa_layers, str) else list(sefa_layers),
                   ganspace_source=ganspace_source, num_samples=num_samples, seed=seed,
                   ganspace_layers=None if ganspace_layers is None else list(ganspace_layers), generator=source)
    names = save_directions(latent_store, found, made_by=made_by, overwrite=overwrite, prefix="discover-directions")
    # 4. summarise
    directions_artifact("discover-directions", found, f"SeFa / GANSpace directions written to {store}")
    logger.info("wrote %d directions to %s: %s", len(names), store, ", ".join(names))
    return names
