"""Prefect tasks and the plain functions behind them.

`tasks.inversion` holds the thin Prefect tasks of the invert-dataset flow (importing it imports prefect);
`tasks.dataset` (scan), `tasks.spec` (inversion settings), `tasks.coordinator` (store setup, planning, summary) and
`tasks.worker` (one shard on one worker) are plain Python, usable without Prefect or Dask.
"""
