"""Prefect tasks for batch edits: render one batch of an edit run on a worker, and assemble the PNG grids.

A render task gets the store URL, the run name and an item range of the run, never arrays: it reads the items' ws
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
from typing import Any

import fsspec
import numpy as np
import torch
from PIL import Image
from prefect import task

from ganinv.edit import resolve_layers as edit_layers
from ganinv.utils.images import make_image_grid
from storage import LatentStore
from storage.edits import EditRun
from tasks import models

RENDER_BATCH = 64  # images per synthesis call


def file_stem(direction: str) -> str:
    """A direction name as a file name that needs no quoting in URLs: `a|b,c` -> `a__given__b+c`."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", direction.replace("|", "__given__").replace(",", "+"))


def page_name(direction: str, start: int, stop: int) -> str:
    """A grid page: the run's items [start, stop) edited along one direction."""
    return f"{file_stem(direction)}/items-{start:06d}-{stop:06d}.png"


@torch.no_grad()
def render(G: torch.nn.Module, ws: np.ndarray, *, noise_mode: str = "const") -> torch.Tensor:
    """`ws [N, num_ws, w_dim]` -> images `[N, 3, H, W]` in [-1, 1] on the CPU, `RENDER_BATCH` at a time."""
    device = next(G.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(ws, np.float32))
    return torch.cat([G.synthesis(x[i:i + RENDER_BATCH].to(device), noise_mode=noise_mode).cpu()
                      for i in range(0, len(x), RENDER_BATCH)])


def write_png(url: str, image: Image.Image, storage_options: Mapping[str, Any] | None = None) -> None:
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    fs.pipe_file(path, buffer.getvalue())


def read_png(url: str, storage_options: Mapping[str, Any] | None = None) -> Image.Image:
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    return Image.open(io.BytesIO(fs.cat_file(path))).convert("RGB")


@task(name="render-edit-batch", retries=2, retry_delay_seconds=5)
def render_edit_batch(store_url: str, run: str, start: int, stop: int, *, generator: str, grids: str,
                      device: str = "auto", noise_mode: str = "const",
                      storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Edits, renders and writes the run's items [start, stop); returns counts and seconds."""
    began = time.perf_counter()
    store = LatentStore.open(store_url, "r+", storage_options=storage_options)
    edits = EditRun.open(store, run)
    ws = edits.edit(start, stop)  # [n, D, S, num_ws, w_dim]
    G = models.generator(generator, models.resolve_device(device))
    n, _, num_strengths = ws.shape[:3]
    for d, name in enumerate(edits.direction_names):
        images = render(G, ws[:, d].reshape(n * num_strengths, *ws.shape[3:]), noise_mode=noise_mode)
        write_png(f"{grids}/{page_name(name, start, stop)}", make_image_grid(images, nrow=num_strengths),
                  storage_options)
    edits.write(start, stop, ws)  # ws, then status: the pages above exist for every done item
    return dict(start=start, stop=stop, items=n, images=int(ws[:, :, :, 0, 0].size),
                seconds=round(time.perf_counter() - began, 3))


@task(name="evaluate-edit-run")
def evaluate_edit_run(store_url: str, run: str, *, generator: str, classifier: str = "builtin",
                      device: str = "auto", batch_size: int = 64,
                      storage_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """`ganinv.directions.evaluate.evaluate_edits` on the run's items, directions and strengths (flip rate of each
    direction's target attribute, change of every other attribute, pixel change); NaN as None (JSON)."""
    from ganinv.directions.evaluate import evaluate_edits
    from storage.directions import read_directions

    store = LatentStore.open(store_url, "r", storage_options=storage_options)
    edits = EditRun.open(store, run)
    device = models.resolve_device(device)
    G, C = models.generator(generator, device), models.classifier(classifier, device)
    directions = read_directions(store, edits.direction_names)
    layers = edits.attrs["made_by"].get("layers")
    if layers is not None:  # the run's layer override, exactly as its deltas were made
        directions = [dataclasses.replace(d, layers=edit_layers(layers, store.layout.num_ws)) for d in directions]
    ws = np.asarray(store.array("ws").get_orthogonal_selection((edits.item_indices,)), np.float32)
    rows = evaluate_edits(G, C.predict, ws, directions, [float(s) for s in edits.strengths], batch_size=batch_size)
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()} for row in rows]


@task(name="assemble-edit-grids")
def assemble_grids(store_url: str, run: str, *, grids: str, max_rows: int = 64,
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
            write_png(f"{grids}/{file_stem(name)}.png", stacked, storage_options)
            grids_written[name] = f"{file_stem(name)}.png"
    index = dict(store=store_url, run=run, rows=edits.image_ids, columns=[float(s) for s in edits.strengths],
                 layout="rows = items (image_id), columns = strengths; one grid per direction",
                 directions=names, pages=pages, grids=grids_written)
    fs, path = fsspec.core.url_to_fs(f"{grids}/index.json", **dict(storage_options or {}))
    fs.pipe_file(path, json.dumps(index, indent=1).encode())
    return dict(grids=grids, directions=len(names), items=len(edits), full_grids=sorted(grids_written),
                files=grids_written)

