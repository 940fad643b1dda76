"""Schema v1 of the latent store, as frozen dataclasses: what the root attributes say and what a dataset manifest is.

Someone who finds a store on a disk years later reads its root `zarr.json` and learns from these fields what it holds:
which generator (sha256 of its weights file, its config, where it came from), which inversion config, which dataset
(root, manifest hash, item count, every append) and how it is chunked. `StoreAttributes.to_json()` is exactly what is
written to the root attributes, and `StoreAttributes.from_json()` reads it back; nothing else is stored there.

The on-disk layout these fields describe is documented in docs/store.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from ganinv.item_metrics import metric_names
from ganinv.utils.files import file_sha256  # noqa: F401 - storage's name for it (storage.file_sha256)

SCHEMA_NAME = "ganinv-latent-store"
SCHEMA_VERSION = 2  # v2: checksummed chunks, fixed-width UTF-8 text, edit runs on their own item axis, numerics
READABLE_VERSIONS = (1, 2)  # v1 stores are read and written in their own layout (docs/store.md, "Schema versions")
DEFAULT_METRICS = metric_names()  # what a default (lpips-vgg) inversion records: ganinv/item_metrics.py
_BAD_NAME_CHARS = ("/", "\\")


class Status(IntEnum):
    """Per-item state, stored as `status` [N] uint8. PENDING is the fill value, so unwritten items read as pending."""

    PENDING = 0
    DONE = 1
    FAILED = 2


STATUS_NAMES = {int(s): s.name.lower() for s in Status}


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that is hashed and compared (dataclasses become dicts)."""
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"), allow_nan=True)


def to_jsonable(value: Any) -> Any:
    """Dataclasses, mappings and tuples as plain JSON values (dicts, lists), the way they read back from attributes."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, sort_keys=True, default=_json_default, allow_nan=True))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable; give configs as dataclasses of plain values")


def check_name(name: str, *, what: str) -> str:
    """A label or metric name becomes a Zarr node name: non-empty, no slashes, not starting with '__'."""
    if not isinstance(name, str) or not name or name.startswith("__") or any(c in name for c in _BAD_NAME_CHARS):
        raise ValueError(f"{what} name {name!r} cannot be a Zarr array name: use a non-empty name without '/' or a "
                         "leading '__'")
    return name


@dataclass(frozen=True)
class ManifestItem:
    """One input file. `path` is relative to the manifest root (or absolute); `labels` maps attribute -> value."""

    image_id: str
    path: str
    source_sha256: str
    labels: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """The list of input files of a dataset, in store order. Build it with `Manifest.from_records`."""

    items: tuple[ManifestItem, ...]
    root: str = ""

    def __post_init__(self) -> None:
        ids = [item.image_id for item in self.items]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise ValueError(f"manifest has duplicate image_id values {dupes}: every image needs its own id")
        for item in self.items:
            if not item.image_id:
                raise ValueError(f"manifest item with path {item.path!r} has an empty image_id")
            if len(item.source_sha256) != 64:
                raise ValueError(f"manifest item {item.image_id!r} has source_sha256 {item.source_sha256!r}: expected "
                                 "64 hex digits (use storage.schema.file_sha256)")
            for name in item.labels:
                check_name(name, what="label")

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], *, root: str | Path = "") -> Manifest:
        """Records are mappings with keys `image_id`, `path`, `source_sha256` and optional `labels` (name -> float)."""
        items = []
        for i, record in enumerate(records):
            missing = {"image_id", "path", "source_sha256"} - set(record)
            if missing:
                raise ValueError(f"manifest record {i} lacks {sorted(missing)}; it has {sorted(record)}")
            labels = {str(k): float(v) for k, v in (record.get("labels") or {}).items()}
            items.append(ManifestItem(image_id=str(record["image_id"]), path=str(record["path"]),
                                      source_sha256=str(record["source_sha256"]), labels=labels))
        return cls(items=tuple(items), root=str(root))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def label_names(self) -> tuple[str, ...]:
        """The sorted union of label names over all items."""
        return tuple(sorted({name for item in self.items for name in item.labels}))

    @property
    def manifest_hash(self) -> str:
        """sha256 of the items (ids, paths, content hashes, labels) in order; the root is left out so a moved dataset
        keeps its hash. Stable across processes and machines."""
        rows = [[it.image_id, it.path, it.source_sha256, {k: _finite_or_none(v) for k, v in it.labels.items()}]
                for it in self.items]
        return hashlib.sha256(canonical_json(rows).encode()).hexdigest()

    def label_column(self, name: str) -> list[float]:
        """Label `name` for every item, NaN where an item lacks it."""
        return [float(item.labels.get(name, math.nan)) for item in self.items]

    def subset(self, keep: Iterable[int]) -> Manifest:
        """The items at positions `keep`, in that order."""
        return Manifest(items=tuple(self.items[i] for i in keep), root=self.root)


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class GeneratorIdentity:
    """What makes two generators the same: sha256 of the weights file. `config`, `source`, `family` (stylegan2,
    stylegan3) and `architecture` (e.g. stylegan3-t) describe it ('' in stores written before they were recorded)."""

    sha256: str
    config: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    family: str = ""
    architecture: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """Where the inputs are and which manifests built the store (one `history` entry per create/append)."""

    root: str
    manifest_hash: str
    num_items: int
    history: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Chunking:
    """Items per chunk along the item axis (also the shard = task size) and how `ws` is compressed."""

    chunk_items: int
    ws_compressor: str


@dataclass(frozen=True)
class Layout:
    """Shapes and optional parts: `z` exists iff `z_dim`, `thumbnails` iff `thumbnail_size`; metric and label names."""

    num_ws: int
    w_dim: int
    z_dim: int | None = None
    thumbnail_size: int | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreAttributes:
    """Everything in the root attributes. Written only by the coordinating process (create, append)."""

    created: str
    ganinv_version: str
    generator: GeneratorIdentity
    inversion: Mapping[str, Any]
    dataset: DatasetInfo
    chunking: Chunking
    layout: Layout
    schema: str = SCHEMA_NAME
    schema_version: int = SCHEMA_VERSION
    status_codes: Mapping[str, str] = field(default_factory=lambda: {str(k): v for k, v in STATUS_NAMES.items()})
    numerics: Mapping[str, Any] | None = None  # how the codes were computed (runtime/numerics.py); None: not recorded

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(self)

    @classmethod
    def from_json(cls, attrs: Mapping[str, Any]) -> StoreAttributes:
        """Reads root attributes back; raises ValueError if they are not a ganinv store of a version this code reads."""
        if attrs.get("schema") != SCHEMA_NAME:
            raise ValueError(f"not a ganinv latent store (root attribute schema={attrs.get('schema')!r}, expected "
                             f"{SCHEMA_NAME!r})")
        version = attrs.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ValueError(f"store has schema version {version}, this ganinv reads versions {READABLE_VERSIONS}: "
                             "open it with the ganinv version that wrote it, or invert into a new store")
        dataset = dict(attrs["dataset"])
        dataset["history"] = tuple(dataset.get("history", ()))
        layout = dict(attrs["layout"])
        layout["metrics"], layout["labels"] = tuple(layout["metrics"]), tuple(layout["labels"])
        return cls(created=attrs["created"], ganinv_version=attrs["ganinv_version"],
                   generator=GeneratorIdentity(**attrs["generator"]), inversion=dict(attrs["inversion"]),
                   dataset=DatasetInfo(**dataset), chunking=Chunking(**attrs["chunking"]), layout=Layout(**layout),
                   schema=attrs["schema"], schema_version=version, status_codes=dict(attrs["status_codes"]),
                   numerics=attrs.get("numerics"))
