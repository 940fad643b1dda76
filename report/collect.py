"""Step 1 of a report: read what a latent store says about its run (per-item status, errors, metrics, labels,
provenance, downstream result groups), and the pictures it needs (reconstruction thumbnails, resized originals)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from ganinv.item_metrics import canonical_name
from storage import LatentStore, Status
from storage.arrays import RESULT_KINDS
from storage.runs import read_runs
from storage.schema import StoreAttributes


@dataclass(frozen=True)
class RunData:
    """One store's per-item arrays (all `[N]`, store order) and root attributes; pictures are read on demand."""

    store: LatentStore
    image_ids: np.ndarray
    paths: tuple[str, ...]
    status: np.ndarray
    errors: np.ndarray
    metrics: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray]
    results: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    runs: tuple[Mapping[str, Any], ...] = ()  # the store's run log, oldest first (storage/runs.py)

    @property
    def attributes(self) -> StoreAttributes:
        return self.store.attributes

    @property
    def num_items(self) -> int:
        return len(self.status)

    @property
    def done(self) -> np.ndarray:
        return self.status == Status.DONE

    @property
    def failed(self) -> np.ndarray:
        return self.status == Status.FAILED

    @property
    def thumbnail_size(self) -> int | None:
        return self.attributes.layout.thumbnail_size

    def thumbnails(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 `[len(indices), t, t, 3]` reconstructions; the store must have thumbnails."""
        return self.store.thumbnails(np.asarray(indices, np.int64))

    def originals(self, indices: Sequence[int], size: int) -> tuple[np.ndarray, list[str | None]]:
        """(uint8 `[len(indices), size, size, 3]`, errors): the input files resized (Lanczos) to `size` px; an
        unreadable file gives a black tile and its error message (None for the files that were read)."""
        images = np.zeros((len(indices), size, size, 3), np.uint8)
        errors: list[str | None] = [None] * len(indices)
        for k, i in enumerate(indices):
            try:
                images[k] = read_image(self.paths[i], size, storage_options=self.store.storage_options)
            except Exception as err:  # noqa: BLE001 - a moved or unreadable input must not stop the report
                errors[k] = f"{self.paths[i]}: {type(err).__name__}: {err}"
        return images, errors


def read_image(path: str, size: int, *, storage_options: Mapping[str, Any] | None = None) -> np.ndarray:
    """An image file (local path or fsspec URL) as uint8 `[size, size, 3]` RGB."""
    from PIL import Image

    with fsspec.open(path, "rb", **dict(storage_options or {})) as f:
        data = f.read()
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.LANCZOS))


def collect(store_url: str, *, storage_options: Mapping[str, Any] | None = None) -> RunData:
    """Reads the per-item arrays and result-group attributes of the store at `store_url` (opened read-only). Metric
    names are the registry's (ganinv/item_metrics.py), older spellings included."""
    store = LatentStore.open(store_url, "r", storage_options=storage_options)
    return RunData(store=store, image_ids=store.image_ids(), paths=store.paths(), status=store.status(),
                   errors=store.errors(),
                   metrics={canonical_name(m): values for m, values in store.metrics().items()},
                   labels=store.labels(), results={kind: store.result_groups(kind) for kind in RESULT_KINDS},
                   runs=tuple(read_runs(store)))
