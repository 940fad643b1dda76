"""`python -m cli ...` runs the `ganinv` command."""

from cli.app import app

app()
