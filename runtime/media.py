"""Morphs and style mixes of stored items (issue 20: the survey's interpolation and style transfer), as plain
functions: the coordinator creates the run (`create_morphs`, `create_style_mix`: codes from `ganinv.edit`, kept as
`edits/<run>`, storage/media.py), a worker renders it (`render_run`: pictures from `ganinv.edit_media` beside the
store, `index.json` last, so the report shows them as galleries).

Items are rendered with the store's generator itself: a morph between two tuned items (pivotal refinement) has no
tuned generator of its own.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import torch

from ganinv import edit
from ganinv.edit_media import morph_grid, save_gif, style_mix_figure
from runtime import models
from runtime.config import MorphConfig, StyleMixConfig
from runtime.edits import file_stem, render, write_png
from storage import LatentStore, media
from storage.edits import EditRequestError, grids_url
from storage.lease import RENEWED_LEASE_TTL_S


@dataclass(frozen=True)
class MediaPlan:
    """A morph or style-mix run created (or found with the same content): what to render, with which generator,
    where its pictures go, and the GIFs' settings."""

    run: str
    kind: str
    shape: tuple[int, int]          # (pairs, frames) or (content, style)
    generator: str
    grids: str
    created: bool
    gif: bool = False
    fps: float = 12.0


@dataclass(frozen=True)
class MediaSummary:
    """What a morph or style-mix flow made: its plan, the files written beside the store, the flow's seconds."""

    plan: MediaPlan
    files: tuple[str, ...]
    seconds: float


def create_morphs(store_url: str, config: MorphConfig, *, run_id: str,
                  storage_options: Mapping[str, Any] | None = None) -> MediaPlan:
    """The codes of each pair's morph (`edit.interpolate`, `config.frames` from a to b), kept as `edits/<run>`."""
    if not config.pairs:
        raise EditRequestError("render-morphs needs at least one pair a:b of image ids")
    store = LatentStore.open(store_url, "r+", storage_options=storage_options)
    rows = media.item_rows(store, [image_id for pair in config.pairs for image_id in pair]).reshape(-1, 2)
    ws = store.ws(rows.ravel())
    ws = ws.reshape(len(rows), 2, *ws.shape[1:])
    try:
        path = edit.interpolate(ws[:, 0], ws[:, 1], config.frames, method=config.method)
    except ValueError as err:
        raise EditRequestError(f"render-morphs: {err}") from None
    made_by = dict(flow="render_morphs", pairs=[list(p) for p in config.pairs], frames=config.frames,
                   method=config.method)
    return _create(store, config, "morph", path, ("pair", "frame"),
                   {"pair_index": (rows, ("pair", "end"))}, made_by, run_id)


def create_style_mix(store_url: str, config: StyleMixConfig, *, run_id: str,
                     storage_options: Mapping[str, Any] | None = None) -> MediaPlan:
    """Every content item with the `config.layers` rows of every style item (`edit.style_mix`; named ranges by the
    generator's `ws_resolutions`), kept as `edits/<run>`."""
    store = LatentStore.open(store_url, "r+", storage_options=storage_options)
    content, style = media.item_rows(store, config.content), media.item_rows(store, config.style)
    source = models.store_generator_source(store.attributes.generator, config.generator)
    resolutions = models.generator(source, "cpu").ws_resolutions
    try:
        mixed = edit.style_mix(store.ws(content)[:, None], store.ws(style)[None], config.layers,
                               resolutions=resolutions)
    except ValueError as err:
        raise EditRequestError(f"style-mix: {err}") from None
    layers = config.layers if isinstance(config.layers, str) else [int(i) for i in config.layers]
    made_by = dict(flow="style_mix", content=list(config.content), style=list(config.style), layers=layers,
                   rows=list(edit.resolve_layers(config.layers, store.layout.num_ws, resolutions)))
    indices = {"content_index": (content, ("content",)), "style_index": (style, ("style",))}
    return _create(store, config, "style-mix", mixed, ("content", "style"), indices, made_by, run_id)


def _create(store: LatentStore, config: MorphConfig | StyleMixConfig, kind: str, ws: np.ndarray,
            dims: tuple[str, str], indices: dict[str, Any], made_by: dict[str, Any], run_id: str) -> MediaPlan:
    source = models.store_generator_source(store.attributes.generator, config.generator)
    grids = grids_url(store.url, config.run)
    made_by.update(generator=models.identity(source), grids=grids, rendered_with="the generator (untuned)")
    with store.acquire_lease(run_id, ttl_s=RENEWED_LEASE_TTL_S):
        created = media.create(store, config.run, kind=kind, ws=np.asarray(ws, np.float32), dims=dims,
                               indices=indices, made_by=made_by, overwrite=config.overwrite)
    return MediaPlan(run=config.run, kind=kind, shape=tuple(int(n) for n in np.shape(ws)[:2]), generator=source,
                     grids=grids, created=created, gif=getattr(config, "gif", False), fps=getattr(config, "fps", 12.0))


def render_run(store_url: str, plan: MediaPlan, *, device: str,
               storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Renders the run's codes and writes its pictures and `index.json` (last) beside the store."""
    began = time.perf_counter()
    store = LatentStore.open(store_url, "r", storage_options=storage_options)
    ws = media.read_ws(store, plan.run)
    G = models.generator(plan.generator, models.resolve_device(device))
    images = render(G, ws.reshape(-1, *ws.shape[2:])).reshape(*ws.shape[:2], 3, G.img_resolution, G.img_resolution)
    if plan.kind == "morph":
        files = _write_morphs(store, plan, images, storage_options)
    else:
        files = _write_style_mix(store, plan, images, G, storage_options)
    index = dict(store=store_url, run=plan.run, kind=plan.kind, grids={plan.kind: files[0]}, files=files)
    fs, path = fsspec.core.url_to_fs(f"{plan.grids}/index.json", **dict(storage_options or {}))
    fs.pipe_file(path, json.dumps(index, indent=1).encode())  # last: the pictures above are there
    return dict(files=files, images=int(np.prod(ws.shape[:2])), seconds=round(time.perf_counter() - began, 3))


def _write_morphs(store: LatentStore, plan: MediaPlan, frames: torch.Tensor,
                  storage_options: Mapping[str, Any] | None) -> list[str]:
    """`morphs.png` (a morph per row) and, with `plan.gif`, one looping GIF per pair."""
    files = ["morphs.png"]
    write_png(f"{plan.grids}/morphs.png", morph_grid(frames), storage_options)
    if plan.gif:
        pairs = store.result_attrs(media.KIND, plan.run)["made_by"]["pairs"]
        for k, (a, b) in enumerate(pairs):
            name = f"{file_stem(a)}__{file_stem(b)}.gif"
            with tempfile.TemporaryDirectory() as tmp:
                local = save_gif(frames[k], Path(tmp) / name, fps=plan.fps)
                fs, path = fsspec.core.url_to_fs(f"{plan.grids}/{name}", **dict(storage_options or {}))
                fs.pipe_file(path, local.read_bytes())
            files.append(name)
    return files


def _write_style_mix(store: LatentStore, plan: MediaPlan, mixed: torch.Tensor, G: torch.nn.Module,
                     storage_options: Mapping[str, Any] | None) -> list[str]:
    """`style-mix.png`: the style sources along the top, the content sources down the left, the mixes between."""
    made_by = store.result_attrs(media.KIND, plan.run)["made_by"]
    content, style = (render(G, store.ws(media.item_rows(store, made_by[key]))) for key in ("content", "style"))
    write_png(f"{plan.grids}/style-mix.png", style_mix_figure(content, style, mixed), storage_options)
    return ["style-mix.png"]
