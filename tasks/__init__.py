"""tasks: the Prefect tasks of the flows, each a thin typed wrapper around a `runtime`, `storage` or `report` call with
its retries declared in the decorator (`tasks.policy`). They pass store URLs, shard indices and small dataclasses,
never arrays."""
