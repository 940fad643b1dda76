"""`ganinv refine`: the `refine-store` flow from the terminal (issue 23; runtime/refine_store.py). Flags are named
after the fields of `RefineStoreConfig` and `ExecutionOptions`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli import common
from cli.invert import run_and_summarize
from runtime.config import ExecutionOptions, RefineStoreConfig

app = typer.Typer()

HELP = "\n\n".join(" ".join(paragraph.split()) for paragraph in (
    "Continue the optimisation of every code a latent store holds, for --steps more steps, from the stored codes.",
    """The same losses, per-image seeds and schedule as the inversion that made the codes, longer: S steps and then
    N more land where S + N steps in one go do (docs/inversion.md). Each refined item's codes, thumbnail and metrics
    replace its old ones, which the store keeps in refinements/steps-<T> (T = the new step count). An interrupted
    run resumes when run again with the same --steps; items added to the store later are brought to the same step
    count by the next refinement. Restoration stores, encoder-only stores and stores with pivotal deltas are
    refused.""",
    """Exit codes: 0 every done item reached the target; 1 some items could not be refined (their inputs are
    unreadable now: they keep their codes, listed); 2 usage or configuration error (no such store, no codes to
    refine, another generator, an unfinished refinement with other --steps); 3 the flow crashed or shards failed
    beyond their retries (run again to resume).""",
))


@app.command("refine", help=HELP)
@common.execution_flags("cluster", "workers", "dashboard", "device", "threads", "batch_size", "force")
def refine(
    store: str = typer.Argument(..., help="Latent store to refine (path or fsspec URL)."),
    steps: int = typer.Option(..., "--steps", help="Optimisation steps to add to every item's codes."),
    space: Optional[str] = typer.Option(None, "--space", help="w or w+: continue W codes in W+ (default: the "
                                        "store's space)."),
    generator: Optional[str] = typer.Option(None, "--generator", help="The store's generator, where this machine "
                                            "sees it (default: the path the store records)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the summary as JSON here."),
    verbose: bool = common.VERBOSE,
    execution: ExecutionOptions = None,  # from the flags of `execution_flags`
) -> None:
    config = RefineStoreConfig(steps=steps, space=space)
    common.existing_store(store)  # before torch loads
    from runtime.refine_store import check

    check(store, config, generator=generator)  # refused here, before any server starts (exit 2)

    def run():
        from flows.refine_store import refine_store

        return refine_store(store, config, generator=generator, execution=execution)

    run_and_summarize(run, verbose=verbose, report=report, format_summary=format_summary)


def format_summary(summary) -> str:
    gain = "" if summary.psnr_before is None else \
        f"; mean PSNR of the refined items {summary.psnr_before:.2f} -> {summary.psnr_after:.2f} dB"
    state = "complete" if summary.complete else f"open: {summary.remaining} items below the target"
    lines = [f"store     {summary.store}: refinement to {summary.target_steps} steps (+{summary.more_steps}), "
             f"{state}",
             f"refined   {summary.refined} items at {summary.target_steps} steps, {summary.shards} shards this run in "
             f"{summary.seconds or 0.0:.1f} s{gain}"]
    lines += [f"failed    {f['image_id']}: {f['error']}" for f in summary.failures]
    return "\n".join(lines)
