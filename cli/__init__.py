"""cli: the `ganinv` command (cli/app.py), one module per group of commands; docs/architecture.md shows where it
sits. The console script is `ganinv = "cli.app:app"`."""
