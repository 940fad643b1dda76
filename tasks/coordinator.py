"""The coordinator's side of a dataset inversion, as plain functions: check the inputs before any worker starts,
open (or create) the store, plan the shards to run, and summarise what the store holds afterwards.

Only the coordinating process (the flow) calls these; it holds the store's lease while it appends and plans.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from ganinv.losses.registry import parse_loss_spec
from storage import GeneratorIdentity, LatentStore, Manifest, Status
from storage.schema import file_sha256
from tasks import models
from tasks.dataset import ScanResult
from tasks.spec import InversionSpec
from tasks.worker import metric_names

MAX_LISTED_FAILURES = 200  # failed items listed in a summary (all of them stay in the store's `error` array)


@dataclass(frozen=True)
class GeneratorInfo:
    """What the coordinator needs to know about a generator to create a store for it."""

    source: str
    identity: str
    config: Mapping[str, Any]
    num_ws: int
    w_dim: int
    z_dim: int
    img_resolution: int

    def store_identity(self) -> GeneratorIdentity:
        return GeneratorIdentity(sha256=self.identity, config=dict(self.config), source=self.source)


def describe_generator(source: str) -> GeneratorInfo:
    """The generator's identity and shapes, from the process's model cache (CPU; `tasks.models`: loaded once per
    file version, so a long-lived coordinator sees a replaced file as a new generator); raises GeneratorLoadError."""
    loaded = models.load_models(source, None, "cpu")
    G = loaded.G
    return GeneratorInfo(source=source, identity=loaded.identity, config=dict(G.init_kwargs),
                         num_ws=G.num_ws, w_dim=G.w_dim, z_dim=G.z_dim, img_resolution=G.img_resolution)


def check_spec(spec: InversionSpec, generator: GeneratorInfo) -> str | None:
    """Fails early, in the coordinator, on what every worker would fail on: a missing or mismatching encoder, loss
    weights that are not on disk. Returns the encoder file's sha256 (None without an encoder)."""
    for _, name in parse_loss_spec(spec.config.loss):
        if name.startswith("lpips-"):
            from ganinv.losses.lpips_distance import require_trunk_weights
            require_trunk_weights(name.removeprefix("lpips-"))  # PerceptualWeightsMissing names the file
    if spec.encoder is None:
        return None
    from ganinv.models.encoder import BUILTIN_ENCODERS, load_encoder

    E = load_encoder(spec.encoder)
    want = (generator.img_resolution, generator.num_ws, generator.w_dim)
    if (E.img_resolution, E.num_ws, E.w_dim) != want:
        raise ValueError(f"encoder {spec.encoder!r} is for {E.img_resolution} px, num_ws {E.num_ws}, w_dim {E.w_dim}; "
                         f"the generator {generator.source!r} has {want[0]} px, num_ws {want[1]}, w_dim {want[2]}")
    return file_sha256(BUILTIN_ENCODERS.get(spec.encoder, spec.encoder))


def open_store(url: str, manifest: Manifest, generator: GeneratorInfo, spec: InversionSpec, *,
               chunk_items: int | None, encoder_sha256: str | None,
               storage_options: Mapping[str, Any] | None = None) -> tuple[LatentStore, bool]:
    """Opens the store for writing, refusing one made with another generator, inversion spec or layout
    (StoreMismatchError), or creates it with every manifest item pending. `chunk_items` None: the store's own, or
    the default (256) for a new store. Returns (store, whether it was created now)."""
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    created = not fs.exists(f"{root.rstrip('/')}/zarr.json")
    layout = dict(thumbnail_size=min(spec.thumbnail_size, generator.img_resolution),
                  metrics=metric_names(spec.config.loss), storage_options=storage_options)
    if chunk_items is not None:
        layout["chunk_items"] = chunk_items
    store = LatentStore.open_or_create(
        url, manifest=manifest, num_ws=generator.num_ws, w_dim=generator.w_dim,
        generator=generator.store_identity(),
        config=spec.store_config(resolution=generator.img_resolution, encoder_sha256=encoder_sha256), **layout)
    return store, created


def plan(store: LatentStore, manifest: Manifest, *, retry_failed: bool = False, created: bool = False
         ) -> dict[str, Any]:
    """Appends the manifest's new items (under the caller's lease) and lists the shards with work to do:
    {'added': new items (all of them for a store `created` by this run), 'shards': [{'index', 'start', 'stop'}...],
    'items': items to do}."""
    added = len(store) if created else store.append(manifest)  # create() appended the manifest already
    todo = store.todo_mask(retry_failed=retry_failed)
    shards = store.pending_shards(todo=todo)
    return {"added": added, "items": int(todo.sum()),
            "shards": [{"index": s.index, "start": s.start, "stop": s.stop} for s in shards]}


def summarize(store: LatentStore, scan: ScanResult, reports: Sequence[Mapping[str, Any]], *,
              crashed: Sequence[Mapping[str, Any]] = (), planned: Mapping[str, Any] | None = None,
              seconds: float | None = None) -> dict[str, Any]:
    """A small JSON-able account of the run: store counts, this run's shards, every input left out and why."""
    counts = store.status_counts()
    failures = failed_items(store, limit=MAX_LISTED_FAILURES)
    run = {"shards": len(reports) + len(crashed), "items": sum(r["items"] for r in reports),
           "done": sum(r["done"] for r in reports), "failed": sum(r["failed"] for r in reports),
           "crashed_shards": list(crashed),
           "invert_seconds": sum(r.get("invert_s", 0.0) for r in reports)}
    return {"store": store.url, "images": scan.source, "num_items": len(store), "counts": counts,
            "added": (planned or {}).get("added", 0), "this_run": run, "skipped": scan.summary()["skipped"],
            "scan": {"hashed": scan.hashed, "reused": scan.reused},
            "failures": failures, "failures_listed": len(failures), "seconds": seconds,
            "labels": list(store.layout.labels)}


def failed_items(store: LatentStore, *, limit: int | None = None) -> list[dict[str, str]]:
    """[{'image_id', 'error'}] of the store's failed items, in store order (the first `limit`)."""
    status = store.array("status")[: store.num_items]
    index = np.flatnonzero(status == Status.FAILED)[:limit]
    if index.size == 0:
        return []
    ids = store.array("image_id").get_orthogonal_selection((index,))
    errors = store.array("error").get_orthogonal_selection((index,))
    return [{"image_id": str(i), "error": str(e)} for i, e in zip(ids, errors)]
