"""The tasks of `render-edits`: thin wrappers around `runtime.edits`. A render task gets the store URL, the run name
and an item range, never arrays, and owns one chunk of the run's arrays."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task

from runtime import edits
from runtime.config import RenderEditsConfig
from runtime.edits import EditPlan
from tasks.policy import RETRY


@task(name="create-edit-run", **RETRY)
def create_edit_run(store: str, config: RenderEditsConfig, *, run_id: str,
                    storage_options: Mapping[str, Any] | None = None) -> EditPlan:
    """1. Choose the items, read the directions, create (or reopen) `edits/<run>` under the lease."""
    return edits.create_run(store, config, run_id=run_id, storage_options=storage_options)


@task(name="render-edit-batch", **RETRY)
def render_edit_batch(store: str, plan: EditPlan, start: int, stop: int, *, device: str,
                      storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """2. Edit, render and write the run's items [start, stop) on a worker."""
    return edits.render_batch(store, plan.run, start, stop, generator=plan.generator, grids=plan.grids,
                              device=device, untuned=plan.untuned, storage_options=storage_options)


@task(name="evaluate-edit-run", **RETRY)
def evaluate_edit_run(store: str, plan: EditPlan, *, classifier: str, device: str,
                      storage_options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """2b. Flip rates and interference of the run's edits, scored by an attribute classifier on a worker."""
    return edits.evaluate_run(store, plan.run, generator=plan.generator, classifier=classifier, device=device,
                              untuned=plan.untuned, storage_options=storage_options)


@task(name="assemble-edit-grids", **RETRY)
def assemble_edit_grids(store: str, plan: EditPlan, *, max_rows: int,
                        storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """3. Stack each direction's grid pages into one grid and write the grids' index.json."""
    return edits.assemble_grids(store, plan.run, grids=plan.grids, max_rows=max_rows, storage_options=storage_options)


@task(name="record-edit-evaluation", **RETRY)
def record_edit_evaluation(store: str, run: str, evaluation: list[dict[str, Any]] | None, *,
                           evaluated_with: str | None, run_id: str,
                           storage_options: Mapping[str, Any] | None = None) -> None:
    """4. Store the evaluation with the run and consolidate the store's metadata, under the lease."""
    edits.record_evaluation(store, run, evaluation, evaluated_with=evaluated_with, run_id=run_id,
                            storage_options=storage_options)
