"""The `ganinv` command: one typer sub-app per module of cli/, merged into one command list, and the exit-code
policy of cli/errors.py applied around every command. A new command is one module with its own `app`, added to
`SUB_APPS`."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from cli import directions, edits, generators, invert, media, refine, render, report, restore, store, train
from cli.errors import exit_codes

SUB_APPS = (generators, invert, restore, refine, store, directions, edits, render, media, report, train)


class _Commands(TyperGroup):
    """Every command runs inside `exit_codes()`: UserError -> 2 with one line, anything else -> 3 with a saved
    traceback."""

    def invoke(self, ctx):
        with exit_codes():
            return super().invoke(ctx)


app = typer.Typer(cls=_Commands, no_args_is_help=True, help="Invert image datasets into a StyleGAN2 latent space.")
for module in SUB_APPS:
    app.add_typer(module.app)
