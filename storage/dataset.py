r"""The store as one xarray Dataset: `open_dataset(url)` gives ws, z, thumbnails, status, error, attempts, path,
source_sha256, `metric_<name>` and `label_<attr>`, dask-backed, aligned on an `image_id` index; text decoded from its
fixed-width UTF-8 rows (storage/text.py) into Python strings.

The same with xarray alone (no ganinv), for a store of schema v2::

    import xarray as xr
    root = xr.open_zarr(url)                    # ws, status, ... and the text arrays as uint8 rows [item, char]
    ids = [row.tobytes().rstrip(b"\0").decode("utf-8") for row in root.image_id.values]
    metrics, labels = xr.open_zarr(url, group="metrics"), xr.open_zarr(url, group="labels")
    ds = xr.merge([root.drop_vars(["image_id", "path", "source_sha256", "error"]),
                   metrics.rename({name: f"metric_{name}" for name in metrics.data_vars}),
                   labels.rename({name: f"label_{name}" for name in labels.data_vars})])
    ds = ds.assign_coords(image_id=("item", ids)).swap_dims(item="image_id")

`xarray.open_zarr(url)` alone shows the root's arrays only (metrics and labels are groups); `xarray.open_datatree(url,
engine="zarr")` opens every group (edit runs have their own item axis, so they align with the root).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from storage import arrays, text

if TYPE_CHECKING:
    import xarray

    from storage._zarr import zarr

    from storage.latent_store import LatentStore

_ORDER = (arrays.WS, arrays.Z, arrays.THUMBNAILS, arrays.STATUS, arrays.ERROR, arrays.ATTEMPTS, arrays.PATH,
          arrays.SOURCE_SHA256)


def open_dataset(url: str, *, storage_options: Mapping[str, Any] | None = None, chunks: Any = None
                 ) -> xarray.Dataset:
    """The store at `url` as one Dataset with dimension `image_id` (indexed): `ds.sel(image_id="cat.png").ws`,
    `ds.metric_psnr.where(ds.status == 1)`, `xr.align(ds, other)`; `item` (the store row) is a coordinate."""
    from storage.latent_store import LatentStore

    ds = to_xarray(LatentStore.open(url, "r", storage_options=storage_options), chunks=chunks)
    ds = ds.drop_indexes(arrays.IMAGE_ID).assign_coords(item=("item", np.arange(ds.sizes["item"])))
    return ds.swap_dims({"item": arrays.IMAGE_ID})


def to_xarray(store: LatentStore, *, chunks: Any = None) -> xarray.Dataset:
    """`LatentStore.to_xarray`: dimension `item`, image_id an indexed coordinate."""
    import xarray as xr

    root = open_group(store._zstore, None, chunks=chunks)
    parts = [root.drop_vars([n for n in arrays.TEXT_ARRAYS if n in root])]
    parts.append(xr.Dataset({name: ("item", _lazy_text(root[name].data)) for name in arrays.TEXT_ARRAYS
                             if name in root and name != arrays.IMAGE_ID}))
    for group, prefix in ((arrays.METRICS, "metric_"), (arrays.LABELS, "label_")):
        sub = open_group(store._zstore, group, chunks=chunks)
        parts.append(sub.rename({v: prefix + str(v) for v in sub.data_vars}))
    merged = xr.merge(parts, combine_attrs="override", join="exact", compat="no_conflicts")
    order = [n for n in _ORDER if n in merged]
    order += [f"metric_{m}" for m in store.layout.metrics] + [f"label_{a}" for a in store.layout.labels]
    image_id = store.image_ids()  # small next to ws; an in-memory index makes sel(image_id=...) work
    return merged[order].assign_coords(image_id=("item", image_id)).set_xindex(arrays.IMAGE_ID)


def open_group(zstore: zarr.abc.store.Store, group: str | None, *, chunks: Any = None) -> xarray.Dataset:
    """One group of the store (None: the root's arrays) as xarray.open_zarr gives it, dask-backed."""
    import xarray as xr

    return xr.open_zarr(zstore, group=group, consolidated=False, chunks={} if chunks is None else chunks)


def _lazy_text(data: Any) -> Any:
    """A text array's dask data as Python strings per item, decoded chunk by chunk when computed (v1 strings as
    they are)."""
    if not text.is_fixed(data.dtype, data.ndim):
        return data
    return data.map_blocks(text.decode, drop_axis=1, dtype=object)
