"""The images a store's codes make, item by item: what `ganinv render-restored` writes (and what a general
`ganinv render --what reconstructions` can call): G(w) of each done item, through its pivotal delta when the store
is refined (bit for bit what the worker scored, `runtime.refine.renderer`), with the observation kept when the
store is a restoration store and that is asked for (`Degradation.keep_observed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ganinv.inversion.degradations import degradation_from_config
from ganinv.utils.images import to_pil
from runtime import models, refine
from runtime.render_codes import png_names
from runtime.restore import decode_policy
from runtime.shard import read_image
from runtime.spec import InversionSpec
from storage import LatentStore
from storage.edits import select_items

RENDER_BATCH = 16  # items per synthesis call


@torch.no_grad()
def item_images(store: LatentStore, rows: np.ndarray, G: torch.nn.Module, *, keep_observed: bool | None = None,
                untuned: bool = False) -> torch.Tensor:
    """`[len(rows), 3, R, R]` in [-1, 1] on the CPU: the items' images (see the module docstring). `keep_observed`:
    None = what the restoration store recorded; ignored for other stores."""
    rows = np.asarray(rows, np.int64)
    render = refine.renderer(G, store, rows, untuned=untuned)
    ws = torch.from_numpy(store.ws(rows))
    images = torch.cat([render(ws[i:i + RENDER_BATCH], slice(i, min(i + RENDER_BATCH, len(rows)))).cpu()
                        for i in range(0, len(rows), RENDER_BATCH)])
    restoration = store.attributes.inversion.get("restoration") or {}
    keep = restoration.get("keep_observed", False) if keep_observed is None else keep_observed
    if not (restoration and keep):
        return images
    spec = InversionSpec.from_record(store.attributes.inversion, thumbnail_size=store.layout.thumbnail_size)
    return _keep_observed(store, spec, rows, images)


def _keep_observed(store: LatentStore, spec: InversionSpec, rows: np.ndarray, images: torch.Tensor) -> torch.Tensor:
    """The restorations with what each observation says kept (its input file decoded as the workers decode it)."""
    resolution = images.shape[-1]
    ids = [str(i) for i in store.image_ids(rows)]
    policy = decode_policy(spec, resolution)
    observed = torch.stack([read_image(path, policy, image_id, store.storage_options)
                            for path, image_id in zip(store.paths(rows), ids)])
    degradation = degradation_from_config(spec.restoration["degradation"], image_ids=ids, resolution=resolution)
    return degradation.keep_observed(images, observed).clamp(-1, 1)


def write_item_images(store_url: str, out: str | Path, *, ids: Sequence[str] | None = None, limit: int | None = None,
                      keep_observed: bool | None = None, untuned: bool = False, generator: str | None = None,
                      device: str = "auto") -> int:
    """Writes `<out>/<image id>.png` (named as `ganinv render` names them: `render_codes.png_names`) for the chosen
    done items (default: all) of the store; returns how many."""
    store = LatentStore.open(store_url)
    rows = select_items(store, ids, limit=limit)
    names = png_names([str(i) for i in store.image_ids(rows)])  # refused before the generator loads
    G = models.generator(models.store_generator_source(store.attributes.generator, generator),
                         models.resolve_device(device))
    out = Path(out)
    for start in range(0, len(rows), RENDER_BATCH):
        chunk = rows[start:start + RENDER_BATCH]
        images = item_images(store, chunk, G, keep_observed=keep_observed, untuned=untuned)
        for name, image in zip(names[start:start + RENDER_BATCH], images):
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            to_pil(image).save(path)
    return len(rows)
