"""Refinement passes: more optimisation steps for a store's codes (`ganinv refine`, `ganinv.inversion.refine`).

A pass continues every done item below its target step count to that count, and replaces the item's codes,
thumbnail and metrics in place: every reader of the store (the report, directions, edits, xarray) sees the refined
codes without learning a new layout, and the item's `metrics/steps` says how many steps its codes have had. What the
pass replaced is kept in its group, so nothing a run wrote is lost and the gain stays measurable:

    refinements/steps-<T>/zarr.json  attributes: created, ganinv_version, made_by, store_manifest_hash (results.py),
                                     steps = {target_steps: T, more_steps, from_steps, space, config (the continued
                                     InversionConfig), generator, complete}
    previous_ws                [item, layer, channel] float32, NaN until written: the codes the pass started from
    previous_metrics/<name>    [item] float32: their metrics (the store's metrics a refinement rewrites)

A worker writes, for the items of its shard: first `previous_*` (only rows not written yet: a re-run after a crash
starts again from the same codes), then `ws`, `thumbnails`, the metrics, and `metrics/steps` last: it vouches for
the rest, as `status` does for an inversion. An item whose `steps` reached T is done for the pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from storage import arrays, refinements, shards
from storage.errors import NotInStoreError

if TYPE_CHECKING:
    from storage.latent_store import LatentStore

KIND, PREFIX, ATTRS = "refinements", "steps-", "steps"
STEPS = "steps"  # the per-item metric that says how many steps an item's codes have had
PREVIOUS_WS, PREVIOUS_METRICS = "previous_ws", "previous_metrics"
# The metrics a refinement does not rewrite: the encoder's own reconstruction, pivotal tuning's pivot, the store-wide
# out-of-distribution score (computed from the encoder's metrics) and restoration scores.
KEPT_PREFIXES = ("encoder_", "pivot_", "restored_", "kept_", "baseline_", "ood_score")


def pass_name(target_steps: int) -> str:
    return f"{PREFIX}{int(target_steps)}"


def passes(store: LatentStore) -> list[dict[str, Any]]:
    """Every refinement pass's `steps` attributes (with its group `name`), by target step count."""
    found = [{**attrs[ATTRS], "name": name} for name, attrs in store.result_groups(KIND).items()
             if name.startswith(PREFIX) and ATTRS in attrs]
    return sorted(found, key=lambda p: p["target_steps"])


def rewritten_metrics(store: LatentStore) -> tuple[str, ...]:
    """The store's metrics a refinement rewrites (its reconstruction's, the loss, steps, seconds)."""
    return tuple(m for m in store.layout.metrics if not m.startswith(KEPT_PREFIXES))


def create_pass(store: LatentStore, attrs: Mapping[str, Any], *, made_by: Mapping[str, Any]) -> None:
    """Creates `refinements/steps-<T>` (coordinator, under the lease) with `previous_*` arrays for every item."""
    name = pass_name(attrs["target_steps"])
    group = store.result_group(KIND, name, made_by=made_by)
    group.attrs.update({ATTRS: {**dict(attrs), "complete": False}})
    layout, chunk, n = store.layout, store.chunk_items, store.num_items
    coords = {"coordinates": "image_id"}
    arrays.create_item_array(group, PREVIOUS_WS, n=n, chunk_items=chunk, dtype="float32", fill_value=np.nan,
                             inner=(layout.num_ws, layout.w_dim), dims=("item", "layer", "channel"),
                             attrs={"long_name": f"W+ codes before the pass to {attrs['target_steps']} steps",
                                    **coords})
    previous = group.create_group(PREVIOUS_METRICS)
    for metric in rewritten_metrics(store):
        arrays.create_item_array(previous, metric, n=n, chunk_items=chunk, dtype="float32", fill_value=np.nan,
                                 attrs={"long_name": f"metric {metric} before the pass", **coords})
    store.consolidate()


def _names(store: LatentStore, name: str) -> list[str]:
    return [f"{KIND}/{name}/{PREVIOUS_WS}"] + [f"{KIND}/{name}/{PREVIOUS_METRICS}/{m}"
                                               for m in rewritten_metrics(store)]


def grow_pass(store: LatentStore, name: str) -> None:
    """The pass's arrays to the store's item count (coordinator, when resuming a pass after items were appended)."""
    refinements.grow(store, _names(store, name))


def finish_pass(store: LatentStore, name: str, **values: Any) -> None:
    """Marks the pass complete (coordinator), with `values` (counts) added to its attributes."""
    attrs = store.result_attrs(KIND, name)[ATTRS]
    store.update_result_attrs(KIND, name, **{ATTRS: {**attrs, **values, "complete": True}})
    store.consolidate()


def steps(store: LatentStore) -> np.ndarray:
    """`[num_items]` float32: the optimisation steps each item's codes have had (NaN where not done)."""
    if STEPS not in store.layout.metrics:
        raise NotInStoreError(f"{store.url} has no per-item '{STEPS}' metric: it was made by a ganinv that did not "
                              "record it and cannot be refined")
    return store.array(arrays.metric(STEPS))[: store.num_items]


def start_codes(store: LatentStore, name: str, indices: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(ws, metrics) the pass starts the items `indices` (ascending, one shard's) from: the kept previous values where
    a worker wrote them already (a re-run after a crash), else the store's own, which are kept now (worker side,
    before the items are refined)."""
    indices = np.asarray(indices, np.int64)
    rows = shards.region(indices)
    metrics = rewritten_metrics(store)
    _fence(store)
    kept_ws = np.asarray(store._read(f"{KIND}/{name}/{PREVIOUS_WS}", indices), np.float32)
    kept = {m: np.asarray(store._read(f"{KIND}/{name}/{PREVIOUS_METRICS}/{m}", indices), np.float32)
            for m in metrics}
    written = np.isfinite(kept_ws).all(axis=(1, 2))
    if written.all():
        return kept_ws, kept
    ws = store.ws(indices)
    current = {m: v.astype(np.float32) for m, v in store.metrics(metrics, indices).items()}
    ws[written] = kept_ws[written]
    for m in metrics:
        current[m] = np.where(written, kept[m], current[m]).astype(np.float32)
    shards.write_region(store, f"{KIND}/{name}/{PREVIOUS_WS}", rows, ws)
    for m in metrics:
        shards.write_region(store, f"{KIND}/{name}/{PREVIOUS_METRICS}/{m}", rows, current[m])
    return ws, current


def write_refined(store: LatentStore, indices: np.ndarray, ws: np.ndarray, metrics: Mapping[str, np.ndarray],
                  thumbnails: np.ndarray | None) -> None:
    """Replaces the codes, thumbnails and `metrics` of the items `indices` (ascending, one shard's; worker side),
    `metrics/steps` last."""
    if len(indices) == 0:
        return
    rows = shards.region(np.asarray(indices, np.int64))
    _fence(store)
    shards.write_region(store, arrays.WS, rows, np.asarray(ws, np.float32))
    if store.layout.thumbnail_size is not None and thumbnails is not None:
        shards.write_region(store, arrays.THUMBNAILS, rows, np.asarray(thumbnails, np.uint8))
    names = [m for m in metrics if m != STEPS and m in store.layout.metrics]
    for m in names:
        shards.write_region(store, arrays.metric(m), rows, np.asarray(metrics[m], np.float32))
    shards.write_region(store, arrays.metric(STEPS), rows, np.asarray(metrics[STEPS], np.float32))


def previous(store: LatentStore, name: str, metric_names: Sequence[str] | None = None
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(codes, metrics) of every item before pass `name` (NaN for items it did not refine): for undo."""
    ws = np.asarray(store._read(f"{KIND}/{name}/{PREVIOUS_WS}", None), np.float32)
    return _padded(store, ws), previous_metrics(store, name, metric_names)


def previous_metrics(store: LatentStore, name: str, metric_names: Sequence[str] | None = None
                     ) -> dict[str, np.ndarray]:
    """The metrics of every item before pass `name` (NaN for items it did not refine), without reading its codes
    (N x num_ws x w_dim floats): what reports compare."""
    names = rewritten_metrics(store) if metric_names is None else metric_names
    return {m: _padded(store, np.asarray(store._read(f"{KIND}/{name}/{PREVIOUS_METRICS}/{m}", None), np.float32))
            for m in names}


def _padded(store: LatentStore, values: np.ndarray) -> np.ndarray:
    """`values` of a pass with NaN rows for the items appended after it was created."""
    pad = store.num_items - len(values)
    return np.concatenate([values, np.full((pad,) + values.shape[1:], np.nan, np.float32)]) if pad > 0 else values


def _fence(store: LatentStore) -> None:
    """A worker of a run writes only while its run holds the lease (as `LatentStore.write_shard` checks)."""
    store._require_writable()
    store._check_fence()
