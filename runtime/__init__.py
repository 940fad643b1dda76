"""runtime: what runs in a flow's process and on its workers, as plain functions usable without Prefect or Dask.

`runtime.models` is the process's model cache and device handling; `runtime.spec` the resolved settings of a
dataset inversion (what a store records); `runtime.coordinator` the coordinator's steps of an inversion (check
settings, open the store, plan, summarise); `runtime.shard` one shard on one worker; `runtime.directions` and
`runtime.edits` finding edit directions and rendering batch edits. tasks/ wraps these as Prefect tasks.
"""
