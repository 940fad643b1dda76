"""Flow: batch edits. Chosen items x chosen directions x strengths -> edited ws in `edits/<run>` and PNG grids
(rows = items, columns = strengths, one grid per direction) beside the store in `<store>.edits/<run>/`.

Items are picked by image id or by a label query on the store's labels (`'smiling == 0 and eyeglasses == 1'`).
Rendering runs in batches on Dask workers (the subflow `render-edit-batches`, given `flows.clusters.dask_runner`:
`local`, `local-cuda`, a scheduler address); a task gets the store URL, the run and an item range, never arrays, and
owns one chunk of the run's arrays. A rerun with the same config resumes: finished batches are skipped. Layout of a
run: storage/edits.py; what each step does: runtime/edits.py.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

from flows import artifacts
from flows.clusters import check_execution, dask_client, dask_runner, gpu_annotation
from flows.prefect_api import new_run_id
from flows.progress import step
from runtime.config import ExecutionOptions, RenderEditsConfig
from runtime.edits import EditPlan, EditSummary
from tasks.edits import (assemble_edit_grids, create_edit_run, evaluate_edit_run, record_edit_evaluation,
                         render_edit_batch)


@flow(name="render-edits", log_prints=True)
def render_edits(store: str, config: RenderEditsConfig, execution: ExecutionOptions = ExecutionOptions(), *,
                 storage_options: dict[str, Any] | None = None) -> EditSummary:
    """Edits the chosen items along the stored directions (runtime/config.py says what each field means)."""
    began = time.perf_counter()
    run_id = new_run_id("render-edits")
    check_execution(execution)
    # 1. choose the items, read the directions, create (or reopen, to resume) edits/<run> under the lease
    plan = create_edit_run(store, config, run_id=run_id, storage_options=storage_options)
    get_run_logger().info("edit run %r: %d items x %d directions x %d strengths, %d of %d batches to render",
                          plan.run, plan.items, len(plan.directions), len(plan.strengths), len(plan.pending),
                          plan.batches)
    # 2. render the pending batches on the workers, then (optionally) evaluate the edits there too
    rendered, evaluation = [], None
    if plan.pending or config.evaluate_with:
        rendered, evaluation = render_edit_batches.with_options(task_runner=dask_runner(execution))(
            store, plan, evaluate_with=config.evaluate_with, device=execution.device, storage_options=storage_options)
    # 3. stack the grid pages into one grid per direction
    grids = assemble_edit_grids(store, plan, max_rows=config.max_grid_rows, storage_options=storage_options)
    # 4. record the evaluation and consolidate the store's metadata, under the lease
    record_edit_evaluation(store, plan.run, evaluation, evaluated_with=config.evaluate_with, run_id=run_id,
                           storage_options=storage_options)
    summary = EditSummary(plan=plan, batches_rendered=len(rendered), grid_files=grids["files"],
                          evaluated=evaluation is not None, seconds=round(time.perf_counter() - began, 2))
    artifacts.publish_edits(summary, rendered)
    return summary


@flow(name="render-edit-batches")
def render_edit_batches(store: str, plan: EditPlan, *, evaluate_with: str | None, device: str,
                        storage_options: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], Any]:
    """Step 2, on the Dask task runner it is given: one render task per pending batch (one per GPU where workers
    offer GPUs), then the edit evaluation when `evaluate_with` names a classifier. The evaluation renders every
    edited image again, so it runs on a worker, not in the flow's process (often a CPU machine)."""
    common = dict(device=device, storage_options=storage_options)
    with gpu_annotation(dask_client()):
        futures = [render_edit_batch.submit(store, plan, start, stop, **common) for start, stop in plan.pending]
        advance = step(f"rendering edits ({len(plan.directions)} directions x {len(plan.strengths)} strengths)",
                       sum(stop - start for start, stop in plan.pending))
        rendered = []
        for future in futures:  # in order: the bar moves as the first batches finish
            rendered.append(future.result())
            advance(rendered[-1]["items"])
        if evaluate_with is None:
            return rendered, None
        evaluating = step(f"evaluating the edits with {evaluate_with}", 1)
        evaluation = evaluate_edit_run.submit(store, plan, classifier=evaluate_with, **common).result()
        evaluating(1)
        return rendered, evaluation
