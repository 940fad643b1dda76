"""Pivotal refinement of a dataset inversion (`ganinv invert --refine pivotal`; PTI, Roich et al. 2021; the algorithm
is `ganinv.inversion.pivotal`, docs/inversion.md): after each batch is inverted, every item gets its own small
generator delta tuned around its code; the store keeps the deltas in `refinements/pivotal` (storage/refinements.py)
and everything that renders an item (render-edits, render-restored, the edit evaluation) renders it through them.

- `check`: what the coordinator (and the CLI, before any server) refuses: a generator that is not StyleGAN2 (the
  deltas live on StyleGAN2's modulated convolutions), a conditional one with the locality term on;
- `prepare`: the coordinator creates or grows the deltas' group, under the lease, after the append;
- `renderer`: how to render stored items, through their deltas (bit for bit as the worker scored them) or not.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from runtime import models
from runtime.errors import ConfigError
from runtime.models import GeneratorInfo
from runtime.spec import InversionSpec
from storage import LatentStore, refinements

Render = Callable[[torch.Tensor, slice], torch.Tensor]  # (ws [n, ...], the items they belong to) -> images


def check(spec: InversionSpec, info: GeneratorInfo) -> None:
    """Refuses pivotal refinement where it cannot run (ConfigError naming the generator and what to do)."""
    if spec.refine is None:
        return
    if info.family != "stylegan2":
        raise ConfigError(f"pivotal refinement tunes StyleGAN2's modulated convolutions; the generator "
                          f"{info.source!r} is {info.architecture or info.family or 'not StyleGAN2'}: invert it "
                          "without --refine")
    if info.c_dim > 0 and spec.refine.locality_weight > 0:
        raise ConfigError(f"the generator {info.source!r} is conditional (c_dim {info.c_dim}) and pivotal tuning's "
                          "locality term samples w without a class: set its locality_weight to 0")


def prepare(store: LatentStore, spec: InversionSpec, generator: str) -> bool:
    """Creates `refinements/pivotal` for the spec's tuning of `generator` (or grows it to the store's items);
    coordinator only, under the lease. Returns whether it was created now."""
    if spec.refine is None:
        return False
    from ganinv.inversion import pivotal

    G = models.generator(generator, "cpu")
    made_by = dict(stage="pivotal", method="pivotal tuning (Roich et al. 2021), per-item low-rank deltas",
                   config=spec.refine.to_dict(), generator=models.identity(generator))
    return refinements.create_pivotal(store, pivotal.delta_attrs(G, spec.refine), made_by=made_by)


def is_refined(store: LatentStore) -> bool:
    return refinements.pivotal_attrs(store) is not None


def renderer(G: torch.nn.Module, store: LatentStore, rows: np.ndarray, *, untuned: bool = False,
             noise_mode: str = "const") -> Render:
    """How to render the store's items `rows` (in that order; a batch names its items by a slice of them): through
    each item's stored delta with the tuning's modulated-convolution form, which reproduces what the worker scored
    bit for bit; or, for a store without deltas or with `untuned`, through G itself."""
    device = next(G.parameters()).device
    if untuned or not is_refined(store):
        return plain_renderer(G, noise_mode=noise_mode)
    from ganinv.inversion import pivotal

    values, attrs = refinements.read_deltas(store, np.asarray(rows, np.int64))
    deltas = pivotal.unpack(values, attrs, device=device)
    fused = bool(attrs["config"]["fused_modconv"])
    return lambda ws, items: pivotal.render(G, ws.to(device), deltas.select(items), fused_modconv=fused,
                                            noise_mode=noise_mode)


def plain_renderer(G: torch.nn.Module, *, noise_mode: str = "const") -> Render:
    """G itself: `ws [n, ..., num_ws, w_dim]` -> images `[n, ..., C, H, W]` (any number of codes per item)."""
    device = next(G.parameters()).device

    def render(ws: torch.Tensor, items: slice) -> torch.Tensor:
        images = G.synthesis(ws.reshape(-1, *ws.shape[-2:]).to(device), noise_mode=noise_mode)
        return images.reshape(*ws.shape[:-2], *images.shape[1:])

    return render
