"""Evaluation reports of a latent store: numbers (metrics.json), plots, image grids and a static HTML page per run,
trends over earlier runs and regression flags. `build_report` is the whole pipeline as plain functions; the Prefect
flow `flows.evaluation_report.evaluation_report` runs the same steps as tasks."""

from flows.report.build import ReportResult, build_report, default_run_name, demo_report, load_history
from flows.report.regressions import Regression, Thresholds

__all__ = ["Regression", "ReportResult", "Thresholds", "build_report", "default_run_name", "demo_report",
           "load_history"]
