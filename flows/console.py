"""What a person at a terminal sees of a dataset inversion: a progress bar fed by shard completions, the summary,
and the exit code it implies (shared by `ganinv invert` and `make demo`)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flows import progress as flow_progress

if TYPE_CHECKING:
    from runtime.coordinator import InvertSummary


PLAIN_LINE_EVERY_S = 2.0  # without a terminal, a long step prints a line at most this often (and when it ends)


@contextlib.contextmanager
def progress_bar() -> Iterator[None]:
    """A rich progress bar on stderr fed by shard completions and by the long steps of a command (sampling, fitting,
    rendering: runtime/progress.py), one bar each; plain lines when stderr is not a terminal (CI logs): one per
    shard, and per step its start, a line every PLAIN_LINE_EVERY_S and its end."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    live = sys.stderr.isatty()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   transient=False, disable=not live)
    state = {"task": None, "items": 0, "total": 0, "done": 0, "failed": 0, "doing": "inverting"}
    steps: dict[str, Any] = {}  # step name -> its bar's task id (live) or the time of its last line (plain)

    def on_shard(event: dict[str, Any]) -> None:
        if event["event"] == "planned" and event["items"]:
            state["total"], state["doing"] = event["items"], event.get("doing", state["doing"])
            state["task"] = bar.add_task(state["doing"], total=max(event["items"], 1))
        elif event["event"] == "shard" and state["task"] is not None:
            for key in ("items", "done", "failed"):
                state[key] += event[key]
            text = f"{state['doing']} ({state['done']} done, {state['failed']} failed)"
            bar.update(state["task"], advance=event["items"], description=text)
            if not live:
                crashed = " (shard crashed)" if event.get("crashed") else ""
                _line(f"{text}: {state['items']}/{state['total']}{crashed}")

    def on_step(event: dict[str, Any]) -> None:
        name, done, total = event["step"], event["done"], event["total"]
        if live:
            if name not in steps:
                steps[name] = bar.add_task(name, total=max(total, 1))
            bar.update(steps[name], completed=done)
            return
        now = time.monotonic()
        if name not in steps or done >= total or now - steps[name] >= PLAIN_LINE_EVERY_S:
            steps[name] = now
            _line(f"{name}: {done}/{total}")

    def on_event(event: dict[str, Any]) -> None:
        (on_step if event["event"] == "step" else on_shard)(event)

    with bar if live else contextlib.nullcontext(), flow_progress.listening(on_event):
        yield


def _line(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def invert_exit_code(summary: InvertSummary) -> int:
    """0: every input is in the store; 1: some inputs failed or were unreadable (duplicates do not count)."""
    return 0 if summary.complete else 1


def format_invert_summary(summary: InvertSummary) -> str:
    counts, run = summary.counts, summary.this_run
    lines = [f"store     {summary.store}: {summary.num_items} items, {counts['done']} done, "
             f"{counts['failed']} failed, {counts['pending']} pending",
             f"this run  {summary.added} new images; {run.items} inverted in {run.shards} shards "
             f"({run.done} done, {run.failed} failed) in {summary.seconds or 0.0:.1f} s",
             f"scan      {summary.hashed} files read and hashed, {summary.reused} unchanged since the last scan "
             "(hash reused)"]
    if summary.shard_note:
        lines.append(f"shards    {summary.shard_note}")
    lines += [f"skipped   {s.path}: {s.reason}" for s in summary.skipped]
    lines += [f"failed    {f['image_id']}: {f['error']}" for f in summary.failures]
    hidden = counts["failed"] - len(summary.failures)
    if hidden > 0:
        lines.append(f"failed    ... and {hidden} more (see the store's `error` array)")
    return "\n".join(lines)
