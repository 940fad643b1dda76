"""Helpers shared by the latent store tests: where stores live (local, memory, S3 on moto), small manifests, and
deterministic fake inversion results (a function of the item index, so any writer writes the same bytes)."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest

from storage import GeneratorIdentity, LatentStore, Manifest, ShardInputs, ShardResult, Status

NUM_WS, W_DIM, Z_DIM, THUMB = 4, 8, 6, 4
GENERATOR = GeneratorIdentity(sha256=hashlib.sha256(b"tiny generator").hexdigest(), config={"img_resolution": 16},
                              source="tests/fixtures/tiny.pkl")
CONFIG = {"space": "w+", "num_steps": 10, "initial_learning_rate": 0.1}

# Store backends of the contract tests. S3 (moto) runs them only when GANINV_TEST_S3=1 (about 75 s on 2 cores: moto
# answers slowly); otherwise test_s3_store_end_to_end covers it in a few seconds.
BACKENDS = ["local", "memory"] + ["s3"] * (os.environ.get("GANINV_TEST_S3") == "1")


@dataclass(frozen=True)
class Location:
    """A store URL and the fsspec options to reach it."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def fs(self) -> tuple[fsspec.AbstractFileSystem, str]:
        return fsspec.core.url_to_fs(self.url, **self.storage_options)

    def open(self, mode: str = "r", **kwargs: Any) -> LatentStore:
        return LatentStore.open(self.url, mode, storage_options=self.storage_options, **kwargs)

    def create(self, manifest: Manifest, **kwargs: Any) -> LatentStore:
        defaults = dict(num_ws=NUM_WS, w_dim=W_DIM, chunk_items=4, generator=GENERATOR, config=CONFIG)
        return LatentStore.create(self.url, manifest=manifest, storage_options=self.storage_options,
                                  **{**defaults, **kwargs})

    def files(self) -> dict[str, bytes]:
        """Every object under the store (relative key -> bytes)."""
        fs, root = self.fs()
        fs.invalidate_cache()
        return {p[len(root.rstrip("/")) + 1:]: fs.cat_file(p) for p in fs.find(root)}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_manifest(n: int, *, start: int = 0, root: str = "/data/faces", labels: bool = True) -> Manifest:
    """n items img00000.. with content hashes of their ids; 'smile' on odd items, 'age' on every third."""
    records = []
    for i in range(start, start + n):
        item_labels = {}
        if labels and i % 2:
            item_labels["smile"] = 1.0
        if labels and i % 3 == 0:
            item_labels["age"] = float(20 + i)
        records.append(dict(image_id=f"img{i:05d}", path=f"img{i:05d}.png", source_sha256=sha(f"content {i}"),
                            labels=item_labels))
    return Manifest.from_records(records, root=root)


def expected_ws(indices: np.ndarray, num_ws: int = NUM_WS, w_dim: int = W_DIM) -> np.ndarray:
    """Deterministic fake codes: item i gets normal noise seeded by i."""
    return np.stack([np.random.default_rng(int(i)).standard_normal((num_ws, w_dim)).astype(np.float32)
                     for i in indices])


def fake_result(inputs: ShardInputs, store: LatentStore, *, fail_every: int = 0) -> ShardResult:
    """A result as an inverter would give it; items with index % fail_every == fail_every - 1 fail."""
    idx, layout = inputs.indices, store.layout
    failed = (idx % fail_every == fail_every - 1) if fail_every else np.zeros(len(idx), bool)
    ws = expected_ws(idx, layout.num_ws, layout.w_dim)
    ws[failed] = np.nan
    status = np.where(failed, Status.FAILED, Status.DONE).astype(np.uint8)
    z = None if layout.z_dim is None else (idx[:, None] + np.arange(layout.z_dim)).astype(np.float32)
    t = layout.thumbnail_size
    thumbnails = None if t is None else ((idx[:, None, None, None] + np.zeros((1, t, t, 3))) % 256).astype(np.uint8)
    return ShardResult(ws=ws, status=status, error=[f"item {i} diverged" if f else "" for i, f in zip(idx, failed)],
                       metrics={"mse": idx * 0.5, "psnr": idx + 10.0}, z=z, thumbnails=thumbnails)


def invert_shards(location: Location, shard_indices: list[int], kill_at: str | None = None) -> None:
    """A worker process: opens the store by URL and writes the given shards (os._exit(3) when writing array
    `kill_at` of the first shard, to simulate a crash mid-shard)."""
    store = location.open("r+")
    if kill_at is not None:
        from storage import shards

        write = shards.write_region

        def dying_write(store: LatentStore, name: str, rows: Any, value: np.ndarray) -> None:
            if name == kill_at:
                os._exit(3)
            write(store, name, rows, value)

        shards.write_region = dying_write
    for index in shard_indices:
        inputs = store.read_shard_inputs(store.shard(index))
        store.write_shard(inputs, fake_result(inputs, store))


def s3_server() -> Any:
    """A moto S3 server on 127.0.0.1 (skip if it cannot start); yields its endpoint URL."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
    except Exception as err:  # pragma: no cover - environment dependent
        pytest.skip(f"moto S3 server cannot start here: {err!r}")
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket="ganinv")
    yield endpoint
    server.stop()


def location_for(kind: str, tmp_path: Path, s3_endpoint: str | None) -> Location:
    name = f"corpus-{uuid.uuid4().hex[:8]}.zarr"
    if kind == "local":
        return Location(str(tmp_path / name))
    if kind == "memory":
        return Location(f"memory://tests/{name}")
    return Location(f"s3://ganinv/{name}", {"endpoint_url": s3_endpoint, "key": "test", "secret": "test"})
