"""Batch edits as plain functions: create (or reopen) an edit run, render one batch of it on a worker, evaluate it,
assemble the PNG grids. Layout of a run: storage/edits.py.

A render call gets the store URL, the run name and an item range of the run, never arrays: it reads the items' ws
from the store, applies the run's unit deltas, writes one grid page per direction (rows = items, columns =
strengths), then the edited ws, then the batch's status. Rerunning it writes the same bytes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import posixpath
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import torch
from PIL import Image

from ganinv.edit import resolve_layers as edit_layers
from ganinv.utils.images import make_image_grid, strength_label, with_column_labels
from runtime import models, refine
from runtime.config import RenderEditsConfig
from storage import LatentStore
from storage.directions import read_directions
from storage.edits import EditRun, grids_url, select_items
from storage.lease import RENEWED_LEASE_TTL_S

RENDER_BATCH = 64  # images per synthesis call
LABEL_STRIP = 14   # px of the strip above a direction's whole grid that labels its columns with their strengths


@dataclass(frozen=True)
class EditPlan:
    """An edit run created (or reopened to resume): its size, the generator to render with, where its grids go,
    and the item ranges [start, stop) still to render (one render task each)."""

    run: str
    items: int
    directions: tuple[str, ...]
    strengths: tuple[float, ...]
    generator: str
    grids: str
    batches: int
    pending: tuple[tuple[int, int], ...]
    untuned: bool = False


@dataclass(frozen=True)
class EditSummary:
    """What `render-edits` made: its plan, the batches rendered now, the stacked grid of each direction (`grid_files`:
    direction -> file in `grids`), whether the edits were evaluated, and the flow's seconds."""

    plan: EditPlan
    batches_rendered: int
    grid_files: Mapping[str, str]
    evaluated: bool
    seconds: float

    def __getattr__(self, name: str) -> Any:  # run, items, directions, strengths, grids: the plan's
        if name in ("run", "items", "directions", "strengths", "grids"):
            return getattr(self.plan, name)
        raise AttributeError(name)


def create_run(store_url: str, config: RenderEditsConfig, *, run_id: str,
               storage_options: Mapping[str, Any] | None = None) -> EditPlan:
    """Chooses the items, reads the directions and creates `edits/<run>` under the store's lease (or reopens a run
    with the same content, to resume it)."""
    store = LatentStore.open(store_url, "r+", storage_options=storage_options)
    rows = select_items(store, config.items, limit=config.limit)
    chosen = read_directions(store, list(config.directions))
    source = models.store_generator_source(store.attributes.generator, config.generator)
    grids = grids_url(store_url, config.run)
    tuned = refine.is_refined(store) and not config.untuned
    made_by = dict(flow="render_edits", items=_describe_items(config, len(rows)),
                   directions={d.name: d.attrs() for d in chosen}, strengths=[float(s) for s in config.strengths],
                   layers=config.layers if config.layers is None or isinstance(config.layers, str)
                   else [int(i) for i in config.layers], generator=models.identity(source), grids=grids,
                   rendered_with="each item's pivotal delta" if tuned else "the generator")
    resolutions = models.generator(source, "cpu").ws_resolutions  # named layer ranges follow the generator's
    with store.acquire_lease(run_id, ttl_s=RENEWED_LEASE_TTL_S):
        edits = EditRun.create(store, config.run, item_indices=rows, directions=chosen, strengths=config.strengths,
                               layers=config.layers, made_by=made_by, batch_size=config.batch_size,
                               overwrite=config.overwrite, resolutions=resolutions)
    return EditPlan(run=config.run, items=len(edits), directions=tuple(d.name for d in chosen),
                    strengths=tuple(float(s) for s in config.strengths), generator=source, grids=grids,
                    batches=len(edits.batches()), pending=tuple(edits.pending_batches()), untuned=config.untuned)


def _describe_items(config: RenderEditsConfig, count: int) -> dict[str, Any]:
    items = config.items
    kind = "all_done" if items is None else "query" if isinstance(items, str) else "ids"
    return dict(kind=kind, query=items if kind == "query" else None,
                ids=list(items) if kind == "ids" else None, limit=config.limit, num_items=count)


def record_evaluation(store_url: str, run: str, evaluation: list[dict[str, Any]] | None, *, evaluated_with: str | None,
                      run_id: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Stores the edit evaluation as the run's `evaluation` attribute and consolidates the store's metadata, under
    the store's lease."""
    store = LatentStore.open(store_url, "r+", storage_options=storage_options)
    with store.acquire_lease(run_id, ttl_s=RENEWED_LEASE_TTL_S):
        if evaluation is not None:
            EditRun.open(store, run).set_attrs(evaluation=evaluation, evaluated_with=evaluated_with)
        store.consolidate()


def file_stem(direction: str) -> str:
    """A direction name as a file name that needs no quoting in URLs: `a|b,c` -> `a__given__b+c`."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", direction.replace("|", "__given__").replace(",", "+"))


def page_name(direction: str, start: int, stop: int) -> str:
    """A grid page: the run's items [start, stop) edited along one direction."""
    return f"{file_stem(direction)}/items-{start:06d}-{stop:06d}.png"


@torch.no_grad()
def render(G: torch.nn.Module, ws: np.ndarray, *, noise_mode: str = "const",
           renderer: refine.Render | None = None) -> torch.Tensor:
    """`ws [N, ...]` (one code per item, or `[N, S, num_ws, w_dim]`: S per item) -> images `[N, (S,) 3, H, W]` in
    [-1, 1] on the CPU, `RENDER_BATCH` codes at a time; through `renderer` (`refine.renderer`: the items' tuned
    generators) when given."""
    renderer = renderer or refine.plain_renderer(G, noise_mode=noise_mode)
    x = torch.from_numpy(np.ascontiguousarray(ws, np.float32))
    step = max(1, RENDER_BATCH // (x.shape[1] if x.ndim == 4 else 1))
    return torch.cat([renderer(x[i:i + step], slice(i, min(i + step, len(x)))).cpu() for i in range(0, len(x), step)])


def write_png(url: str, image: Image.Image, storage_options: Mapping[str, Any] | None = None) -> None:
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    fs.pipe_file(path, buffer.getvalue())


def read_png(url: str, storage_options: Mapping[str, Any] | None = None) -> Image.Image:
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    return Image.open(io.BytesIO(fs.cat_file(path))).convert("RGB")


def render_batch(store_url: str, run: str, start: int, stop: int, *, generator: str, grids: str, device: str,
                 noise_mode: str = "const", untuned: bool = False,
                 storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Edits, renders (a refined store's items through their tuned deltas unless `untuned`) and writes the run's
    items [start, stop); returns counts and seconds."""
    began = time.perf_counter()
    store = LatentStore.open(store_url, "r+", storage_options=storage_options)
    edits = EditRun.open(store, run)
    ws = edits.edit(start, stop)  # [n, D, S, num_ws, w_dim]
    G = models.generator(generator, models.resolve_device(device))
    renderer = refine.renderer(G, store, edits.item_indices[start:stop], untuned=untuned, noise_mode=noise_mode)
    num_strengths = ws.shape[2]
    for d, name in enumerate(edits.direction_names):
        images = render(G, ws[:, d], renderer=renderer).flatten(0, 1)  # items x strengths
        write_png(f"{grids}/{page_name(name, start, stop)}", make_image_grid(images, nrow=num_strengths),
                  storage_options)
    edits.write(start, stop, ws)  # ws, then status: the pages above exist for every done item
    return dict(start=start, stop=stop, items=len(ws), images=int(ws[:, :, :, 0, 0].size),
                seconds=round(time.perf_counter() - began, 3))


def evaluate_run(store_url: str, run: str, *, generator: str, classifier: str, device: str, untuned: bool = False,
                 storage_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """`ganinv.directions.evaluate.evaluate_edits` on the run's items, directions and strengths (flip rate of each
    direction's target attribute, change of every other attribute, pixel change), rendered as the run's grids are
    (a refined store's items through their deltas unless `untuned`); NaN as None (JSON)."""
    from ganinv.directions.evaluate import evaluate_edits

    store = LatentStore.open(store_url, "r", storage_options=storage_options)
    edits = EditRun.open(store, run)
    device = models.resolve_device(device)
    G, C = models.generator(generator, device), models.classifier(classifier, device)
    directions = read_directions(store, edits.direction_names)
    layers = edits.attrs["made_by"].get("layers")
    if layers is not None:  # the run's layer override, exactly as its deltas were made
        directions = [dataclasses.replace(d, layers=edit_layers(layers, store.layout.num_ws, G.ws_resolutions))
                      for d in directions]
    rows = evaluate_edits(G, C.predict, store.ws(edits.item_indices), directions, [float(s) for s in edits.strengths],
                          render=refine.renderer(G, store, edits.item_indices, untuned=untuned))
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()} for row in rows]


def assemble_grids(store_url: str, run: str, *, grids: str, max_rows: int,
                   storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Writes `<grids>/index.json` (rows, columns, pages) and, when the run has at most `max_rows` items, one
    `<grids>/<direction>.png` per direction stacking its pages."""
    edits = EditRun.open(LatentStore.open(store_url, "r", storage_options=storage_options), run)
    batches, names = edits.batches(), edits.direction_names
    pages = {name: [page_name(name, a, b) for a, b in batches] for name in names}
    grids_written = {}
    if len(edits) <= max_rows:
        for name in names:
            images = [read_png(f"{grids}/{page}", storage_options) for page in pages[name]]
            stacked = Image.new("RGB", (images[0].width, sum(im.height for im in images)))
            for y, im in zip(np.cumsum([0] + [im.height for im in images[:-1]]), images):
                stacked.paste(im, (0, int(y)))
            labelled = with_column_labels(stacked, [strength_label(float(s)) for s in edits.strengths],
                                          height=LABEL_STRIP)
            write_png(f"{grids}/{file_stem(name)}.png", labelled, storage_options)
            grids_written[name] = f"{file_stem(name)}.png"
    index = dict(store=store_url, run=run, rows=edits.image_ids, columns=[float(s) for s in edits.strengths],
                 layout=f"rows = items (image_id), columns = strengths; one grid per direction, under a "
                        f"{LABEL_STRIP} px strip naming each column's strength", header_px=LABEL_STRIP,
                 directions=names, pages=pages, grids=grids_written)
    fs, path = fsspec.core.url_to_fs(f"{grids}/index.json", **dict(storage_options or {}))
    fs.pipe_file(path, json.dumps(index, indent=1).encode())
    return dict(grids=grids, directions=len(names), items=len(edits), full_grids=sorted(grids_written),
                files=grids_written)

