"""The nightly evaluation report as a Prefect flow: the steps of `flows.report.build_report`, each a task, then a
markdown artifact linking the report.

State: a run with regressions ends **Failed** (a deliberate `Failed` state whose message lists them, not an exception
and not Crashed), so a Prefect automation on `prefect.flow-run.Failed` for this deployment alerts on regressions; the
report is written and the artifact created first. `fail_on_regression=False` ends Completed instead. Real errors
(an unreadable store, `fid=True` without Inception weights) raise and fail the run with their own message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State

from flows.report import ReportResult, Thresholds, build_report

ARTIFACT_KEY = "evaluation-report"
INVERSION_FLOW = "invert-dataset"  # flows/invert_dataset.py: its runs' wall time gives the report's images/s


@task(retries=1, retry_delay_seconds=10)
def write_report(store: str, reports_root: str, *, run: str | None, thresholds: Thresholds, fid: bool | None,
                 edit_rows: str | None, galleries: Sequence[tuple[str, str]], wall_seconds: float | None,
                 device_kind: str | None) -> ReportResult:
    """Steps 1-5 of build_report (read the store, compute, compare, write the folder, refresh the index)."""
    return build_report(store, reports_root, run=run, thresholds=thresholds, fid=fid, edit_rows=edit_rows,
                        galleries=galleries, wall_seconds=wall_seconds, device_kind=device_kind)


@task
def inversion_wall_seconds(store: str, *, lookback: int = 50) -> float | None:
    """Run time of the newest completed `invert-dataset` flow run on `store`, from the Prefect API (None if none)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState,
                                                FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[INVERSION_FLOW])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.COMPLETED]))),
            sort=FlowRunSort.END_TIME_DESC, limit=lookback)
    for run in runs:
        if str(run.parameters.get("store")) == str(store):
            return run.total_run_time.total_seconds()
    return None


def artifact_markdown(result: ReportResult) -> str:
    """The artifact: a link to the report, the headline numbers and the regressions."""
    m = result.metrics
    c, q = m["counts"], m["quality"]
    lines = [f"# Evaluation report {m['run']}", "", f"[Open the report]({result.url}) (`{result.path}`)", ""]
    if result.regressions:
        previous = m["comparison"]["previous_run"]
        lines += [f"**{len(result.regressions)} regression(s) against run {previous}:**", ""]
        lines += [f"- {r.message}" for r in result.regressions] + [""]
    lines += ["| items | done | failed | failure rate | mean PSNR | mean SSIM |", "|---|---|---|---|---|---|",
              f"| {c['items']} | {c['done']} | {c['failed']} | {_fmt(c['failure_rate'], '.1%')} | "
              f"{_fmt((q.get('psnr') or {}).get('mean'), '.2f')} | {_fmt((q.get('ssim') or {}).get('mean'), '.4f')} |"]
    return "\n".join(lines)


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def final_state(result: ReportResult, *, fail_on_regression: bool) -> State:
    """Failed (alertable) when regressions were found and fail_on_regression, else Completed; data = summary."""
    summary = dict(path=str(result.path), url=result.url, run=result.metrics["run"],
                   regressions=[r.message for r in result.regressions])
    if result.regressions and fail_on_regression:
        listed = "; ".join(summary["regressions"])
        return Failed(message=f"{len(result.regressions)} regression(s) against run "
                              f"{result.metrics['comparison']['previous_run']}: {listed}. Report: {result.url}",
                      data=summary)
    return Completed(message=f"report written: {result.url}", data=summary)


@flow(name="evaluation-report", log_prints=True)
def evaluation_report(store: str, reports_root: str = "reports", *, run: str | None = None,
                      thresholds: Mapping[str, float] | None = None, fid: bool | None = None,
                      fail_on_regression: bool = True, edit_rows: str | None = None,
                      galleries: Sequence[tuple[str, str]] = (), wall_seconds: float | None = None,
                      device_kind: str | None = None) -> State:
    """Write the evaluation report of `store` into `reports_root/<run>/` and flag regressions against the last run.

    thresholds: overrides of `Thresholds` fields by name, e.g. {"psnr_drop_db": 0.3}. fid: None = when available,
    True = required, False = skip. wall_seconds: the inversion's wall time, by default that of the newest completed
    `invert-dataset` run on this store. Returns the final state (see the module docstring).
    """
    logger = get_run_logger()
    # 0. how long the inversion took (for images per second), if Prefect ran it
    if wall_seconds is None:
        wall_seconds = inversion_wall_seconds(store)
    # 1-5. read the store, compute the numbers, compare with the previous run, write the folder and the index
    limits = Thresholds.with_overrides(thresholds or {})
    result = write_report(store, str(Path(reports_root)), run=run, thresholds=limits, fid=fid, edit_rows=edit_rows,
                          galleries=[tuple(g) for g in galleries], wall_seconds=wall_seconds, device_kind=device_kind)
    # 6. link the report from the Prefect UI
    create_markdown_artifact(markdown=artifact_markdown(result), key=ARTIFACT_KEY,
                             description=f"evaluation report {result.metrics['run']}")
    logger.info("report: %s", result.url)
    for regression in result.regressions:
        logger.warning("regression: %s", regression.message)
    # 7. end Failed when something got worse, so automations alert
    return final_state(result, fail_on_regression=fail_on_regression)
