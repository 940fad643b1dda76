"""Result groups: `directions/<name>` and `edits/<run>`, each saying in its attributes how it was made (method,
config, inputs), when, by which ganinv, from which manifest. Creating and updating them is coordinator work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ganinv import __version__ as ganinv_version
from storage import arrays
from storage._zarr import zarr
from storage.growth import now_iso
from storage.schema import check_name, to_jsonable

if TYPE_CHECKING:
    from storage.latent_store import LatentStore


def create(store: LatentStore, kind: str, name: str, *, made_by: Any, overwrite: bool = False) -> zarr.Group:
    """`<kind>/<name>` with attributes made_by (saved verbatim), created, ganinv_version and the store's manifest
    hash and item count. Write arrays into it with dimension_names, then consolidate the store."""
    check_kind(kind)
    check_name(name, what=kind)
    made_by = to_jsonable(made_by)
    if not made_by:
        raise ValueError(f"{kind}/{name}: made_by must say how the result was made (method, config, inputs)")
    attrs = {"created": now_iso(), "ganinv_version": ganinv_version, "made_by": made_by,
             "store_manifest_hash": store.attributes.dataset.manifest_hash, "store_num_items": store.num_items}
    return store.group.require_group(kind).create_group(name, overwrite=overwrite, attributes=attrs)


def listing(store: LatentStore, kind: str) -> dict[str, dict[str, Any]]:
    """Name -> attributes of the result groups under `kind` (none for a store made before the kind existed)."""
    check_kind(kind)
    try:
        parent = store.group[kind]
    except KeyError:
        return {}
    return {name: dict(child.attrs) for name, child in parent.groups()}


def find(store: LatentStore, kind: str, name: str) -> dict[str, Any] | None:
    """The attributes of `<kind>/<name>`, or None if there is no such group (one group read, not a listing)."""
    try:
        return dict(group(store, kind, name).attrs)
    except KeyError:
        return None


def group(store: LatentStore, kind: str, name: str) -> zarr.Group:
    """The group `<kind>/<name>` (one group read, not a listing); KeyError if absent."""
    check_kind(kind)
    return store.group[f"{kind}/{name}"]


def check_kind(kind: str) -> None:
    if kind not in arrays.RESULT_KINDS:
        raise ValueError(f"kind={kind!r}: results are under one of {arrays.RESULT_KINDS}")
