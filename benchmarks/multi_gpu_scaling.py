"""Multi-GPU scaling of the `invert-dataset` flow: one Dask worker per GPU (`--cluster local-cuda`) against one GPU,
the same images, inversion and Prefect server, in one run.

The world is flow_overhead.py's (`--world config-f-256`: a config-f-sized StyleGAN2 at 256 px with random weights,
`--shards x --shard-size` PNGs sampled from it, W+ optimisation from w_avg with MSE). For each worker count in
`--workers` (default `1,N`, N = the GPUs visible) the flow inverts every image into a fresh store, and two rates
are read from the shard completions it sees (`flows.progress` events carry the worker's pid):

- *steady*: per worker, the image-steps of its shards after its first one over the time from its first to its last
  completion; summed over workers. This is what more GPUs buy on a long run (start-up and model load excluded);
- *end to end*: every image-step over the flow call's wall time (cluster start, worker start, model load, scan,
  store, shards, summary), which a short run pays in full.

Per worker, `per_worker` also splits the time to its first shard into what came before the task started (cluster
and worker start-up, scheduling), model loading, inversion and the rest (decode wait, store writes): the fixed
cost that keeps end-to-end efficiency below the steady one.

Scaling efficiency = rate(N workers) / (N x rate(1 worker)); goal >= 0.9 (steady). Shards go to workers as they
free up (Dask's GPU=1 resource: one shard per GPU at a time), so with S shards on N GPUs the last wave may leave a
GPU idle: S should be a multiple of N, and large against it.

    # 2 GPUs (H100 x2: ~5-6 minutes; Python 3.12 with the repo's deps, no Prefect server need run):
    PYTHONPATH=$PWD PYTHONUNBUFFERED=1 python3 -m benchmarks.multi_gpu_scaling --precision bf16 --channels-last \\
        --out $OUT/multi_gpu_scaling.json
    PYTHONPATH=$PWD python -m benchmarks.multi_gpu_scaling --world tiny --device cpu --cluster local --workers 1,2
    # ^ a CPU smoke run of the same code (tiny generator, local processes), ~1 minute
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Budget, device_facts, markdown_table, write_json
from benchmarks.flow_overhead import make_world, run_flow

COLUMNS = ["workers", "images", "steps", "shards", "steady_image_steps_per_s", "steady_efficiency",
           "end_to_end_s", "end_to_end_image_steps_per_s", "end_to_end_efficiency", "shards_per_worker"]
WORLDS: dict[str, dict[str, Any]] = {
    # 4,096 images x 30 steps; H100 bf16 + channels_last batch 64: ~590 image-steps/s per GPU (flow_overhead),
    # so ~210 s on one GPU and ~105 s on two, plus ~40 s of fixed costs each.
    "config-f-256": dict(shard_size=256, shards=16, steps=30, batch_size=64, space="w+", loss="mse"),
    "tiny": dict(shard_size=4, shards=8, steps=2, batch_size=4, space="w+", loss="mse"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", default="config-f-256", choices=list(WORLDS))
    p.add_argument("--device", default="cuda")
    p.add_argument("--cluster", default="local-cuda", help="local-cuda (one worker per GPU) or local (CPU)")
    p.add_argument("--workers", default=None, help="comma-separated worker counts (default: 1 and every GPU)")
    p.add_argument("--shard-size", type=int, default=None)
    p.add_argument("--shards", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--space", default=None, choices=["w", "w+", "z"])
    p.add_argument("--loss", default=None)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--cuda-graph", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per worker (default: cores / workers)")
    p.add_argument("--time-budget", type=float, default=540.0, help="seconds; worker counts that would not fit are "
                   "skipped, and say so")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    for key, value in WORLDS[args.world].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.workers = [int(n) for n in args.workers.split(",")] if args.workers else default_worker_counts(args)
    if any(n < 1 for n in args.workers):
        p.error(f"--workers {args.workers}: every count must be >= 1")
    return args


def default_worker_counts(args: argparse.Namespace) -> list[int]:
    if args.cluster != "local-cuda":
        return [1, 2]
    from flows.clusters import visible_gpus

    gpus = len(visible_gpus())
    return [1, gpus] if gpus > 1 else [1]


def rates(args: argparse.Namespace, workers: int, run: dict[str, Any]) -> dict[str, Any]:
    """Steady and end-to-end image-steps/s of one flow run (see the module docstring)."""
    by_worker: dict[Any, list[tuple[float, int]]] = defaultdict(list)
    first: dict[Any, dict] = {}
    for t, event in sorted(run["finished"], key=lambda te: te[0]):
        by_worker[event["pid"]].append((t, event["items"]))
        first.setdefault(event["pid"], event)
    steady, per_worker = 0.0, {}
    for pid, shards in by_worker.items():
        if len(shards) >= 2:
            rate = sum(n for _, n in shards[1:]) * args.steps / (shards[-1][0] - shards[0][0])
            steady += rate
            per_worker[str(pid)] = dict(shards=len(shards), image_steps_per_s=round(rate, 2),
                                        **first_shard_breakdown(shards[0][0], first[pid]))
    items = sum(event["items"] for _, event in run["finished"])
    return dict(workers=workers, workers_seen=len(by_worker), images=items, steps=args.steps,
                shards=len(run["finished"]), done=run["done"],
                steady_image_steps_per_s=steady if len(per_worker) == len(by_worker) else None,
                end_to_end_s=run["wall_s"], end_to_end_image_steps_per_s=items * args.steps / run["wall_s"],
                shards_per_worker=sorted(len(s) for s in by_worker.values()), per_worker=per_worker,
                median_shard_spacing_s=statistics.median(
                    [b - a for s in by_worker.values() for (a, _), (b, _) in zip(s, s[1:])] or [float("nan")]))


def first_shard_breakdown(finished_at: float, event: dict) -> dict[str, float | None]:
    """Where the time to a worker's first shard went: before the task started on the worker (cluster and worker
    start-up, scheduling), loading the models, inverting, and the rest of the shard (decode wait, store writes)."""
    seconds, load, invert = event.get("seconds"), event.get("load_s"), event.get("invert_s")
    known = None not in (seconds, load, invert)
    return dict(first_shard_at_s=round(finished_at, 2),
                first_shard_before_task_s=round(finished_at - seconds, 2) if seconds is not None else None,
                first_shard_load_s=round(load, 2) if load is not None else None,
                first_shard_invert_s=round(invert, 2) if invert is not None else None,
                first_shard_other_s=round(seconds - load - invert, 2) if known else None)


def with_efficiency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's rates against `workers` x the one-worker row's (when there is one)."""
    base = next((r for r in rows if r["workers"] == 1), None)
    for row in rows:
        for kind in ("steady", "end_to_end"):
            rate, one = row.get(f"{kind}_image_steps_per_s"), base and base.get(f"{kind}_image_steps_per_s")
            row[f"{kind}_efficiency"] = rate / (row["workers"] * one) if rate and one else None
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from flows.prefect_api import prefect_api, quiet_logging

    quiet_logging()  # before prefect and distributed are imported
    budget = Budget(args.time_budget)
    device = torch.device(args.device)
    facts = device_facts(device)
    if device.type == "cuda":
        facts["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="multi-gpu-") as tmp:
        workdir = Path(tmp)
        world = make_world(args, workdir, args.shards * args.shard_size)
        facts["world"] = dict(name=world.name, images=world.num_images, seconds_to_make=round(world.seconds_to_make, 1),
                              spec=dataclasses.asdict(world.spec))
        print(f"world {world.name}: {world.num_images} images in {world.seconds_to_make:.1f} s", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the workers share these GPUs with this process
        with prefect_api():
            predicted = None
            for workers in args.workers:
                if predicted is not None and budget.remaining() < predicted / workers * 1.2 + 30:
                    rows.append(dict(workers=workers, detail=f"skipped: time budget {args.time_budget:.0f} s"))
                    continue
                run = run_flow(args, world, workdir / f"store-{workers}.zarr", images=world.num_images,
                               workers=workers)
                rows.append(rates(args, workers, run))
                predicted = predicted or run["wall_s"] * workers
                print(markdown_table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    rows = with_efficiency([r for r in rows if "detail" not in r]) + [r for r in rows if "detail" in r]
    facts["elapsed_s"] = budget.elapsed()
    print(markdown_table(rows, COLUMNS))
    payload = dict(facts, args=vars(args), rows=rows)
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
