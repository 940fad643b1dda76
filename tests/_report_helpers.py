"""A small finished inversion run for report tests: tiny PNG originals on disk, a latent store whose thumbnails are the
originals plus noise of a chosen strength (so quality differs between runs), metrics computed from those very
pixels, labels, and some failed items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from storage import LatentStore, Manifest, ShardResult, Status
from storage.schema import file_sha256
from _store_helpers import GENERATOR

SIZE = 16
METRICS = ("mse", "psnr", "ssim", "clf-perceptual", "final_loss", "steps", "seconds")  # as ganinv/item_metrics.py names them


def write_images(folder: Path, n: int, *, seed: int = 0) -> list[dict]:
    """n smooth random 16 px PNGs (blobs of colour) and manifest records with a binary and a continuous label."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((SIZE, SIZE), Image.BILINEAR)
        path = folder / f"face{i:03d}.png"
        image.save(path)
        records.append(dict(image_id=f"face{i:03d}", path=path.name, source_sha256=file_sha256(path),
                            labels={"smiling": float(i % 2), "yaw": float(np.round(rng.uniform(-1, 1), 3))}))
    return records


def make_run_store(tmp_path: Path, name: str, *, n: int = 24, noise: float = 8.0, fail_every: int = 0,
                   seconds: float = 0.5, steps: int = 100) -> str:
    """A finished store at tmp_path/name.zarr over the images in tmp_path/images, shared by runs (each call rewrites
    them: write_images is deterministic, so the files and records stay the same)."""
    images = tmp_path / "images"
    records = write_images(images, n)
    manifest = Manifest.from_records(records, root=str(images))
    url = str(tmp_path / f"{name}.zarr")
    store = LatentStore.create(url, manifest=manifest, num_ws=4, w_dim=8, generator=GENERATOR,
                               config={"space": "w+", "num_steps": steps, "loss": "clf-perceptual"}, chunk_items=8,
                               thumbnail_size=SIZE, metrics=METRICS)
    rng = np.random.default_rng(1)
    for shard in store.shards():
        inputs = store.read_shard_inputs(shard)
        store.write_shard(inputs, _result(inputs, rng, noise=noise, fail_every=fail_every, seconds=seconds,
                                          steps=steps))
    return url


def _result(inputs, rng: np.random.Generator, *, noise: float, fail_every: int, seconds: float,
            steps: int) -> ShardResult:
    k = len(inputs)
    originals = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in inputs.paths]).astype(np.float64)
    recon = np.clip(originals + rng.normal(0, noise, originals.shape), 0, 255).astype(np.uint8)
    mse = ((recon / 255.0 - originals / 255.0) ** 2).mean(axis=(1, 2, 3))
    failed = (inputs.indices % fail_every == fail_every - 1) if fail_every else np.zeros(k, bool)
    metrics = {"mse": mse, "psnr": -10 * np.log10(np.maximum(mse, 1e-12)), "ssim": 1 - 40 * mse,
               "clf-perceptual": 20 * mse, "final_loss": 20 * mse, "steps": np.full(k, float(steps)),
               "seconds": np.full(k, seconds)}
    metrics = {name: np.where(failed, np.nan, value) for name, value in metrics.items()}
    recon[failed] = 0
    errors = ["CUDA out of memory" if (i // fail_every) % 2 == 0 else "unreadable image: truncated file"
              if f else "" for i, f in zip(inputs.indices, failed)] if fail_every else [""] * k
    ws = rng.normal(size=(k, 4, 8)).astype(np.float32)
    ws[failed] = np.nan
    return ShardResult(ws=ws, status=np.where(failed, Status.FAILED, Status.DONE).astype(np.uint8), error=errors,
                       metrics=metrics, thumbnails=recon)
