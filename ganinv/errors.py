"""The base class of errors that are the user's to fix (a bad file, argument or config), not ganinv's bugs.

A `UserError`'s message is one line that names the input and says what to do; front ends show it without a
traceback (the CLI exits 2). Any other exception escaping ganinv is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user; the message names it and says what to do."""
