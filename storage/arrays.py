"""The store's node names and how its item arrays are made: the one place an array name is spelled (docs/store.md
draws the layout). Code outside storage/ reads through `LatentStore`'s typed readers, never by these names.

Every array made here ends its codec chain with a CRC-32C checksum (`with_checksum`); text is fixed-width UTF-8
bytes (storage/text.py). Stores of schema v1 have neither: readers accept both (docs/store.md, "Schema versions")."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from storage import text
from storage._zarr import zarr
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
    "zstd": lambda: [zarr.codecs.ZstdCodec(level=1)],
    "blosc-lz4": lambda: [zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
    "none": lambda: [],
}
# Text arrays (schema v2, storage/text.py): UTF-8 bytes per item, at most this many.
TEXT_WIDTHS = {IMAGE_ID: 1024, PATH: 1024, SOURCE_SHA256: 64, ERROR: 1024}
TEXT_ARRAYS = tuple(TEXT_WIDTHS)
ITEM_DIM = "item"


def default_compressors() -> list:
    """What every array but ws is compressed with (zarr's own default for numbers)."""
    return [zarr.codecs.ZstdCodec(level=0)]


def with_checksum(compressors: Sequence[Any] | None = None) -> list:
    """`compressors` (default: `default_compressors()`), then a CRC-32C of the stored bytes: zarr checks it on every
    read of the chunk and raises ValueError on a mismatch, so a flipped byte is found, never read as data
    (storage/verify.py)."""
    return [*(default_compressors() if compressors is None else compressors), zarr.codecs.Crc32cCodec()]


def has_checksum(array: zarr.Array) -> bool:
    return any(isinstance(codec, zarr.codecs.Crc32cCodec) for codec in array.compressors)


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


def data_array_names(layout: Layout) -> list[str]:
    """The item arrays an inversion writes for a done item (what `status` vouches for)."""
    names = [WS] + [Z] * (layout.z_dim is not None) + [THUMBNAILS] * (layout.thumbnail_size is not None)
    return names + [metric(m) for m in layout.metrics]


def create_arrays(group: zarr.Group, attrs: StoreAttributes, *, compressor: str, n: int = 0,
                  only_missing: bool = False) -> list[str]:
    """The item arrays and groups of a new store (`n` items); with `only_missing`, those an interrupted creation
    left out. Returns the names created."""
    made = []
    for name, make in _item_array_makers(attrs, compressor).items():
        if only_missing and _exists(group, name):
            continue
        make(group, n)
        made.append(name)
    for name, long_name in _GROUPS.items():
        if not (only_missing and _exists(group, name)):
            group.require_group(name).attrs.put({"long_name": long_name})
    return made


_GROUPS = {METRICS: "per-item inversion metrics", LABELS: "per-item labels from the dataset's attribute table",
           **{kind: f"downstream {kind}; each child says how it was made" for kind in RESULT_KINDS},
           LEASE: "run lease records, see storage/lease.py"}


def _item_array_makers(attrs: StoreAttributes, compressor: str) -> dict[str, Callable[[zarr.Group, int], Any]]:
    layout, c = attrs.layout, attrs.chunking.chunk_items
    makers: dict[str, Callable[[zarr.Group, int], Any]] = {}

    def add(name: str, **kwargs: Any) -> None:
        makers[name] = lambda group, n: create_item_array(group, name, n=n, chunk_items=c, **kwargs)

    def add_text(name: str, long_name: str) -> None:
        makers[name] = lambda group, n: create_text_array(group, name, n=n, chunk_items=c,
                                                          attrs={"long_name": long_name})

    add_text(IMAGE_ID, "image id")
    add_text(PATH, "input path relative to dataset.root")
    add_text(SOURCE_SHA256, "sha256 of the input file")
    add(WS, dtype="float32", fill_value=np.nan, inner=(layout.num_ws, layout.w_dim),
        dims=(ITEM_DIM, "layer", "channel"), compressors=WS_COMPRESSORS[compressor](),
        attrs={"long_name": "W+ latent codes"})
    if layout.z_dim is not None:
        add(Z, dtype="float32", fill_value=np.nan, inner=(layout.z_dim,), dims=(ITEM_DIM, "z_channel"),
            attrs={"long_name": "Z latent codes"})
    if layout.thumbnail_size is not None:
        t = layout.thumbnail_size
        add(THUMBNAILS, dtype="uint8", fill_value=0, inner=(t, t, 3), dims=(ITEM_DIM, "y", "x", "rgb"),
            attrs={"long_name": "reconstruction thumbnails"})
    codes = sorted(STATUS_NAMES)
    add(STATUS, dtype="uint8", fill_value=int(Status.PENDING),
        attrs={"long_name": "inversion status", "flag_values": codes,
               "flag_meanings": " ".join(STATUS_NAMES[k] for k in codes)})
    add_text(ERROR, "error message of failed items")
    add(ATTEMPTS, dtype="uint8", fill_value=0, attrs={"long_name": "executions that wrote a result for the item"})
    for name in layout.metrics:
        add(metric(name), dtype="float32", fill_value=np.nan, attrs={"long_name": f"metric {name}"})
    for name in layout.labels:
        makers[label(name)] = lambda group, n, name=name: create_label_array(group, name, n=n, chunk_items=c)
    return makers


def _exists(group: zarr.Group, name: str) -> bool:
    try:
        group[name]
    except KeyError:
        return False
    return True


def create_label_array(group: zarr.Group, name: str, *, n: int, chunk_items: int) -> zarr.Array:
    return create_item_array(group, label(name), n=n, chunk_items=chunk_items, dtype="float32", fill_value=np.nan,
                             attrs={"long_name": f"label {name}"})


def text_column(array: zarr.Array, name: str, values: Sequence[str], *, truncate: bool = False) -> np.ndarray:
    """`values` as the text array `array` (named `name`) holds them: fixed-width rows, or strings in a v1 store."""
    return text.column(array.dtype, array.ndim, text.width_of(array.attrs, array.shape), values,
                       what=name.replace("_", " "), truncate=truncate)


def create_text_array(group: zarr.Group, name: str, *, n: int, chunk_items: int, dim: str = ITEM_DIM,
                      width: int | None = None, attrs: Mapping[str, Any] | None = None) -> zarr.Array:
    """A fixed-width UTF-8 text array `uint8 [n, width]` (storage/text.py), chunked like the item arrays."""
    width = TEXT_WIDTHS[name] if width is None else width
    return create_item_array(group, name, n=n, chunk_items=chunk_items, dtype="uint8", fill_value=0, inner=(width,),
                             dims=(dim, text.dimension(name)), attrs={**dict(attrs or {}), **text.attributes(width)})


def create_item_array(group: zarr.Group, name: str, *, n: int, chunk_items: int, dtype: Any, fill_value: Any,
                      inner: tuple[int, ...] = (), dims: tuple[str, ...] = (ITEM_DIM,),
                      compressors: Sequence[Any] | None = None,
                      attrs: Mapping[str, Any] | None = None) -> zarr.Array:
    """An array chunked `chunk_items` along its first axis, compressed with `compressors` (default:
    `default_compressors()`) and checksummed."""
    return group.create_array(name, shape=(n,) + inner, chunks=(chunk_items,) + inner, dtype=dtype,
                              fill_value=fill_value, dimension_names=dims, compressors=with_checksum(compressors),
                              attributes=dict(attrs or {}))
