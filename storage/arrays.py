"""The store's node names and how its item arrays are made: the one place an array name is spelled (docs/store.md
draws the layout). Code outside storage/ reads through `LatentStore`'s typed readers, never by these names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from storage.schema import STATUS_NAMES, Layout, Status, StoreAttributes

# Item arrays (every one [N, ...], chunked along the item axis).
IMAGE_ID, PATH, SOURCE_SHA256 = "image_id", "path", "source_sha256"
WS, Z, THUMBNAILS = "ws", "z", "thumbnails"
STATUS, ERROR, ATTEMPTS = "status", "error", "attempts"
METRICS, LABELS = "metrics", "labels"  # groups of one [N] float32 array per metric / label
# Other groups.
# Downstream results, one child group each (storage/results.py); refinements: per-item tuning (refinements.py).
RESULT_KINDS = ("directions", "edits", "refinements")
LEASE = "lease"                         # run lease records (storage/lease.py)
SCAN_CACHE = "scan_cache"               # the dataset scan's hash cache (storage/scan_cache.py)
RUNS = "runs"                           # the run log: one group of attributes per run (storage/runs.py)
ROOT_COPY, ROOT_COPY_KEY = "root_copy", "root_attributes"  # a copy of the root attributes (storage/verify.py)

# Users pick the ws compressor by name (`compressor=`); the name is recorded in chunking.ws_compressor.
WS_COMPRESSORS: dict[str, Callable[[], list]] = {
    "zstd": lambda: [ZstdCodec(level=1)],
    "blosc-lz4": lambda: [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
    "none": lambda: [],
}


def metric(name: str) -> str:
    return f"{METRICS}/{name}"


def label(name: str) -> str:
    return f"{LABELS}/{name}"


def item_array_names(layout: Layout) -> list[str]:
    """Every item array of a store with this layout; `status` last (growth resizes it last)."""
    names = [IMAGE_ID, PATH, SOURCE_SHA256, WS, ERROR, ATTEMPTS]
    names += [Z] * (layout.z_dim is not None) + [THUMBNAILS] * (layout.thumbnail_size is not None)
    names += [metric(m) for m in layout.metrics] + [label(a) for a in layout.labels]
    return names + [STATUS]


def create_arrays(group: zarr.Group, attrs: StoreAttributes, *, compressor: str) -> None:
    """The empty item arrays and groups of a new store."""
    layout, c = attrs.layout, attrs.chunking.chunk_items
    coord = {"coordinates": IMAGE_ID}
    for name, long_name in ((IMAGE_ID, "image id"), (PATH, "input path relative to dataset.root"),
                            (SOURCE_SHA256, "sha256 of the input file")):
        create_item_array(group, name, n=0, chunk_items=c, dtype=str, fill_value="",
                          attrs={"long_name": long_name, **({} if name == IMAGE_ID else coord)})
    create_item_array(group, WS, n=0, chunk_items=c, dtype="float32", fill_value=np.nan,
                      inner=(layout.num_ws, layout.w_dim), dims=("item", "layer", "channel"),
                      compressors=WS_COMPRESSORS[compressor](), attrs={"long_name": "W+ latent codes", **coord})
    if layout.z_dim is not None:
        create_item_array(group, Z, n=0, chunk_items=c, dtype="float32", fill_value=np.nan, inner=(layout.z_dim,),
                          dims=("item", "z_channel"), attrs={"long_name": "Z latent codes", **coord})
    if layout.thumbnail_size is not None:
        t = layout.thumbnail_size
        create_item_array(group, THUMBNAILS, n=0, chunk_items=c, dtype="uint8", fill_value=0, inner=(t, t, 3),
                          dims=("item", "y", "x", "rgb"), attrs={"long_name": "reconstruction thumbnails", **coord})
    codes = sorted(STATUS_NAMES)
    create_item_array(group, STATUS, n=0, chunk_items=c, dtype="uint8", fill_value=int(Status.PENDING),
                      attrs={"long_name": "inversion status", "flag_values": codes,
                             "flag_meanings": " ".join(STATUS_NAMES[k] for k in codes), **coord})
    create_item_array(group, ERROR, n=0, chunk_items=c, dtype=str, fill_value="",
                      attrs={"long_name": "error message of failed items", **coord})
    create_item_array(group, ATTEMPTS, n=0, chunk_items=c, dtype="uint8", fill_value=0,
                      attrs={"long_name": "executions that wrote a result for the item", **coord})
    metrics = group.create_group(METRICS, attributes={"long_name": "per-item inversion metrics"})
    for name in layout.metrics:
        create_item_array(metrics, name, n=0, chunk_items=c, dtype="float32", fill_value=np.nan,
                          attrs={"long_name": f"metric {name}"})
    group.create_group(LABELS, attributes={"long_name": "per-item labels from the dataset's attribute table"})
    for kind in RESULT_KINDS:
        group.create_group(kind, attributes={"long_name": f"downstream {kind}; each child says how it was made"})
    group.create_group(LEASE, attributes={"long_name": "run lease records, see storage/lease.py"})


def create_label_array(group: zarr.Group, name: str, *, n: int, chunk_items: int) -> zarr.Array:
    return create_item_array(group, label(name), n=n, chunk_items=chunk_items, dtype="float32", fill_value=np.nan,
                             attrs={"long_name": f"label {name}"})


def create_item_array(group: zarr.Group, name: str, *, n: int, chunk_items: int, dtype: Any, fill_value: Any,
                      inner: tuple[int, ...] = (), dims: tuple[str, ...] = ("item",), compressors: Any = "auto",
                      attrs: Mapping[str, Any] | None = None) -> zarr.Array:
    return group.create_array(name, shape=(n,) + inner, chunks=(chunk_items,) + inner, dtype=dtype,
                              fill_value=fill_value, dimension_names=dims, compressors=compressors,
                              attributes=dict(attrs or {}))
