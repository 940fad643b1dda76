"""Typed reads of a store's items (mixed into `LatentStore`): what callers outside storage/ use instead of array
names. Every reader returns numpy arrays in store order; `rows` is None (every item), a slice, or item indices in
any order (the result follows that order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from storage import arrays, text
from storage.errors import NotInStoreError, StoreCorruptError, corrupt_message
from storage.schema import STATUS_NAMES, Status
from storage.shards import resolve_item_path

Rows = slice | Sequence[int] | np.ndarray | None


class ItemReaders:
    """Reads of the item arrays; the host class provides `array(name)`, `num_items`, `chunk_items`, `url`, `layout`
    and `attributes`."""

    def status(self, rows: Rows = None) -> np.ndarray:
        """uint8 status codes (`storage.Status`)."""
        return np.asarray(self._read(arrays.STATUS, rows), np.uint8)

    def status_counts(self) -> dict[str, int]:
        """Number of items per status name (pending / done / failed)."""
        status = self.status()
        return {name: int((status == code).sum()) for code, name in STATUS_NAMES.items()}

    def done(self) -> np.ndarray:
        """bool: the items whose codes are written and vouched for."""
        return self.status() == Status.DONE

    def image_ids(self, rows: Rows = None) -> np.ndarray:
        return text.decode(self._read(arrays.IMAGE_ID, rows))

    def errors(self, rows: Rows = None) -> np.ndarray:
        """Why each item failed ('' for the others)."""
        return text.decode(self._read(arrays.ERROR, rows))

    def attempts(self, rows: Rows = None) -> np.ndarray:
        return np.asarray(self._read(arrays.ATTEMPTS, rows), np.uint8)

    def paths(self, rows: Rows = None) -> tuple[str, ...]:
        """Input paths resolved against the dataset root (readable from where the store's runs read them)."""
        root = self.attributes.dataset.root
        return tuple(resolve_item_path(root, p) for p in text.decode(self._read(arrays.PATH, rows)))

    def source_sha256(self, rows: Rows = None) -> np.ndarray:
        return text.decode(self._read(arrays.SOURCE_SHA256, rows))

    def ws(self, rows: Rows = None) -> np.ndarray:
        """float32 `[n, num_ws, w_dim]`, NaN where not written."""
        return np.asarray(self._read(arrays.WS, rows), np.float32)

    def thumbnails(self, rows: Rows = None) -> np.ndarray:
        """uint8 `[n, t, t, 3]` reconstructions; the store must have thumbnails."""
        if self.layout.thumbnail_size is None:
            raise ValueError(f"{self.url} has no thumbnails (create the store with thumbnail_size=)")
        return np.asarray(self._read(arrays.THUMBNAILS, rows), np.uint8)

    def metrics(self, names: Sequence[str] | None = None, rows: Rows = None) -> dict[str, np.ndarray]:
        """float64 per-item metrics by name (default: every metric of the store)."""
        names = self.layout.metrics if names is None else names
        _check_known(names, self.layout.metrics, "metrics", self.url)
        return {m: np.asarray(self._read(arrays.metric(m), rows), np.float64) for m in names}

    def labels(self, names: Sequence[str] | None = None, rows: Rows = None) -> dict[str, np.ndarray]:
        """float64 per-item labels by name (default: every label of the store), NaN where an item lacks one."""
        names = self.layout.labels if names is None else names
        _check_known(names, self.layout.labels, "labels", self.url)
        return {a: np.asarray(self._read(arrays.label(a), rows), np.float64) for a in names}

    def failed_items(self, *, limit: int | None = None) -> list[dict[str, str]]:
        """[{'image_id', 'error'}] of the failed items, in store order (the first `limit`)."""
        index = np.flatnonzero(self.status() == Status.FAILED)[:limit]
        if index.size == 0:
            return []
        return [{"image_id": str(i), "error": str(e)} for i, e in zip(self.image_ids(index), self.errors(index))]

    def _read(self, name: str, rows: Rows) -> Any:
        """The rows of array `name`; a chunk that fails its checksum (or cannot be decoded) is a StoreCorruptError
        naming the chunk and the repair, not a codec's traceback."""
        array = self.array(name)
        try:
            return self._select(array, rows)
        except (ValueError, RuntimeError) as err:
            chunks = self._corrupt_chunks(array, rows)
            if not chunks:
                raise
            raise StoreCorruptError(corrupt_message(self.url, name, chunks, self.chunk_items,
                                                    f"{type(err).__name__}: {err}"), array=name, chunks=chunks
                                    ) from err

    def _corrupt_chunks(self, array: Any, rows: Rows) -> tuple[int, ...]:
        c, n = self.chunk_items, array.shape[0]
        if rows is None:
            candidates = range(-(-n // c))
        elif isinstance(rows, slice):
            start, stop, _ = rows.indices(n)
            candidates = range(start // c, -(-stop // c))
        else:
            candidates = np.unique(np.asarray(rows, np.int64) // c).tolist()
        found = []
        for k in candidates:
            try:
                array[k * c:(k + 1) * c]
            except (ValueError, RuntimeError):
                found.append(int(k))
        return tuple(found)

    def _select(self, array: Any, rows: Rows) -> Any:
        if rows is None:
            return array[: self.num_items]
        if isinstance(rows, slice):
            return array[rows]
        index = np.asarray(rows, np.int64)
        if index.size == 0:
            return np.zeros((0,) + array.shape[1:], array.dtype)
        order = np.argsort(index, kind="stable")  # zarr wants ascending orthogonal indices
        values = array.get_orthogonal_selection((index[order],))
        return values[np.argsort(order, kind="stable")]


def _check_known(names: Sequence[str], have: Sequence[str], what: str, url: str) -> None:
    missing = [n for n in names if n not in have]
    if missing:
        raise NotInStoreError(f"{what} {missing} are not in {url}; it has {list(have) or 'none'}")
