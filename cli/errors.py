"""The CLI's one exit-code policy, applied around every command (`cli.app`):

- 0: done; 1: done, with findings the command explains (inputs that could not be inverted, damaged items,
  regressions); 2: a `UserError` (ganinv/errors.py: bad input, settings, a store that belongs to another run...) or a
  usage error: one line `error: <message>` on stderr, no traceback;
- 3: anything else is a bug, or a run that could not complete: one line naming the exception and the file its
  traceback was saved to (`$GANINV_CRASH_DIR`, else the system's temporary folder);
- 130 / 143: stopped by Ctrl-C (SIGINT) / SIGTERM, after a clean stop: one line saying what is done and how to
  resume (cli/signals.py).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import typer
from typer.exceptions import TyperException

from cli.signals import as_interrupted, stop_on_signals
from ganinv.errors import UserError

USER_ERROR, CRASH = 2, 3


class InputNotFound(UserError, FileNotFoundError):
    """A file or folder a command was given does not exist (for callees that raise a bare FileNotFoundError)."""


@contextlib.contextmanager
def exit_codes() -> Iterator[None]:
    """Turns a UserError into exit code 2, any other exception into exit code 3 with a saved traceback, and SIGINT
    or SIGTERM into a clean stop with exit code 130 or 143."""
    handler = None
    try:
        with stop_on_signals() as handler:
            yield
    except (typer.Exit, typer.Abort, TyperException):  # exits and usage errors: typer reports them itself
        raise
    except BaseException as err:  # noqa: BLE001 - the one place exceptions become exit codes
        stopped = as_interrupted(err, handler)
        if stopped is not None:
            typer.echo(stopped.message(), err=True)
            raise typer.Exit(stopped.exit_code) from None
        if not isinstance(err, Exception):  # SystemExit, GeneratorExit: not ours to turn into a code
            raise
        if isinstance(err, UserError):
            fail(USER_ERROR, str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err))
        fail(CRASH, f"{type(err).__name__}: {err} (a bug, or a run that could not complete: the traceback is in "
                    f"{save_traceback(err)})")


def fail(code: int, message: str) -> None:
    """Ends the command with `code` and one line `error: <message>` on stderr."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def save_traceback(err: BaseException) -> Path:
    """Writes the exception's traceback to a new file and returns its path."""
    folder = Path(os.environ.get("GANINV_CRASH_DIR") or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = folder / f"ganinv-crash-{stamp}-{os.getpid()}.txt"
    path.write_text("".join(traceback.format_exception(err)), encoding="utf-8")
    return path
