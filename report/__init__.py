"""Evaluation reports of a latent store: numbers (metrics.json), plots, image grids and a static HTML page per run,
trends over earlier runs and regression flags. `build_report` is the whole pipeline as plain functions; the Prefect
flow `flows.evaluation_report.evaluation_report` runs them as tasks. What a report is asked for: `ReportConfig`."""

from report.build import ReportResult, build_report, default_run_name, demo_report, load_history
from report.config import ReportConfig
from report.regressions import Regression, Thresholds

__all__ = ["Regression", "ReportConfig", "ReportResult", "Thresholds", "build_report", "default_run_name",
           "demo_report", "load_history"]
