"""The one base class of the mistakes a user can fix: `UserError`.

A `UserError` says what was wrong with an input, a setting or a store and what to do about it; the CLI prints its
message and exits with code 2, with no traceback. Every other exception is a bug: the CLI exits with code 3 and saves
the traceback to a file the message names. Retrying never cures a UserError, so tasks do not retry them either.

Layers above `ganinv` derive their error classes from it (`class StoreMismatchError(UserError, ValueError)`). The
error classes `ganinv` had before this base existed are listed in `_PREDATING` by their qualified names and count as
subclasses (`issubclass`/`isinstance`, through `__subclasshook__`); catch them with `except Exception` and an
`isinstance(err, UserError)` check, as `except UserError` sees real subclasses only.
"""

from __future__ import annotations

import abc

# Error classes of ganinv that are user errors (their modules predate this base class; tests check each name).
_PREDATING = frozenset({
    "ganinv.generators.io.GeneratorLoadError",         # a generator file that cannot be read or trusted
    "ganinv.losses.lpips_distance.PerceptualWeightsMissing",
    "ganinv.metrics.fid.InceptionWeightsMissing",
    "ganinv.utils.weights.MissingWeights",
    "ganinv.utils.weights.BadWeightsFile",
    "ganinv.training.train_encoder.RunConfigMismatch",
})


class UserError(Exception, metaclass=abc.ABCMeta):
    """A mistake the user can fix: the message names the input and what to do (CLI exit code 2, no traceback)."""

    @classmethod
    def __subclasshook__(cls, subclass: type) -> bool:
        if cls is UserError and any(f"{k.__module__}.{k.__qualname__}" in _PREDATING for k in subclass.__mro__):
            return True
        return NotImplemented


def predating_user_errors() -> frozenset[str]:
    """The qualified names of ganinv's own error classes that count as UserError."""
    return _PREDATING
