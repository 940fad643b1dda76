"""How a store's codes are computed numerically, recorded in the store once and fixed for every later run, so that
an item's bytes depend on its image, seed and settings, never on worker count, batch size or shard boundaries.

What decides the bytes besides the recorded inversion settings, as measured on this project's CPU path: the torch
thread count (faces64 hybrid, one image: 1 vs 2 threads differ by up to 7e-3), the batch an image is inverted in
(batch 1 vs 4 differ by up to 8e-3 even with per-image seeds, Adam and losses: batched convolution kernels round
differently), the kind of device and its instruction set, and the torch version. Hence:

- on CPU every image's bytes are those it gets on its own, bitwise independent of batch size, batch composition and
  shard boundaries. New stores (`independent-rows`) invert in batches whose layers keep every row independent
  (`ganinv.generators.layers.independent_rows`: row-by-row products, oneDNN convolutions, no batch of one; measured
  in tests/test_independent_rows.py, and by each worker once per process before its first such batch is written:
  `runtime.shard._check_rows_independent`): faces64 hybrid, 20 steps, one thread, ~0.8 s per face in batches of 16
  against ~1.1 s one at a time (BENCHMARKS.md, "CPU per-image step"). That was verified with one thread per
  worker: workers of several threads (`per-image`), restoration and refinement stages, and stores recorded
  `per-image` before, invert one image at a time with the plain layers. The thread count is
  recorded and every worker sets it, whatever the worker count.
- on CUDA batches stay (per-image inversion would waste the GPU); the batch size is recorded and every run must use
  it. A resumed or appended shard still inverts its pending items in batches of their own, so its codes may differ
  from a fresh run's in float rounding: bitwise reproducibility is promised on CPU only (docs/store.md).
- the device kind, its name (CPU architecture and instruction set, or the GPU model) and the torch version are
  recorded; a worker whose differ refuses to write (WorkerSetupError), and a run asking for other settings is
  refused before any worker starts (ConfigError), naming the setting.

The coordinator records the numerics under the store's lease before it dispatches shards (`settle`); workers read
them from the store (`for_worker`).
"""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from runtime.config import AUTO, ExecutionOptions
from runtime.errors import ConfigError, WorkerSetupError
from runtime.models import resolve_device

PER_IMAGE = "per-image"              # one image per call, plain layers (several threads; stores made before rows)
INDEPENDENT_ROWS = "independent-rows"  # CPU batches of independent rows (any batch size, the same bytes)
BATCH_FREE = (PER_IMAGE, INDEPENDENT_ROWS)  # CPU batchings whose bytes do not depend on the batch size
CUDA_DEFAULT_BATCH = 32  # runtime.shard.DEFAULT_BATCH["cuda"] (not imported: shard imports this module)


@dataclass(frozen=True)
class Numerics:
    """device: 'cpu' or 'cuda'; device_name: CPU architecture and torch's instruction set, or the GPU model;
    threads: torch CPU threads per worker (None on CUDA); batching: 'independent-rows' or 'per-image' (CPU), or
    'batch-<n>' / 'batch-auto' (CUDA); torch: torch's version."""

    device: str
    device_name: str
    threads: int | None
    batching: str
    torch: str

    def to_record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "note": "runtime/numerics.py: every worker must match these"}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Numerics:
        return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls)})

    @property
    def batch_size(self) -> int | str | None:
        """The batch size a CUDA run must use (None on CPU: any batch size gives the same bytes)."""
        if self.batching in BATCH_FREE:
            return None
        size = self.batching.removeprefix("batch-")
        return AUTO if size == AUTO else int(size)

    def differences(self, other: Numerics) -> list[str]:
        return [f"{f.name}: the store's {getattr(self, f.name)!r}, here {getattr(other, f.name)!r}"
                for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]


def probe(device: str = AUTO) -> dict[str, Any]:
    """This process's device facts (run on every worker with `client.run`): device kind and name, torch version,
    its current thread count."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        name = torch.cuda.get_device_name(resolved)
    else:
        name = f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}"
    return {"device": resolved.type, "device_name": name, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def settle(store: Any, execution: ExecutionOptions, probes: Iterable[Mapping[str, Any]], *,
           local_workers: int | None) -> Numerics:
    """The numerics of this run: the store's recorded ones, checked against the workers (`probes`) and the options
    asked for; or, for a store without a record, chosen now and recorded (the caller holds the lease). Raises
    ConfigError naming what differs."""
    facts = _agreed(list(probes))
    recorded = store.attributes.numerics
    if recorded is not None:
        numerics = Numerics.from_record(recorded)
        asked = _chosen(facts, execution, local_workers, default=numerics)
        differences = numerics.differences(asked)
        if differences:
            raise ConfigError(f"store {store.url} was inverted with other numerics ({'; '.join(differences)}): its "
                              "items would not match codes computed here. Run with the store's settings (--threads, "
                              "--batch-size, --device; workers with the same device and torch), or invert into a "
                              "new store")
        return numerics
    numerics = _chosen(facts, execution, local_workers, default=None)
    store.record_numerics(numerics.to_record())
    return numerics


def for_worker(store: Any, execution: ExecutionOptions) -> Numerics:
    """The store's numerics, applied to this process (its torch thread count), after checking that this worker
    computes with them; WorkerSetupError names what differs."""
    if store.attributes.numerics is None:
        raise WorkerSetupError(f"store {store.url} records no numerics: the coordinator records them before it "
                               "dispatches shards (runtime.numerics.settle; `record_for_this_process` in a script)")
    numerics = Numerics.from_record(store.attributes.numerics)
    if numerics.threads is not None:
        torch.set_num_threads(numerics.threads)
    facts = probe(execution.device)
    here = dataclasses.replace(numerics, device=facts["device"], device_name=facts["device_name"],
                               torch=facts["torch"], threads=numerics.threads if facts["device"] == "cpu" else None)
    differences = numerics.differences(here)
    if differences:
        raise WorkerSetupError(f"this worker cannot add codes to {store.url}: {'; '.join(differences)}. Every "
                               "worker of a store needs the same device kind and model, torch version and thread "
                               "count (runtime/numerics.py)")
    return numerics


def record_for_this_process(store: Any, execution: ExecutionOptions = ExecutionOptions()) -> Numerics:
    """`settle` with this process as the only worker (scripts and tests that call `runtime.shard.run_shard`
    themselves)."""
    return settle(store, execution, [probe(execution.device)], local_workers=1)


def _agreed(probes: list[Mapping[str, Any]]) -> dict[str, Any]:
    if not probes:
        raise ConfigError("no worker to probe: start workers first (infra/dask/README.md)")
    keys = ("device", "device_name", "torch")
    kinds = {tuple(p[k] for k in keys) for p in probes}
    if len(kinds) > 1:
        raise ConfigError(f"the workers compute differently ({sorted(kinds)}): one store needs workers of one device "
                          "kind and model and one torch version; pass --device, or use one kind of worker")
    threads = {p["threads"] for p in probes}
    return {**{k: probes[0][k] for k in keys}, "threads": threads.pop() if len(threads) == 1 else 1}


def _chosen(facts: Mapping[str, Any], execution: ExecutionOptions, local_workers: int | None,
            default: Numerics | None) -> Numerics:
    """The numerics these workers and options give; settings not asked for come from `default` (the record) or,
    without one, from the machine."""
    if facts["device"] == "cpu":
        threads = execution.threads or (default.threads if default and default.threads else None)
        if threads is None:
            threads = max(1, (os.cpu_count() or 1) // local_workers) if local_workers else facts["threads"]
        if default is not None and default.batching in BATCH_FREE:
            batching = default.batching
        else:  # independent rows were verified with one thread (torch may split small reductions across threads)
            # and rest on oneDNN's convolutions, which a torch build may lack
            rows = int(threads) == 1 and torch.backends.mkldnn.is_available()
            batching = INDEPENDENT_ROWS if rows else PER_IMAGE
    else:
        threads = None
        batch = execution.batch_size
        if batch is None:
            batch = default.batch_size if default and default.batch_size is not None else CUDA_DEFAULT_BATCH
        batching = f"batch-{batch}"
    return Numerics(device=facts["device"], device_name=facts["device_name"], threads=int(threads) if threads else
                    None, batching=batching, torch=facts["torch"])
