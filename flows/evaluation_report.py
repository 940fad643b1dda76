"""The nightly evaluation report as a Prefect flow: the steps of `report.build_report` as tasks (tasks/report.py), then a
markdown artifact linking the report.

State: a run with regressions ends **Failed** (a deliberate `Failed` state whose message lists them, not an exception
and not Crashed), so a Prefect automation on `prefect.flow-run.Failed` for this deployment alerts on regressions; the
report is written and the artifact created first. `config.fail_on_regression=False` ends Completed instead. Real errors
(an unreadable store, `fid=True` without Inception weights) raise and fail the run with their own message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State

from report import ReportConfig, ReportResult
from tasks.report import write_report

ARTIFACT_KEY = "evaluation-report"


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
def evaluation_report(store: str, reports_root: str = "reports", config: ReportConfig = ReportConfig()) -> State:
    """Write the evaluation report of `store` into `reports_root/<run>/` and flag regressions against the last run
    (report/config.py says what `config` holds). Throughput comes from the store's run log (storage/runs.py).
    Returns the final state (see the module docstring).
    """
    logger = get_run_logger()
    # 1-5. read the store, compute the numbers, compare with the previous run, write the folder and the index
    result = write_report(store, str(Path(reports_root)), config)
    # 6. link the report from the Prefect UI
    create_markdown_artifact(markdown=artifact_markdown(result), key=ARTIFACT_KEY,
                             description=f"evaluation report {result.metrics['run']}")
    logger.info("report: %s", result.url)
    for regression in result.regressions:
        logger.warning("regression: %s", regression.message)
    # 7. end Failed when something got worse, so automations alert
    return final_state(result, fail_on_regression=config.fail_on_regression)
