"""Shared by the shard-worker, flow and CLI tests: a tiny generator saved to a file (the flows load generators by
name or path, as real workers do), a tiny encoder for it, and a store prepared the way the flow prepares one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import make_tiny_generator
from ganinv.generators import save_generator
from ganinv.models.encoder import Encoder, save_encoder
from runtime.config import ExecutionOptions, InvertConfig
from runtime.coordinator import check_settings, open_store, plan
from runtime.models import describe_generator
from runtime.numerics import record_for_this_process
from storage import LatentStore
from storage.scan import scan_images

FAST = {"num_steps": 4, "loss": "mse", "w_avg_samples": 200}  # a few steps of the projector, pixel loss


def save_tiny_generator(folder: Path, *, seed: int = 0) -> str:
    path = folder / f"tiny-generator-{seed}.safetensors"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        save_generator(make_tiny_generator(seed=seed), path, source="tests: make_tiny_generator")
    return str(path)


def save_tiny_encoder(folder: Path, generator: str) -> str:
    info = describe_generator(generator)
    path = folder / "tiny-encoder.safetensors"
    if not path.exists():
        import torch

        torch.manual_seed(0)
        save_encoder(Encoder(img_resolution=info.img_resolution, num_ws=info.num_ws, w_dim=info.w_dim,
                             channels=(8, 8), style_channels=8), path)
    return str(path)


def prepare_store(images: Path, store: Path, generator: str, config: InvertConfig, *, chunk_items: int = 4
                  ) -> LatentStore:
    """Check, scan, create and append as the flow's steps 0-3 do, and record the numerics (one thread, this
    process) as its step 4 does (no lease: nobody else writes in these tests)."""
    scan = scan_images(str(images))
    settings = check_settings(generator, config)
    latent_store, _ = open_store(str(store), scan.manifest, settings, chunk_items=chunk_items)
    plan(latent_store, scan.manifest, settings=settings)
    record_for_this_process(latent_store, ExecutionOptions(threads=1))  # what the flow settles before dispatching
    return latent_store


def store_arrays(url: str) -> dict[str, np.ndarray]:
    """Every item array of a store, by name (for bitwise comparisons of two runs)."""
    s = LatentStore.open(url)
    arrays = {"image_id": s.image_ids(), "ws": s.ws(), "status": s.status(), "error": s.errors(),
              "attempts": s.attempts(), "thumbnails": s.thumbnails()}
    return {**arrays, **{f"metrics/{m}": values for m, values in s.metrics().items()}}
