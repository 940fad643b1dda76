"""A torch.compile cache that every worker of a run, and the next run, reads: one directory for all of torch's own
on-disk compile caches.

torch.compile keeps what it builds under `TORCHINDUCTOR_CACHE_DIR` (default: a per-user folder in /tmp, so a fresh
container or another host starts cold): inductor's FX graph cache (the generated code of each graph), AOTAutograd's
cache (the forward/backward split, so a warm start skips it too), the compiled Triton kernels bundled with them,
and autotuning results. Entries are keyed by the graph, the input shapes and guards, the torch/Triton versions and
the device, so one directory can serve mixed machines; a miss only means compiling. Files are written atomically
(to a temporary name, then renamed), so workers that compile the same graph at once, on one host or on a shared
filesystem, leave one valid entry. The first worker to compile a graph fills the directory; every later process
(the other workers, tomorrow's run) reads it and starts in seconds instead of minutes (BENCHMARKS.md).

`check_compile_cache` runs where the run is configured (before servers start), `use_compile_cache` in each worker
process before its first compile.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ganinv.errors import UserError

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


class CompileCacheError(UserError, ValueError):
    """The compile cache directory cannot be used (its parent is missing, it is a file, or it is not writable)."""


def check_compile_cache(path: str | os.PathLike) -> Path:
    """The cache directory as an absolute path, created if its parent exists; a CompileCacheError naming it when it
    cannot hold the cache. The parent must exist so that a mistyped mount point is refused rather than filled."""
    text = os.fspath(path)
    if "://" in text:
        raise CompileCacheError(f"compile cache {text!r}: a bucket URL cannot hold torch's compile cache; give a "
                                "directory on a filesystem every worker mounts (e.g. /shared/ganinv-compile-cache)")
    directory = Path(text).expanduser().absolute()
    if not directory.exists():
        if not directory.parent.is_dir():
            raise CompileCacheError(f"compile cache {str(directory)!r}: its parent {str(directory.parent)!r} does not "
                                    "exist; create it (or mount the shared filesystem) first")
        try:
            directory.mkdir(exist_ok=True)
        except OSError as err:
            raise CompileCacheError(f"compile cache {str(directory)!r} cannot be created: {err.strerror or err}; "
                                    "choose a directory you can write") from None
    if not directory.is_dir():
        raise CompileCacheError(f"compile cache {str(directory)!r} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as err:
        raise CompileCacheError(f"compile cache {str(directory)!r} is not writable: {err.strerror or err}; workers "
                                "fill it with what they compile: choose a directory they can write") from None
    return directory


def use_compile_cache(path: str | os.PathLike) -> Path:
    """Point this process's torch.compile caches at `path` (checked as by `check_compile_cache`) and make sure the
    persistent caches are on; call before the first compilation of the process (earlier compiles stay where they
    were written). Returns the directory."""
    directory = check_compile_cache(path)
    os.environ[CACHE_ENV] = str(directory)  # inductor reads it at every cache access (cache_dir_utils.cache_dir)
    import torch._functorch.config
    import torch._inductor.config

    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True
    return directory


def compile_cache_dir() -> str | None:
    """The directory this process's compile caches use, if one was set (`use_compile_cache` or the environment)."""
    return os.environ.get(CACHE_ENV)
