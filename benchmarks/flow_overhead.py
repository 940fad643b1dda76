"""What Prefect, Dask, decoding and the store add to pure inversion time, per shard (`ganinv invert`'s unit of work).

Three measurements of the same shards (`--shard-size` held-out faces64 images, hybrid inversion, `--steps`):

(a) pure: `ganinv.inversion.hybrid` on tensors already in memory, in batches of `--batch-size` (what a worker's
    inversion costs, nothing else);
(b) task: `tasks.worker.run_shard` in this process, models already cached: opens the store by URL, reads the
    pending items, decodes the PNGs, inverts, writes ws / thumbnails / metrics / status;
(c) flow: the `invert-dataset` flow on one local Dask worker (`--cluster local`, or `local-cuda` on a GPU) over
    `--shards` shards, against a temporary Prefect server. Per-shard cost = the spacing of shard completions seen
    by the flow (after the first shard, which carries the worker's start-up and model load), compared with the
    inversion time the worker reported for the same shards (same process, same moment: on a shared machine this
    is fairer than comparing with (a)); fixed costs (server start, flow start to first shard, teardown) are
    reported separately.

Overheads, each against the inversion time measured in the same run: task = (run_shard time - its invert time) /
its invert time; flow = (completion spacing - the worker's invert time) / the worker's invert time.
Goal on the GPU: flow over pure <= 5 %.

    PYTHONPATH=$PWD python -m benchmarks.flow_overhead --device cpu --out runs/flow_overhead_cpu.json
    python -m benchmarks.flow_overhead --device cuda --cluster local-cuda --shard-size 256 --steps 100 \
        --batch-size 64 --shards 4 --out $OUT/flow_overhead_gpu.json          # on a GPU machine
    --parts pure,task   skips (c) where prefect / dask are not installed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import device_facts, markdown_table, synchronize, write_json

COLUMNS = ["part", "device", "shard_items", "steps", "seconds_per_shard", "overhead_vs_pure_pct", "detail"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--cluster", default="local", help="local (CPU processes) or local-cuda")
    p.add_argument("--shard-size", type=int, default=16)
    p.add_argument("--shards", type=int, default=4, help="shards in the flow run (c)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads in (a), (b) and the flow's worker")
    p.add_argument("--parts", default="pure,task,flow")
    p.add_argument("--repeats", type=int, default=2, help="(a) and (b): fastest of this many")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def make_images(folder: Path, n: int) -> Path:
    from ganinv.datasets.procedural_faces import write_dataset

    write_dataset(folder, n, seed=1, workers=1)
    return folder / "images"


def spec_for(args: argparse.Namespace):
    from tasks.spec import InversionSpec

    return InversionSpec.for_generator("faces64", num_steps=args.steps)


def time_pure(args: argparse.Namespace, images: Path) -> float:
    """(a): hybrid inversion of one shard's decoded images, in the worker's batches."""
    from ganinv.datasets.folder import decode_image
    from ganinv.utils.seeds import seed_from_id
    from tasks.worker import invert_batch, load_models, resolve_device

    spec = spec_for(args)
    models = load_models("faces64", spec.encoder, resolve_device(args.device))
    files = sorted(images.glob("*.png"))[: args.shard_size]
    targets = torch.stack([decode_image(f, spec.decode_policy(models.G.img_resolution)) for f in files])
    seeds = [seed_from_id(f.name) for f in files]
    best = float("inf")
    for _ in range(args.repeats):
        synchronize(models.device)
        t0 = time.perf_counter()
        for start in range(0, len(files), args.batch_size):
            invert_batch(models, spec, targets[start:start + args.batch_size], seeds[start:start + args.batch_size],
                         thumbnail_size=None)
        synchronize(models.device)
        best = min(best, time.perf_counter() - t0)
    return best


def time_task(args: argparse.Namespace, images: Path, workdir: Path) -> tuple[float, dict[str, float]]:
    """(b): run_shard on a fresh store (models cached by (a)); returns the fastest time and its breakdown."""
    from tasks.coordinator import check_spec, describe_generator, open_store, plan
    from tasks.dataset import scan_images
    from tasks.worker import run_shard

    spec, info = spec_for(args), describe_generator("faces64")
    scan = scan_images(str(images))
    best, breakdown = float("inf"), {}
    for repeat in range(args.repeats):
        store, _ = open_store(str(workdir / f"task-{repeat}.zarr"), scan.manifest, info, spec,
                              chunk_items=args.shard_size, encoder_sha256=check_spec(spec, info))
        plan(store, scan.manifest)
        report = run_shard(store.url, 0, spec, generator="faces64", batch_size=args.batch_size,
                           device=args.device, threads=args.threads)
        if report["seconds"] < best:
            best = report["seconds"]
            breakdown = {k: report[k] for k in ("load_s", "decode_s", "invert_s", "write_s")}
    return best, breakdown


def time_flow(args: argparse.Namespace, images: Path, workdir: Path) -> dict[str, Any]:
    """(c): the flow over `--shards` shards on one worker; per-shard cost from completion spacing."""
    from flows import progress
    from flows.prefect_api import prefect_api

    t0 = time.perf_counter()
    finished: list[tuple[float, dict]] = []

    def on_event(event: dict) -> None:
        if event["event"] == "shard":
            finished.append((time.perf_counter(), event))

    with prefect_api():
        t_server = time.perf_counter() - t0
        from flows.invert_dataset import invert_dataset

        t_flow = time.perf_counter()
        with progress.listening(on_event):
            summary = invert_dataset(str(images), str(workdir / "flow.zarr"), "faces64",
                                     inversion={"num_steps": args.steps}, shard_size=args.shard_size,
                                     cluster=args.cluster, workers=1, batch_size=args.batch_size,
                                     device=args.device, threads=args.threads)
        t_end = time.perf_counter()
    times = [t for t, _ in finished]
    spacing = [b - a for a, b in zip(times, times[1:])]
    invert = [event["invert_s"] for _, event in finished[1:]]
    return {"server_start_s": t_server, "flow_wall_s": t_end - t_flow, "to_first_shard_s": times[0] - t_flow,
            "after_last_shard_s": t_end - times[-1], "per_shard_s": statistics.median(spacing),
            "worker_invert_s": statistics.median(invert),
            "overhead_s": statistics.median([s - i for s, i in zip(spacing, invert)]),
            "spacings": [round(s, 3) for s in spacing], "shards": len(finished), "done": summary["counts"]["done"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from flows.prefect_api import quiet_logging

    quiet_logging()  # before prefect and distributed are imported
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    device = torch.device(args.device)
    facts = device_facts(device)
    rows: list[dict[str, Any]] = []
    common = dict(device=str(device), shard_items=args.shard_size, steps=args.steps)
    with tempfile.TemporaryDirectory(prefix="flow-overhead-") as tmp:
        workdir = Path(tmp)
        images = make_images(workdir / "data", args.shard_size * (args.shards if "flow" in parts else 1))
        pure = time_pure(args, images)
        rows.append(dict(part="(a) pure inversion", seconds_per_shard=pure, overhead_vs_pure_pct=0.0, **common,
                         detail=f"batch {args.batch_size}"))
        if "task" in parts:
            task, breakdown = time_task(args, images, workdir)
            rows.append(dict(part="(b) task: decode + invert + store", seconds_per_shard=task, **common,
                             overhead_vs_pure_pct=100 * (task - breakdown["invert_s"]) / breakdown["invert_s"],
                             detail=breakdown))
        if "flow" in parts:
            flow = time_flow(args, images, workdir)
            rows.append(dict(part="(c) flow: Prefect + Dask, per shard", seconds_per_shard=flow["per_shard_s"],
                             overhead_vs_pure_pct=100 * flow["overhead_s"] / flow["worker_invert_s"], **common,
                             detail={k: round(v, 2) for k, v in flow.items() if k.endswith("_s")}))
            facts["flow"] = flow
    print(markdown_table(rows, COLUMNS))
    payload = dict(facts, args=vars(args), rows=rows)
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
