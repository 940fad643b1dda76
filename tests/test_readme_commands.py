"""Every `ganinv ...` command shown in the README's (and the docs') code blocks exists and takes the options and
arguments it is shown with, parsed by the CLI's own parser (issue 19, item 1: the README said `--count` where the
command took `--n`). Parsing checks names, values and argument counts; it runs nothing."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.exceptions import TyperException

from cli.app import app

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "infra").rglob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
OPTIONAL = re.compile(r"\[(--[^\]]*)\]")  # a synopsis's optional part: `[--refine-rank 4]`, `[--keep/--no-keep]`


def shown_commands(text: str) -> list[list[str]]:
    """The argv of every line of a fenced code block that runs `ganinv` (continued lines joined, comments and a
    leading `$ ` prompt dropped, optional parts shown as `[--flag VALUE]` included, so that they are checked too)."""
    found = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = OPTIONAL.sub(lambda m: re.split(r"/(?=--)", m.group(1))[0], line.strip().removeprefix("$ "))
            if line.startswith("ganinv "):
                found.append(shlex.split(line, comments=True)[1:])
    return found


def _cases() -> list:
    return [pytest.param(argv, id=f"{path.relative_to(REPO)}: ganinv {' '.join(argv)}"[:120])
            for path in DOCUMENTS for argv in shown_commands(path.read_text())]


def test_the_readme_shows_commands():
    assert len(shown_commands((REPO / "README.md").read_text())) >= 15


@pytest.mark.parametrize("argv", _cases())
def test_a_documented_command_parses(argv):
    group = typer.main.get_command(app)
    name, *args = argv
    command = group.commands.get(name)
    assert command is not None, f"`ganinv {name}` is not a command (commands: {sorted(group.commands)})"
    try:
        command.make_context(name, list(args))
    except typer.Exit:  # --help
        pass
    except TyperException as err:  # typer's (vendored click's) usage errors
        pytest.fail(f"`ganinv {' '.join(argv)}`: {err}")


def test_a_wrong_option_would_be_caught():
    group = typer.main.get_command(app)
    with pytest.raises(TyperException, match="No such option"):
        group.commands["make-dataset"].make_context("make-dataset", ["faces/", "--cnt", "64"])
    assert shown_commands("```bash\nganinv invert a/ \\\n    --store s.zarr [--seed 3]  # a comment\n```\n") == [
        ["invert", "a/", "--store", "s.zarr", "--seed", "3"]]
