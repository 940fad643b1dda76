"""What the tasks share: retry only what may pass (I/O, a lost GPU, a bucket hiccup), never a mistake a user must
fix or a bug; and no result caching (the store, not Prefect's cache, knows what is done)."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from ganinv.errors import UserError

# Failures the same call would raise again: a user's mistake (bad settings or inputs, a store that belongs to another
# run) or a programming error.
PERMANENT_ERRORS = (UserError, TypeError, ValueError, KeyError, AttributeError)
NO_CACHE_POLICY = NO_CACHE


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry unless the failure is permanent (see PERMANENT_ERRORS)."""
    return not isinstance(state.result(raise_on_failure=False), PERMANENT_ERRORS)


RETRY = dict(retries=2, retry_delay_seconds=5, retry_condition_fn=transient, cache_policy=NO_CACHE)
