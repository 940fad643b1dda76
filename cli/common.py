"""What the command modules share: parsing of list-valued flags, the flags of `ExecutionOptions`, building a config
from the flags given, and the session a flow runs in (quiet logs, one Prefect API, a progress bar).

Flag names are field names (`--num-steps` sets `num_steps`); a flag left out leaves the dataclass's default, which
is stated nowhere else (help texts quote it from the dataclass).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any, Optional

import typer

from runtime.config import AUTO, ExecutionOptions

SEEDS_HELP = "Seeds: a range '0-15', a list '1,5,9', or both '0-3,7'."


def default(cls: type, name: str) -> Any:
    """The default of field `name` of dataclass `cls` (for help texts: the default lives in the dataclass)."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def given(**values: Any) -> dict[str, Any]:
    """The flags the user gave (None means left out): what a config is built from, over its defaults."""
    return {name: value for name, value in values.items() if value is not None}


def on_command_line(ctx: typer.Context, **values: Any) -> dict[str, Any]:
    """Those of `values` (parameter name -> value) whose flag the user typed, even at its default value (to the
    command's code, a flag left out and one given at its default look alike): what a command refuses rather than
    ignore (restore's `--factor 4` for colorize). By the source's name: typer carries its own copy of click, whose
    `ParameterSource` is not click's."""
    return {name: value for name, value in values.items()
            if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"}


VERBOSE = typer.Option(False, "--verbose", "-v", help="Show Prefect and Dask logs (INFO).")
# ExecutionOptions' flags: field -> (type, option). Commands take the ones they use with `@execution_flags(...)`.
EXECUTION_FLAGS: dict[str, tuple[Any, Any]] = {
    "cluster": (Optional[str], typer.Option(None, "--cluster", help="local | local-cuda | tcp://scheduler:8786 "
                                            f"(default {default(ExecutionOptions, 'cluster')}; "
                                            "infra/dask/README.md).")),
    "workers": (Optional[int], typer.Option(None, "--workers", help="Local workers (local-cuda: GPUs to use; "
                                            "default: one per core up to 8, or every GPU).")),
    "dashboard": (Optional[str], typer.Option(None, "--dashboard", help="Serve Dask's dashboard of a local cluster "
                                              "at HOST:PORT (':8787' is 127.0.0.1:8787; default: none).")),
    "dask_security": (Optional[str], typer.Option(None, "--dask-security", help="YAML file of TLS options "
                                                  "(tls_ca_file, tls_client_cert, tls_client_key) for a tls:// "
                                                  "--cluster (infra/dask/README.md).")),
    "device": (Optional[str], typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (default "
                                           f"{default(ExecutionOptions, 'device')}).")),
    "threads": (Optional[int], typer.Option(None, "--threads", help="torch CPU threads per worker (default: this "
                                            "machine's cores shared among local workers).")),
    "batch_size": (Optional[str], typer.Option(None, "--batch-size", help="Images per inversion call per worker, "
                                               "or 'auto': as many as fit each GPU (default 16 on CPU, 32 on "
                                               "CUDA).")),
    "force": (bool, typer.Option(False, "--force", help="Take the store's lease from another (dead) run.")),
    "compile_cache": (Optional[str], typer.Option(None, "--compile-cache", help="Directory (shared by all workers) "
                                                  "where torch.compile keeps what it compiled: the first worker "
                                                  "fills it, later workers and runs start warm (default: torch's "
                                                  "per-user folder in /tmp).")),
}


def execution_flags(*names: str) -> Callable[[Callable], Callable]:
    """Decorates a command that takes `execution: ExecutionOptions`: adds the flags of the fields `names` to its
    signature (EXECUTION_FLAGS) and calls it with the ExecutionOptions they give, checked before anything starts."""
    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != "execution"]
        flags = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=EXECUTION_FLAGS[n][1],
                                   annotation=EXECUTION_FLAGS[n][0]) for n in names]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            if "batch_size" in values:
                values["batch_size"] = batch_size(values["batch_size"])
            return command(*args, execution=execution_options(**{k: v for k, v in values.items() if v is not False}),
                           **kwargs)

        run.__signature__ = signature.replace(parameters=kept + flags)
        run.__annotations__ = {p.name: p.annotation for p in kept + flags}
        return run

    return decorate


def execution_options(**flags: Any) -> ExecutionOptions:
    """ExecutionOptions from the flags given, validated (cluster name, workers, dashboard) before anything starts."""
    from flows.clusters import check_execution

    execution = ExecutionOptions(**given(**flags))
    check_execution(execution)
    return execution


def existing_store(store: str, mode: str = "r"):
    """The latent store at `store`, opened (for reading unless `mode`); a URL that holds none (or one of another
    schema) is refused here, with exit code 2, before the command loads what it works with (torch, matplotlib, a
    Prefect server: seconds to half a minute). Opening needs zarr alone."""
    from storage import LatentStore

    return LatentStore.open(store, mode)


@contextlib.contextmanager
def flow_session(*, verbose: bool = False, progress: bool = False) -> Iterator[None]:
    """Runs the block (which imports and calls a flow) with quiet console logs unless `verbose`, inside
    `prefect_api()` (the configured Prefect API, else a temporary local server that Dask workers share), with a
    progress bar if `progress`. Flows are imported inside the block: prefect must load after the log settings."""
    from flows.prefect_api import quiet_logging

    quiet_logging(verbose=verbose)  # before prefect and distributed are imported
    from flows.console import progress_bar
    from flows.prefect_api import prefect_api

    with prefect_api(), (progress_bar() if progress else contextlib.nullcontext()):
        yield


def csv_list(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def csv_tuple(text: Optional[str]) -> Optional[tuple[str, ...]]:
    """'a, b' -> ('a', 'b'); None stays None (the flag was not given)."""
    return None if text is None else tuple(csv_list(text) or ())


def floats(text: Optional[str], flag: str) -> Optional[tuple[float, ...]]:
    """'-3,-1.5,0' -> (-3.0, -1.5, 0.0)."""
    return _parsed(text, lambda t: tuple(float(part) for part in csv_list(t) or []), flag,
                   "is not a comma-separated list of numbers, e.g. -3,-1.5,0,1.5,3")


def layers(text: Optional[str], flag: str = "--layers") -> str | tuple[int, ...] | None:
    """all, coarse, middle, fine, or ws indices '0,1,2'."""
    if text in ("all", "coarse", "middle", "fine"):
        return text
    return _parsed(text, lambda t: tuple(int(i) for i in csv_list(t) or []), flag,
                   "use all, coarse, middle, fine or ws indices like 0,1,2")


def _parsed(text: Optional[str], parse: Callable[[str], Any], flag: str, what: str) -> Any:
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: {what}", param_hint=flag) from None


def conditions(items: list[str]) -> dict[str, tuple[str, ...]]:
    """['eyeglasses=blond_hair,hat'] -> {'eyeglasses': ('blond_hair', 'hat')}."""
    found = {}
    for item in items:
        name, _, held = item.partition("=")
        if not name or not held:
            raise typer.BadParameter(f"{item!r}: write ATTRIBUTE=HELD[,HELD...], e.g. eyeglasses=blond_hair",
                                     param_hint="--condition")
        found[name.strip()] = tuple(csv_list(held) or ())
    return found


def batch_size(text: Optional[str]) -> int | str | None:
    """`--batch-size`: a positive integer or 'auto'."""
    if text is None:
        return None
    if text.strip().lower() == AUTO:
        return AUTO
    if text.strip().isdigit() and int(text) >= 1:
        return int(text)
    raise typer.BadParameter(f"{text!r}: give a positive number of images or 'auto'", param_hint="--batch-size")


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise typer.BadParameter(f"{text!r} is not a seed list; {SEEDS_HELP}")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise typer.BadParameter(f"seed range {part.strip()!r} is empty; write it low-high")
        seeds.extend(range(first, last + 1))
    return seeds
