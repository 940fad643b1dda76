"""A tiny latent store for the direction and edit flows: a tiny StyleGAN2 saved to disk, its sampled w as the
"inverted" codes of every item, and labels read off its images by a synthetic classifier (with the pair a, b
deliberately correlated), so boundaries fitted on the store's labels are meaningful."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from conftest import make_tiny_generator
from ganinv.directions.sampling import iter_latents
from ganinv.directions.synthetic import SyntheticAttributes
from ganinv.generators import generator_identity, save_generator
from storage import GeneratorIdentity, LatentStore, Manifest, ShardResult, Status

LABELS = ("a", "b", "c")


def tiny_world(tmp: Path, *, num_items: int = 48, chunk_items: int = 16) -> tuple[str, str, torch.nn.Module]:
    """(store path, generator path, G): every item done, labels a, b (correlated with a) and c on every item."""
    G = make_tiny_generator(resolution=16, z_dim=16, w_dim=16, seed=3)
    generator_path = save_generator(G, tmp / "tiny.safetensors", source="tests")
    _, ws = next(iter_latents(G, num_items, seed=5, batch_size=num_items, truncation_psi=1.0))
    with torch.no_grad():
        images = G.synthesis(ws)
        scorer = SyntheticAttributes(list(LABELS), images, seed=1, correlated={"b": ("a", 0.7)})
        labels = {k: (v >= 0.5).float().numpy() for k, v in scorer(images).items()}
    records = [dict(image_id=f"face{i:03d}", path=f"face{i:03d}.png",
                    source_sha256=hashlib.sha256(f"face {i}".encode()).hexdigest(),
                    labels={k: float(labels[k][i]) for k in LABELS}) for i in range(num_items)]
    identity = GeneratorIdentity(sha256=generator_identity(G), config=G.init_kwargs, source=str(generator_path))
    store_path = str(tmp / "corpus.zarr")
    store = LatentStore.create(store_path, manifest=Manifest.from_records(records, root=str(tmp)), num_ws=G.num_ws,
                               w_dim=G.w_dim, generator=identity, config={"space": "w"}, chunk_items=chunk_items)
    codes = ws.numpy()
    for shard in store.shards():
        n = len(shard)
        store.write_shard(shard, ShardResult(ws=codes[shard.start:shard.stop],
                                             status=np.full(n, Status.DONE, np.uint8)))
    return store_path, str(generator_path), G
