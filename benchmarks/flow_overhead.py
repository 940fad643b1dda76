"""What Prefect, Dask, decoding and the store add to pure inversion time: per shard (`ganinv invert`'s unit of work)
and end to end, on one of three worlds (`--world`):

- `faces64` (default): held-out procedural faces at 64 px, the embedded faces64 generator, hybrid inversion (its
  encoder, then `--steps` W+ steps with clf-perceptual: the flow's faces64 defaults);
- `config-f-256`: a config-f-sized StyleGAN2 at 256 px (`benchmarks.common.config_f_generator`, as in
  perf_inversion.py: channel_base 16384, channel_max 512; random weights from seed 0, toRGB scaled so images stay
  in range, `w_avg` set to the mean mapped w so that truncation acts as in a trained network), saved as .safetensors
  in a temporary folder so the flow's workers load it by path. The dataset: `--shard-size x --shards` PNGs sampled
  from it (truncation 0.7, z from seed 0), a folder on disk that the flow scans. Inversion: optimisation from w_avg
  (`--space w+`, `--loss mse`: needs no perceptual weights, works offline), no encoder;
- `tiny`: the config-f-256 path with `benchmarks.common.tiny_generator` (32 px) and tiny sizes: a CPU smoke run.

Every part uses the same images and the same `InvertConfig` (mode, steps, loss, execution options):

(a) pure: `--pure-images` images (default: one shard) decoded from the PNGs into memory, inverted in batches of
    `--batch-size` with `ganinv.inversion.batch.invert_batch`, the worker's own call (`ganinv.inversion.invert` for
    optimisation, `hybrid` for faces64), after one untimed 2-step warm-up batch (w_avg, kernels, allocator);
    fastest of `--repeats`;
(b) task: `runtime.shard.run_shard` in this process, models already cached: opens the store by URL, reads the
    pending items, decodes the PNGs, inverts, writes ws / thumbnails / metrics / status;
(c) flow: the `invert-dataset` flow on one local Dask worker (`--cluster local`, or `local-cuda` on a GPU) over
    `--shards` shards, against a temporary Prefect server started here (`flows.prefect_api`; a configured
    `PREFECT_API_URL` is used instead). Two rows: *per shard* = the spacing of shard completions seen by the flow
    (after the first shard, which carries the worker's start-up and model load) against the inversion time the
    worker reported for the same shards (same process, same moment: on a shared machine fairer than (a)); *end to
    end* = wall time from starting the Prefect server to having stopped it (server, scan, store, cluster, worker
    start, every shard, summary, teardown) against the time (a)'s rate needs for the same image-steps.

Rates are image-steps/s (images x steps / seconds). Overheads: task = (run_shard time - its invert time) / its
invert time; flow per shard = (spacing - the worker's invert time) / the worker's invert time; flow end to end =
(wall - image-steps / (a)'s rate) / (image-steps / (a)'s rate). Goal on the GPU: flow over pure <= 5 %.

Execution options go into the spec, so (a), (b) and (c) all use them: `--precision bf16` (autocast synthesis and
loss; latents and Adam stay fp32), `--channels-last`, `--compile`, `--cuda-graph` (InversionConfig's fields; the
flow's store records them and its workers read them back). With `--compile` every batch builds a new problem;
whether it reuses the first compilation was not measured, and the time budget does not foresee compiling.

`--time-budget` (seconds from the start): after (a), its rate predicts a shard's time; (b) is skipped when it would
leave the flow fewer than two shards, and the flow runs the shards that fit with `FLOW_FIXED_S` reserved for its
fixed costs (a list file of the first shards' images; rows and `flow.shards_planned` say so).

    PYTHONPATH=$PWD python -m benchmarks.flow_overhead --device cpu --out runs/flow_overhead_cpu.json
    PYTHONPATH=$PWD python -m benchmarks.flow_overhead --world tiny --device cpu         # smoke run, ~30 s

    # GPU, one command (H100: ~4-7 minutes, --time-budget 480 s after imports; 2,048 images at 256 px, 30 steps;
    # Python 3.12 with the repo's deps, lpips not needed; no Prefect server need run, it starts its own):
    PYTHONPATH=$PWD PYTHONUNBUFFERED=1 python3 -m benchmarks.flow_overhead --world config-f-256 --device cuda \\
        --cluster local-cuda --out $OUT/flow_e2e_256.json
    # the same in bf16 + channels_last: add --precision bf16 --channels-last (and --out $OUT/flow_e2e_256_bf16.json)

    --parts pure,task   skips (c) where prefect / dask are not installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (Budget, config_f_generator, device_facts, in_range_outputs_, markdown_table,
                               synchronize, tiny_generator, write_json)

COLUMNS = ["part", "device", "images", "shard_items", "steps", "seconds", "image_steps_per_s", "seconds_per_shard",
           "overhead_vs_pure_pct", "detail"]
# Per world: defaults of the options left unset, and the generator the images come from.
WORLDS: dict[str, dict[str, Any]] = {
    "faces64": dict(shard_size=16, shards=4, steps=20, batch_size=16, repeats=2, pure_images=None, space=None,
                    loss=None, time_budget=1800.0),
    # 2,048 images; H100 fp32 batch 64: ~290 image-steps/s with LPIPS-VGG (BENCHMARKS.md), MSE costs 60 GFLOP per
    # image-step against 140 with LPIPS-VGG (FlopCounterMode): (c) ~110-210 s of shards, (a) 512 images ~25-55 s.
    "config-f-256": dict(shard_size=256, shards=8, steps=30, batch_size=64, repeats=1, pure_images=512,
                         space="w+", loss="mse", time_budget=480.0),
    "tiny": dict(shard_size=4, shards=2, steps=2, batch_size=4, repeats=1, pure_images=None, space="w+",
                 loss="mse", time_budget=300.0),
}
TRUNCATION_PSI = 0.7   # the sampled dataset's truncation
FLOW_FIXED_S = 60.0    # budget reserved for (c)'s fixed costs: server, cluster, worker start, first-shard warm-up
FLOW_SLACK = 1.15      # a flow shard against (a)'s time for it: decoding, store writes, orchestration, headroom


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", default="faces64", choices=list(WORLDS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--cluster", default="local", help="local (CPU processes) or local-cuda")
    p.add_argument("--shard-size", type=int, default=None)
    p.add_argument("--shards", type=int, default=None, help="shards in the flow run (c), at least 2")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--pure-images", type=int, default=None, help="images timed in (a) (default: one shard)")
    p.add_argument("--space", default=None, choices=["w", "w+", "z"], help="config-f-256 / tiny (default w+)")
    p.add_argument("--loss", default=None, help="config-f-256 / tiny (default mse)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--cuda-graph", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads in (a), (b) and the flow's worker")
    p.add_argument("--parts", default="pure,task,flow")
    p.add_argument("--repeats", type=int, default=None, help="(a) and (b): fastest of this many")
    p.add_argument("--time-budget", type=float, default=None, help="seconds (default per world: 480 for config-f)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    for key, value in WORLDS[args.world].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.pure_images = args.pure_images or args.shard_size
    if "flow" in args.parts.split(",") and args.shards < 2:
        p.error("--shards must be >= 2 for the flow part: its per-shard cost is the spacing of shard completions")
    return args


# ------------------------------------------------------------------------------------------------------- worlds

@dataclass(frozen=True)
class World:
    """What the parts invert: a generator the workers load by name or path, a folder of PNGs, how to invert them."""

    name: str
    generator: str
    images: Path
    config: Any  # runtime.config.InvertConfig

    @property
    def spec(self) -> Any:
        """The resolved settings (runtime.spec.InversionSpec) every part runs."""
        return self.config.resolve(self.generator)
    num_images: int
    seconds_to_make: float


def execution_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """InversionConfig fields that change how, not what, is computed (passed the same way to every part)."""
    return dict(precision=args.precision, channels_last=args.channels_last, compile=args.compile,
                cuda_graph=args.cuda_graph)


def make_world(args: argparse.Namespace, folder: Path, num_images: int) -> World:
    from runtime.config import InvertConfig

    t0 = time.perf_counter()
    if args.world == "faces64":
        from ganinv.datasets.procedural_faces import write_dataset

        write_dataset(folder / "data", num_images, seed=1, workers=1)
        generator, images = "faces64", folder / "data" / "images"
        config = InvertConfig(inversion=dict(num_steps=args.steps, **execution_overrides(args)))
    else:
        generator = str(save_random_generator(args.world, folder / f"{args.world}.safetensors"))
        images = write_samples(generator, folder / "images", num_images, torch.device(args.device))
        config = InvertConfig(inversion=dict(num_steps=args.steps, space=args.space, loss=args.loss,
                                             **execution_overrides(args)))
    return World(args.world, generator, images, config, num_images, time.perf_counter() - t0)


def save_random_generator(world: str, path: Path, *, seed: int = 0) -> Path:
    """The world's random generator (see the module docstring), written with `save_generator`."""
    from ganinv.generators import save_generator

    G = config_f_generator(256, seed=seed) if world == "config-f-256" else tiny_generator(32, seed=seed)
    if world == "config-f-256":
        in_range_outputs_(G)
    w_avg, _ = G.w_stats(10000, seed=seed)
    G.mapping.w_avg.copy_(w_avg)  # what training's moving average would hold: the mean mapped w
    return save_generator(G, path, source=f"benchmarks.flow_overhead: {world}, random weights, seed {seed}")


@torch.no_grad()
def write_samples(generator: str, folder: Path, n: int, device: torch.device, *, seed: int = 0,
                  chunk: int = 32) -> Path:
    """`n` images of `generator` (z from `seed`, truncation `TRUNCATION_PSI`, const noise) as folder/NNNNN.png."""
    from ganinv.generators import load_generator
    from ganinv.utils.images import to_pil

    G = load_generator(generator, device=device)
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))
    folder.mkdir(parents=True, exist_ok=True)
    save = lambda i, image: to_pil(image).save(folder / f"{i:05d}.png", compress_level=1)  # noqa: E731
    with ThreadPoolExecutor(8) as pool:  # PNG encoding overlaps the next chunk's synthesis
        for start in range(0, n, chunk):
            images = G(z[start:start + chunk].to(device), None, truncation_psi=TRUNCATION_PSI,
                       noise_mode="const").clamp(-1, 1).cpu()
            list(pool.map(save, range(start, start + len(images)), images))
    return folder


def image_list(world: World, count: int) -> str:
    """The flow's input: the world's folder, or a list file of its first `count` images (same image ids)."""
    files = sorted(world.images.glob("*.png"))
    if count >= len(files):
        return str(world.images)
    listing = world.images / f"first-{count}.txt"
    listing.write_text("".join(f"{f.name}\n" for f in files[:count]))
    return str(listing)


# -------------------------------------------------------------------------------------------------------- parts

def time_pure(args: argparse.Namespace, world: World) -> float:
    """(a): `--pure-images` decoded images inverted in the worker's batches, after a 2-step warm-up batch."""
    from ganinv.datasets.folder import decode_image
    from ganinv.utils.seeds import seed_from_id
    from ganinv.inversion.batch import invert_batch
    from runtime.models import load_models, resolve_device

    spec = world.spec
    models = load_models(world.generator, spec.encoder, resolve_device(args.device))
    files = sorted(world.images.glob("*.png"))[: args.pure_images]
    targets = torch.stack([decode_image(f, spec.decode_policy(models.G.img_resolution)) for f in files])
    seeds = [seed_from_id(f.name, spec.seed) for f in files]
    invert = lambda config, rows: invert_batch(models.G, targets[rows], mode=spec.mode, config=config,  # noqa: E731
                                               seeds=seeds[rows], E=models.E)
    invert(dataclasses.replace(spec.config, num_steps=2), slice(0, args.batch_size))
    best = float("inf")
    for _ in range(args.repeats):
        synchronize(models.device)
        t0 = time.perf_counter()
        for start in range(0, len(files), args.batch_size):
            invert(spec.config, slice(start, start + args.batch_size))
        synchronize(models.device)
        best = min(best, time.perf_counter() - t0)
    return best


def time_task(args: argparse.Namespace, world: World, workdir: Path) -> tuple[float, dict[str, float]]:
    """(b): run_shard on a fresh store (models cached by (a)); returns the fastest time and its breakdown."""
    from runtime.config import ExecutionOptions
    from runtime.coordinator import check_settings, open_store, plan
    from runtime.numerics import record_for_this_process
    from runtime.shard import run_shard
    from storage.scan import scan_images

    settings = check_settings(world.generator, world.config)
    scan = scan_images(image_list(world, args.shard_size))
    execution = ExecutionOptions(batch_size=args.batch_size, device=args.device, threads=args.threads)
    best, breakdown = float("inf"), {}
    for repeat in range(args.repeats):
        store, _ = open_store(str(workdir / f"task-{repeat}.zarr"), scan.manifest, settings,
                              chunk_items=args.shard_size)
        plan(store, scan.manifest)
        record_for_this_process(store, execution)  # what the flow's step 4 records before dispatching shards
        report = run_shard(store.url, 0, generator=world.generator, execution=execution)
        if report.seconds < best:
            best = report.seconds
            breakdown = {k: getattr(report, k) for k in ("load_s", "decode_s", "invert_s", "write_s")}
    return best, breakdown


def run_flow(args: argparse.Namespace, world: World, store: Path, *, images: int, workers: int) -> dict[str, Any]:
    """The invert-dataset flow over the world's first `images` images on `workers` workers (a Prefect API must be
    set): {'wall_s', 'finished': [(seconds since the call, shard event)...], 'done': items done in the store}."""
    from flows import progress
    from flows.invert_dataset import invert_dataset
    from runtime.config import ExecutionOptions

    finished: list[tuple[float, dict]] = []

    def on_event(event: dict) -> None:
        if event["event"] == "shard":
            finished.append((time.perf_counter(), event))

    t0 = time.perf_counter()
    with progress.listening(on_event):
        summary = invert_dataset(image_list(world, images), str(store), world.generator,
                                 config=dataclasses.replace(world.config, shard_size=args.shard_size),
                                 execution=ExecutionOptions(cluster=args.cluster, workers=workers,
                                                            batch_size=args.batch_size, device=args.device,
                                                            threads=args.threads))
    return {"wall_s": time.perf_counter() - t0, "finished": [(t - t0, e) for t, e in finished],
            "done": summary.counts["done"]}


def time_flow(args: argparse.Namespace, world: World, workdir: Path, shards: int) -> dict[str, Any]:
    """(c): the flow over `shards` shards on one worker; per-shard cost from completion spacing, and end to end."""
    from flows.prefect_api import prefect_api

    t0 = time.perf_counter()
    with prefect_api():
        t_server = time.perf_counter() - t0
        run = run_flow(args, world, workdir / "flow.zarr", images=shards * args.shard_size, workers=1)
    t_stopped = time.perf_counter()
    finished, flow_wall = run["finished"], run["wall_s"]
    times = [t for t, _ in finished]
    spacing = [b - a for a, b in zip(times, times[1:])]
    invert = [event["invert_s"] for _, event in finished[1:]]
    return {"server_start_s": t_server, "flow_wall_s": flow_wall, "to_first_shard_s": times[0],
            "after_last_shard_s": flow_wall - times[-1], "server_stop_s": t_stopped - t0 - t_server - flow_wall,
            "end_to_end_s": t_stopped - t0, "per_shard_s": statistics.median(spacing),
            "worker_invert_s": statistics.median(invert),
            "overhead_s": statistics.median([s - i for s, i in zip(spacing, invert)]),
            "spacings": [round(s, 3) for s in spacing], "shards": len(finished),
            "items": sum(event["items"] for _, event in finished), "done": run["done"]}


# ---------------------------------------------------------------------------------------------- budget and rows

def flow_shards(args: argparse.Namespace, budget: Budget, shard_s: float) -> int:
    """How many of `--shards` fit the budget left, `shard_s` being (a)'s time for one shard (0 if not 2)."""
    fit = math.floor((budget.remaining() - FLOW_FIXED_S) / (shard_s * FLOW_SLACK))
    fit = min(args.shards, fit)
    return fit if fit >= 2 else 0


def flow_rows(args: argparse.Namespace, flow: dict[str, Any], pure_rate: float, common: dict) -> list[dict]:
    """(c)'s two rows: steady per-shard cost against the worker's inversion, and end to end against (a)'s rate."""
    steps, per_shard = args.steps, dict(common, images=args.shard_size)
    shard_rate = args.shard_size * steps / flow["per_shard_s"]
    ideal_s = flow["items"] * steps / pure_rate
    keys = ("server_start_s", "to_first_shard_s", "after_last_shard_s", "server_stop_s", "flow_wall_s")
    return [
        dict(part="(c) flow: Prefect + Dask, per shard", seconds=flow["per_shard_s"], image_steps_per_s=shard_rate,
             seconds_per_shard=flow["per_shard_s"], overhead_vs_pure_pct=100 * flow["overhead_s"]
             / flow["worker_invert_s"], **per_shard,
             detail={"worker_invert_s": round(flow["worker_invert_s"], 3), "overhead_s": round(flow["overhead_s"], 3),
                     "worker_image_steps_per_s": round(args.shard_size * steps / flow["worker_invert_s"], 2)}),
        dict(part="(c) flow: end to end, server start to stop", seconds=flow["end_to_end_s"],
             image_steps_per_s=flow["items"] * steps / flow["end_to_end_s"], **dict(common, images=flow["items"]),
             seconds_per_shard=flow["end_to_end_s"] / flow["shards"],
             overhead_vs_pure_pct=100 * (flow["end_to_end_s"] - ideal_s) / ideal_s,
             detail={"pure_s_for_these_images": round(ideal_s, 2), **{k: round(flow[k], 2) for k in keys}}),
    ]


def skipped_row(part: str, reason: str, common: dict) -> dict:
    return dict(part=part, **common, detail=f"skipped: {reason}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from flows.prefect_api import quiet_logging

    quiet_logging()  # before prefect and distributed are imported
    budget = Budget(args.time_budget)
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    device = torch.device(args.device)
    facts = device_facts(device)
    rows: list[dict[str, Any]] = []
    common = dict(device=str(device), shard_items=args.shard_size, steps=args.steps)
    with tempfile.TemporaryDirectory(prefix="flow-overhead-") as tmp:
        workdir = Path(tmp)
        count = max(args.pure_images, args.shard_size * (args.shards if "flow" in parts else 1))
        world = make_world(args, workdir, count)
        facts["world"] = dict(name=world.name, images=world.num_images, seconds_to_make=round(world.seconds_to_make, 1),
                              spec=dataclasses.asdict(world.spec))
        print(f"world {world.name}: {world.num_images} images in {world.seconds_to_make:.1f} s", flush=True)
        pure = time_pure(args, world)
        pure_rate = args.pure_images * args.steps / pure
        shard_s = args.shard_size * args.steps / pure_rate
        rows.append(dict(part="(a) pure inversion", **dict(common, images=args.pure_images), seconds=pure,
                         image_steps_per_s=pure_rate, seconds_per_shard=shard_s, overhead_vs_pure_pct=0.0,
                         detail=f"batch {args.batch_size}"))
        print(markdown_table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
        if "task" in parts:
            rows.append(task_row(args, world, workdir, budget, shard_s, parts, common))
            print(markdown_table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
        if "flow" in parts:
            shards = flow_shards(args, budget, shard_s)
            if shards == 0:
                rows.append(skipped_row("(c) flow", f"time budget ({args.time_budget:.0f} s): fewer than 2 "
                                        f"shards of ~{shard_s:.0f} s fit", common))
            else:
                if device.type == "cuda":
                    torch.cuda.empty_cache()  # the worker process shares this GPU
                flow = time_flow(args, world, workdir, shards)
                facts["flow"] = dict(flow, shards_planned=args.shards, shards_run=shards,
                                     cut_by_budget=shards < args.shards)
                rows += flow_rows(args, flow, pure_rate, common)
    facts["elapsed_s"] = budget.elapsed()
    print(markdown_table(rows, COLUMNS))
    payload = dict(facts, args=vars(args), rows=rows)
    write_json(args.out, payload)
    return payload


def task_row(args, world: World, workdir: Path, budget: Budget, shard_s: float, parts: set, common: dict) -> dict:
    """(b)'s row, or a skipped row when it would leave the flow fewer than two shards of the budget."""
    flow_need = (FLOW_FIXED_S + 2 * shard_s * FLOW_SLACK) if "flow" in parts else 0.0
    if budget.remaining() < shard_s * FLOW_SLACK * args.repeats + flow_need:
        return skipped_row("(b) task", f"time budget ({args.time_budget:.0f} s)", common)
    task, breakdown = time_task(args, world, workdir)
    return dict(part="(b) task: decode + invert + store", **dict(common, images=args.shard_size), seconds=task,
                image_steps_per_s=args.shard_size * args.steps / task, seconds_per_shard=task,
                overhead_vs_pure_pct=100 * (task - breakdown["invert_s"]) / breakdown["invert_s"], detail=breakdown)


if __name__ == "__main__":
    main()
