"""The tasks of `evaluation-report`: write the report (report/build.py), and ask Prefect how long the store's last
inversion took (for images per second)."""

from __future__ import annotations

from prefect import task

from report import ReportConfig, ReportResult, build_report

INVERSION_FLOW = "invert-dataset"  # flows/invert_dataset.py: its runs' wall time gives the report's images/s


@task(name="write-report", retries=1, retry_delay_seconds=10)
def write_report(store: str, reports_root: str, config: ReportConfig) -> ReportResult:
    """Steps 1-5 of build_report: read the store, compute, compare, write the folder, refresh the index."""
    return build_report(store, reports_root, config)


@task(name="inversion-wall-seconds")
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
    return next((run.total_run_time.total_seconds() for run in runs
                 if str(run.parameters.get("store")) == str(store)), None)
