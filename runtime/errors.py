"""What a run's settings or a worker can get wrong, as `UserError`s (CLI exit code 2; tasks do not retry them)."""

from __future__ import annotations

from ganinv.errors import UserError


class ConfigError(UserError, ValueError):
    """A setting is invalid or does not fit the generator, encoder or store; the message names it."""


class WorkerSetupError(UserError, RuntimeError):
    """This worker cannot run shards of this store (e.g. it sees another generator file); retrying will not help."""
