"""Whether a store is the one a run expects: the generator it holds codes of, the inversion config they were made
with, its layout; and the arguments a new store is created with."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from storage import arrays
from storage.errors import StoreMismatchError
from storage.schema import GeneratorIdentity, Manifest, canonical_json, to_jsonable

if TYPE_CHECKING:
    from storage.latent_store import LatentStore


def check_identity(store: LatentStore, *, generator: GeneratorIdentity | Mapping | None, config: Any) -> None:
    """Refuses (StoreMismatchError) writing codes of another generator, or made with another config, into `store`."""
    attrs = store.attributes
    if generator is not None:
        generator = as_generator(generator)
        if generator.sha256 != attrs.generator.sha256:
            raise StoreMismatchError(
                f"store {store.url} holds codes of generator sha256 {attrs.generator.sha256[:16]}... "
                f"({attrs.generator.source or 'unknown source'}); you are writing with generator sha256 "
                f"{generator.sha256[:16]}... ({generator.source or 'unknown source'}). A store holds one "
                "generator's codes: write to a new store.")
    if config is not None and canonical_json(config) != canonical_json(attrs.inversion):
        raise config_mismatch(store, attrs.inversion, config)


def config_mismatch(store: LatentStore, stored: Any, given: Any) -> StoreMismatchError:
    """The refusal of settings `given` that differ from those `stored` (the store's inversion record, or the part of
    it a caller compares): the differing fields, stored and given."""
    diff = dict_diff(to_jsonable(stored), to_jsonable(given))
    return StoreMismatchError(f"store {store.url} was inverted with another inversion config ({diff}); codes made "
                              "with different settings must not mix: write to a new store.")


def check_layout(store: LatentStore, **expected: Any) -> None:
    """Refuses a store whose shapes, chunking, compressor or metrics differ from those `expected`."""
    layout, chunking = store.attributes.layout, store.attributes.chunking
    have = {**dataclasses.asdict(layout), "chunk_items": chunking.chunk_items,
            "compressor": chunking.ws_compressor}
    for key in ("num_ws", "w_dim", "z_dim", "thumbnail_size", "chunk_items", "compressor"):
        if key in expected and expected[key] != have[key]:
            raise StoreMismatchError(f"store {store.url} has {key}={have[key]!r}, asked for {expected[key]!r}: "
                                     "write to a new store for another layout")
    if "metrics" in expected and tuple(expected["metrics"]) != layout.metrics:
        raise StoreMismatchError(f"store {store.url} has metrics {layout.metrics}, asked for "
                                 f"{tuple(expected['metrics'])}: write to a new store")


def as_generator(generator: GeneratorIdentity | Mapping) -> GeneratorIdentity:
    identity = generator if isinstance(generator, GeneratorIdentity) else GeneratorIdentity(**generator)
    if not identity.sha256:
        raise ValueError("generator.sha256 is empty: give the sha256 of the generator's weights file "
                         "(storage.schema.file_sha256)")
    return dataclasses.replace(identity, config=to_jsonable(dict(identity.config)))


def check_create_args(manifest: Manifest, *, num_ws: int, w_dim: int, chunk_items: int, num_items: int | None,
                      z_dim: int | None, thumbnail_size: int | None, compressor: str) -> None:
    if not isinstance(manifest, Manifest):
        raise TypeError(f"manifest must be a storage.schema.Manifest (use Manifest.from_records), got "
                        f"{type(manifest).__name__}")
    if num_items is not None and num_items != len(manifest):
        raise ValueError(f"num_items={num_items} but the manifest has {len(manifest)} items")
    for name, value in (("num_ws", num_ws), ("w_dim", w_dim), ("chunk_items", chunk_items)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: must be a positive integer")
    for name, value in (("z_dim", z_dim), ("thumbnail_size", thumbnail_size)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}={value!r}: must be a positive integer or None")
    if compressor not in arrays.WS_COMPRESSORS:
        raise ValueError(f"compressor={compressor!r}: choose one of {sorted(arrays.WS_COMPRESSORS)}")


def dict_diff(old: Any, new: Any, prefix: str = "") -> str:
    """'key: stored -> given' for the first few differing leaves of two JSON values."""
    diffs: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        elif a != b:
            diffs.append(f"{path or 'config'}: stored {a!r}, given {b!r}")

    walk(old, new, prefix)
    return "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
