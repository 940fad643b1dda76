"""The CLI moved to the `cli` package (cli/app.py). This alias keeps `from flows.cli import app` working for the
embedded world's test and model card until they are updated; nothing in flows/ imports the CLI."""

from cli.app import app  # noqa: F401

if __name__ == "__main__":
    app()
