"""Flow: batch edits. Chosen items x chosen directions x strengths -> edited ws in `edits/<run>` and PNG grids
(rows = items, columns = strengths, one grid per direction) beside the store in `<store>.edits/<run>/`.

Items are picked by image id or by a label query on the store's labels (`'smiling == 0 and eyeglasses == 1'`).
Rendering runs in batches on Dask workers, on the clusters the inversion flow uses (`local`, `local-cuda`, a
scheduler address: flows/clusters.py); a task gets the store URL, the run name and an item range, never arrays, and
owns one chunk of the run's arrays. A rerun with the same arguments resumes: finished batches are skipped.
Layout of the run: `storage/edits.py`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows._common import writing
from flows.clusters import check_cluster_name, dask_task_runner, gpu_annotation
from storage import LatentStore
from storage.directions import read_directions
from storage.edits import EditRun, grids_url, select_items
from tasks import models
from tasks.edits import assemble_grids, evaluate_edit_run, file_stem, render_edit_batch

DEFAULT_STRENGTHS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


@flow(name="render-edits", log_prints=True)
def render_edits(store: str, *, directions: Sequence[str], items: str | Sequence[str] | None = None,
                 strengths: Sequence[float] = DEFAULT_STRENGTHS, run: str = "edits", limit: int | None = None,
                 layers: str | Sequence[int] | None = None, batch_size: int = 16, generator: str | None = None,
                 cluster: str = "local", workers: int | None = None, device: str = "auto", max_grid_rows: int = 64,
                 evaluate_with: str | None = None, overwrite: bool = False,
                 storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Edits `items` (image ids, a label query, or None = all done items; the first `limit`) along the stored
    `directions` at each of `strengths` (units of each direction's scale; include 0 for the original) on `layers`
    (default: each direction's own; 'coarse' / 'middle' / 'fine' or ws indices override). `evaluate_with`: an
    attribute classifier (e.g. 'builtin') whose edit evaluation (flip rate, interference, pixel change per direction
    and strength) is stored as the run's `evaluation` attribute. cluster: 'local', 'local-cuda' or a scheduler
    address; workers: how many local workers (GPUs for local-cuda; default as for invert-dataset). Returns a summary."""
    logger = get_run_logger()
    began = time.perf_counter()
    check_cluster_name(cluster)
    # 1. open the store, choose the items and read the directions
    latent_store = LatentStore.open(store, "r+", storage_options=storage_options)
    rows = select_items(latent_store, items, limit=limit)
    chosen = read_directions(latent_store, list(directions))
    source = models.store_generator_source(latent_store.attributes.generator, generator)
    grids = grids_url(store, run)
    # 2. create (or reopen, to resume) edits/<run> under the run lease
    made_by = dict(flow="render_edits", items=_describe_items(items, limit, len(rows)),
                   directions={d.name: d.attrs() for d in chosen}, strengths=[float(s) for s in strengths],
                   layers=layers if layers is None or isinstance(layers, str) else [int(i) for i in layers],
                   generator=models.identity(source), grids=grids)
    with writing(latent_store, "render-edits"):
        edits = EditRun.create(latent_store, run, item_indices=rows, directions=chosen, strengths=strengths,
                               layers=layers, made_by=made_by, batch_size=batch_size, overwrite=overwrite)
    pending = edits.pending_batches()
    logger.info("edit run %r: %d items x %d directions x %d strengths, %d of %d batches to render",
                run, len(edits), len(chosen), len(strengths), len(pending), len(edits.batches()))
    # 3. render the pending batches on the workers, then (optionally) evaluate the edits there too
    results, evaluation = _run_on_dask(store, run, pending, evaluate_with=evaluate_with, cluster=cluster,
                                       workers=workers, generator=source, grids=grids, device=device,
                                       storage_options=storage_options)
    # 4. stack the grid pages into one grid per direction
    grid_summary = assemble_grids(store, run, grids=grids, max_rows=max_grid_rows, storage_options=storage_options)
    # 5. record the evaluation, consolidate the store's metadata and summarise
    with writing(latent_store, "render-edits"):
        if evaluation is not None:
            EditRun.open(latent_store, run).set_attrs(evaluation=evaluation, evaluated_with=evaluate_with)
        latent_store.consolidate()
    summary = dict(run=run, items=len(edits), directions=[d.name for d in chosen], strengths=list(strengths),
                   batches_rendered=len(results), grids=grids, full_grids=grid_summary["full_grids"],
                   grid_files=grid_summary["files"],
                   evaluated=evaluation is not None,
                   seconds=round(time.perf_counter() - began, 2))
    _artifact(summary, results)
    return summary


def _run_on_dask(store: str, run: str, batches: Sequence[tuple[int, int]], *, evaluate_with: str | None,
                 cluster: str, workers: int | None, generator: str, grids: str, device: str,
                 storage_options: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], list[dict] | None]:
    """One render task per pending batch on the cluster (one per GPU where workers offer GPUs), then the edit
    evaluation when `evaluate_with` names a classifier: (render reports, evaluation rows or None). The evaluation
    renders every edited image again, so it runs on a worker, not in the flow's process (often a CPU machine)."""
    if not batches and evaluate_with is None:
        return [], None
    common = dict(store_url=store, run=run, generator=generator, device=device, storage_options=storage_options)
    with dask_task_runner(cluster, workers=workers) as (runner, _), gpu_annotation(runner.client):
        futures = [runner.submit(render_edit_batch, parameters=dict(common, start=start, stop=stop, grids=grids))
                   for start, stop in batches]
        reports = [future.result() for future in futures]
        if evaluate_with is None:
            return reports, None
        evaluation = runner.submit(evaluate_edit_run, parameters=dict(common, classifier=evaluate_with)).result()
        return reports, evaluation


def _describe_items(items: str | Sequence[str] | None, limit: int | None, count: int) -> dict[str, Any]:
    kind = "all_done" if items is None else "query" if isinstance(items, str) else "ids"
    return dict(kind=kind, query=items if kind == "query" else None,
                ids=list(items) if kind == "ids" else None, limit=limit, num_items=count)


def _artifact(summary: dict[str, Any], results: Sequence[dict[str, Any]]) -> None:
    images = sum(r["images"] for r in results)
    seconds = sum(r["seconds"] for r in results)
    lines = [f"# Edit run `{summary['run']}`", "",
             f"{summary['items']} items x {len(summary['directions'])} directions x {len(summary['strengths'])} "
             f"strengths; {len(results)} batches rendered now ({images} images, {seconds:.1f} task-seconds); "
             f"flow {summary['seconds']} s.", "",
             f"Grids (rows = items, columns = strengths {summary['strengths']}): `{summary['grids']}/`", ""]
    lines += [f"- `{name}`: `{file_stem(name)}.png`" if name in summary["full_grids"]
              else f"- `{name}`: pages in `{file_stem(name)}/`" for name in summary["directions"]]
    create_markdown_artifact(key="render-edits", markdown="\n".join(lines), description="batch edits")
