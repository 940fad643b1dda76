"""The task of `evaluation-report`: write the report (report/build.py)."""

from __future__ import annotations

from prefect import task

from report import ReportConfig, ReportResult, build_report


@task(name="write-report", retries=1, retry_delay_seconds=10)
def write_report(store: str, reports_root: str, config: ReportConfig) -> ReportResult:
    """Steps 1-5 of build_report: read the store, compute, compare, write the folder, refresh the index."""
    return build_report(store, reports_root, config)
