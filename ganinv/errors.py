"""The one base class of the mistakes a user can fix: `UserError`.

A `UserError` says what was wrong with an input, a setting or a store and what to do about it, in one line; the CLI
prints its message and exits with code 2, with no traceback. Every other exception is a bug: the CLI exits with code
3 and saves the traceback to a file the message names. Retrying never cures a UserError, so tasks do not retry them
either.

Error classes derive from it together with the built-in class callers may already catch
(`class MissingWeights(UserError, FileNotFoundError)`), so both `except UserError` and the older `except
FileNotFoundError` keep working.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: the message names the input and what to do (CLI exit code 2, no traceback)."""
