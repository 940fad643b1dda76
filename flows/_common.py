"""Pieces the flows share: run ids, the run lease around writes, writing directions."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from ganinv.directions.direction import Direction
from storage import LatentStore
from storage.directions import list_directions, write_directions
from storage.lease import RENEWED_LEASE_TTL_S


def new_run_id(flow_name: str) -> str:
    """`<flow_name>-<Prefect flow run id>` (a fresh random id outside Prefect): names the run holding a store's lease,
    so `store-info` and a refused second run say which flow holds it."""
    return f"{flow_name}-{flow_run.get_id() or uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def writing(store: LatentStore, prefix: str) -> Iterator[LatentStore]:
    """Holds the store's run lease while result groups are written (refuses while another run holds it)."""
    with store.acquire_lease(new_run_id(prefix), ttl_s=RENEWED_LEASE_TTL_S):
        yield store


def save_directions(store: LatentStore, directions: Sequence[Direction], *, made_by: Mapping[str, Any],
                    overwrite: bool, prefix: str) -> list[str]:
    """Writes the directions under the lease; refuses (before writing any) names that exist unless overwrite."""
    clash = sorted(set(list_directions(store)) & {d.name for d in directions})
    if clash and not overwrite:
        raise FileExistsError(f"{store.url} already has directions {clash}: pass overwrite=True (--overwrite) to "
                              "replace them")
    with writing(store, prefix):
        return write_directions(store, directions, made_by=made_by, overwrite=overwrite)


def directions_artifact(key: str, directions: Sequence[Direction], description: str) -> None:
    """One table row per direction: name, method, space, layers, scale and its headline metrics."""
    keys = ("attribute", "conditions", "val_accuracy", "num_train", "eigenvalue", "explained_variance_ratio")
    rows = [dict(name=d.name, method=d.method, space=d.space, layers="all" if d.layers is None else str(list(d.layers)),
                 scale=round(d.scale, 4), **{k: _short(d.provenance[k]) for k in keys if k in d.provenance})
            for d in directions]
    create_table_artifact(key=key, table=rows, description=description)


def _short(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else (",".join(value) if isinstance(value, list) else value)
