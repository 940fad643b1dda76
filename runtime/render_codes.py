"""`ganinv render`: a store's codes as full-size PNG files (the generator's own resolution), to look at or hand on.

- `reconstructions`: each done item's `ws`, rendered with the store's generator (through the item's pivotal delta
  when the store is refined, with the observation kept when a restoration store says so: runtime/item_images.py)
  -> `<out>/<image id>.png` (the id's extension replaced; kept as `<image id>.png` when two chosen ids would share
  a name; sub-folders of the id are kept);
- `edits`: each done item of the edit run `edits/<run>` -> `<out>/<direction>/<image id>_<strength>.png`,
  rendered with the shared generator (render-edits' grids of a refined store use the tuned one).

Rendering uses the generator's constant noise, as the inversion did (docs/store.md: the codes alone reproduce the
thumbnails). Files are written with fsspec, so `out` may be a bucket prefix.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ganinv.errors import UserError

if TYPE_CHECKING:  # imported where used: a bad request is refused before torch and zarr are imported
    from storage import LatentStore
    from storage.edits import EditRun

WHATS = ("reconstructions", "edits")
RENDER_CHUNK = 32  # items read and rendered at a time
Progress = Callable[[int], None]  # called with the number of images just written


class RenderRequestError(UserError, ValueError):
    """What to render was asked for wrongly (unknown kind, missing or unknown edit run, no item chosen)."""


@dataclass(frozen=True)
class RenderedCodes:
    """What `render_codes` wrote: `images` PNGs of `items` items at `resolution` px under `out`."""

    out: str
    what: str
    items: int
    images: int
    resolution: int


@dataclass(frozen=True)
class RenderPlan:
    """Checked before any generator is loaded: the store, the rows to render and, for edits, the run."""

    store: LatentStore
    what: str
    rows: np.ndarray
    run: EditRun | None = None


def plan_render(store_url: str, *, what: str, run: str | None = None, items: str | Sequence[str] | None = None,
                limit: int | None = None, storage_options: Mapping[str, Any] | None = None) -> RenderPlan:
    """Refuses a bad request (exit 2) before anything is loaded or written. `items`: a label query or image ids
    (reconstructions; default: every done item); `limit`: at most this many of them."""
    if what not in WHATS:
        raise RenderRequestError(f"--what {what!r}: choose one of {', '.join(WHATS)}")
    if limit is not None and limit < 1:
        raise RenderRequestError(f"--limit {limit}: give a positive number of items")
    from storage import LatentStore, Status
    from storage.edits import select_items

    store = LatentStore.open(store_url, "r", storage_options=storage_options)
    if what == "edits":
        edit_run = _edit_run(store, run)
        done = np.flatnonzero(edit_run.to_xarray()["status"].values == Status.DONE)
        if not len(done):
            raise RenderRequestError(f"edit run {run!r} has no rendered item yet: run ganinv render-edits again")
        return RenderPlan(store, what, done[:limit], edit_run)
    if not store.done().any():
        raise RenderRequestError(f"{store_url} has no done item to render yet: run ganinv invert first")
    return RenderPlan(store, what, select_items(store, items, limit=limit))


def _edit_run(store: LatentStore, run: str | None) -> EditRun:
    from storage.edits import EditRun

    runs = sorted(store.result_groups("edits"))
    if run is None or run not in runs:
        given = "--run is needed" if run is None else f"no edit run {run!r}"
        raise RenderRequestError(f"{given} for --what edits: the store's edit runs are {runs or 'none'} "
                                 "(ganinv render-edits makes them)")
    return EditRun.open(store, run)


def render_codes(plan: RenderPlan, out: str, *, generator: str | None = None, device: str = "cpu",
                 progress: Progress | None = None, storage_options: Mapping[str, Any] | None = None
                 ) -> RenderedCodes:
    """Renders the planned codes to PNG files under `out` (see the module docstring)."""
    from runtime import models

    source = models.store_generator_source(plan.store.attributes.generator, generator)
    G = models.generator(source, models.resolve_device(device))
    write = _write_reconstructions if plan.what == "reconstructions" else _write_edits
    images = write(plan, G, out.rstrip("/"), progress or (lambda n: None), storage_options)
    return RenderedCodes(out=out, what=plan.what, items=len(plan.rows), images=images,
                         resolution=int(G.img_resolution))


def _write_reconstructions(plan: RenderPlan, G, out: str, progress: Progress, storage_options) -> int:
    from ganinv.utils.images import to_pil
    from runtime.edits import write_png
    from runtime.item_images import item_images  # through each item's pivotal delta, if the store is refined

    ids = [str(i) for i in plan.store.image_ids(plan.rows)]
    names = png_names(ids)
    for start in range(0, len(ids), RENDER_CHUNK):
        chunk = plan.rows[start:start + RENDER_CHUNK]
        for name, image in zip(names[start:start + RENDER_CHUNK], item_images(plan.store, chunk, G)):
            write_png(f"{out}/{name}", to_pil(image), storage_options)
        progress(len(chunk))
    return len(ids)


def _write_edits(plan: RenderPlan, G, out: str, progress: Progress, storage_options) -> int:
    from ganinv.utils.images import to_pil
    from runtime.edits import file_stem, render, write_png

    run = plan.run
    ids, directions, strengths = run.image_ids, run.direction_names, run.strengths
    stems = [posixpath.splitext(name)[0] for name in png_names([ids[i] for i in plan.rows])]
    edited = run.to_xarray()["ws"]  # [item, direction, strength, num_ws, w_dim], read one item at a time
    written = 0
    for row, stem in zip(plan.rows, stems):
        ws = edited[int(row)].values
        for d, direction in enumerate(directions):
            for image, strength in zip(render(G, ws[d]), strengths):
                write_png(f"{out}/{file_stem(direction)}/{stem}_{float(strength):+g}.png", to_pil(image),
                          storage_options)
                written += 1
        progress(len(directions) * len(strengths))
    return written



def png_names(ids: Sequence[str]) -> list[str]:
    """'a/b.jpg' -> 'a/b.png'; every id keeps its full name ('b.jpg.png') when two would collide otherwise. An id
    that would name a file outside the output folder is refused."""
    outside = [i for i in ids if posixpath.isabs(i) or ".." in i.split("/")]
    if outside:
        raise RenderRequestError(f"image ids {outside[:3]} do not name files inside the output folder")
    names = [posixpath.splitext(i)[0] + ".png" for i in ids]
    return names if len(set(names)) == len(names) else [i if i.endswith(".png") else i + ".png" for i in ids]
