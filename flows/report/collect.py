"""Step 1 of a report: read what a latent store says about its run (per-item status, errors, metrics, labels,
provenance, downstream result groups), and the pictures it needs (reconstruction thumbnails, resized originals)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from storage import LatentStore, Status
from storage.latent_store import resolve_item_path
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
        index = np.asarray(indices, np.int64)
        if self.thumbnail_size is None:
            raise ValueError(f"{self.store.url} has no thumbnails (create the store with thumbnail_size=)")
        if index.size == 0:
            t = self.thumbnail_size
            return np.zeros((0, t, t, 3), np.uint8)
        order = np.argsort(index)  # zarr wants ascending orthogonal indices
        values = self.store.array("thumbnails").get_orthogonal_selection((index[order],))
        return values[np.argsort(order)]

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
    """Reads the per-item arrays and result-group attributes of the store at `store_url` (opened read-only)."""
    store = LatentStore.open(store_url, "r", storage_options=storage_options)
    n, layout = store.num_items, store.layout
    read = lambda name: store.array(name)[:n]  # noqa: E731
    root = store.attributes.dataset.root
    paths = tuple(resolve_item_path(root, str(p)) for p in read("path"))
    strings = lambda name: np.array([str(v) for v in read(name)], dtype=object)  # noqa: E731 - zarr StringDType
    return RunData(store=store, image_ids=strings("image_id"), paths=paths, status=read("status"),
                   errors=strings("error"),
                   metrics={m: read(f"metrics/{m}").astype(np.float64) for m in layout.metrics},
                   labels={a: read(f"labels/{a}").astype(np.float64) for a in layout.labels},
                   results={kind: _result_groups(store, kind) for kind in ("directions", "edits")})


def _result_groups(store: LatentStore, kind: str) -> dict[str, dict[str, Any]]:
    try:
        return store.result_groups(kind)
    except KeyError:  # a store made before the group existed
        return {}
