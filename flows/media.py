"""Flows: morphs between stored items and style mixes of them (the survey's interpolation and style transfer),
kept as edit runs (`edits/<run>`, storage/media.py) with their pictures beside the store in `<store>.edits/<run>/`
(a grid of the morphs and a GIF per pair; the StyleGAN style-mixing figure), which the report shows as galleries.

Steps of each flow:
1. choose the items, compute the codes (`ganinv.edit.interpolate` / `style_mix`) and keep them as `edits/<run>`,
   under the store's lease (a rerun with the same content reuses the run);
2. render them on a Dask worker (`flows.clusters.dask_runner`: local, local-cuda, a scheduler address) and write
   the pictures, then their `index.json`.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow

from flows.clusters import check_execution, dask_client, dask_runner, gpu_annotation
from flows.prefect_api import new_run_id
from runtime.config import ExecutionOptions, MorphConfig, StyleMixConfig
from runtime.media import MediaPlan, MediaSummary
from tasks.media import create_morph_run, create_style_mix_run, render_media_run


@flow(name="render-morphs")
def render_morphs(store: str, config: MorphConfig, execution: ExecutionOptions = ExecutionOptions(), *,
                  storage_options: dict[str, Any] | None = None) -> MediaSummary:
    """Morphs between the pairs of stored items `config.pairs` (runtime/config.py says what each field means)."""
    began, run_id = _start("render-morphs", execution)
    # 1. the codes of every morph, kept as edits/<run> under the lease
    plan = create_morph_run(store, config, run_id=run_id, storage_options=storage_options)
    # 2. render them on a worker: the grid, the GIFs, index.json last
    return _render(store, plan, execution, storage_options, began)


@flow(name="style-mix")
def style_mix(store: str, config: StyleMixConfig, execution: ExecutionOptions = ExecutionOptions(), *,
              storage_options: dict[str, Any] | None = None) -> MediaSummary:
    """Style mixes of stored items (runtime/config.py says what each field means)."""
    began, run_id = _start("style-mix", execution)
    # 1. every content item with every style item's layers, kept as edits/<run> under the lease
    plan = create_style_mix_run(store, config, run_id=run_id, storage_options=storage_options)
    # 2. render them on a worker: the style-mixing figure, index.json last
    return _render(store, plan, execution, storage_options, began)


def _start(name: str, execution: ExecutionOptions) -> tuple[float, str]:
    check_execution(execution)
    return time.perf_counter(), new_run_id(name)


def _render(store: str, plan: MediaPlan, execution: ExecutionOptions, storage_options: dict[str, Any] | None,
            began: float) -> MediaSummary:
    rendered = render_on_workers.with_options(task_runner=dask_runner(execution))(
        store, plan, device=execution.device, storage_options=storage_options)
    return MediaSummary(plan=plan, files=tuple(rendered["files"]), seconds=round(time.perf_counter() - began, 2))


@flow(name="render-media")
def render_on_workers(store: str, plan: MediaPlan, *, device: str,
                      storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Step 2, on the Dask task runner it is given (a GPU worker where workers offer GPUs)."""
    with gpu_annotation(dask_client()):
        return render_media_run.submit(store, plan, device=device, storage_options=storage_options).result()
