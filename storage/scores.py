"""Store-wide scores: per-item metrics that only the whole store can give (an item's out-of-distribution score is
its rank among every item of the store), written by the coordinator after the shards, not by a shard's worker.

The metric array is an ordinary `metrics/<name>` of the layout (created with the store, grown by appends); writing
it whole, under the run lease, after every worker of the run has finished, is safe (docs/store.md: coordinator
operations). A rerun recomputes it, so scores follow the store as it grows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from storage import arrays
from storage.errors import NotInStoreError

if TYPE_CHECKING:
    from storage.latent_store import LatentStore


def write_item_metric(store: LatentStore, name: str, values: np.ndarray) -> None:
    """Replaces metric `name` of every item (`values [num_items]`, NaN where it has none); coordinator only."""
    store._require_writable()
    store._coordinator_check()
    if name not in store.layout.metrics:
        raise NotInStoreError(f"metric {name!r} is not in {store.url} (it has {list(store.layout.metrics)})")
    values = np.asarray(values, np.float32)
    if values.shape != (store.num_items,):
        raise ValueError(f"metric {name!r} needs {store.num_items} values, got shape {values.shape}")
    store.array(arrays.metric(name))[: store.num_items] = values
