"""`make demo`: the whole pipeline on the embedded world, as numbered stages (`python -m flows.demo`).

1. data: 160 held-out procedural faces (world seed 1; faces64 was trained on seed 0) and their attributes.csv,
   under demo/heldout/;
2. invert: invert them into demo/store.zarr with the `invert-dataset` flow (faces64, hybrid: the shipped encoder,
   then DEMO_STEPS optimisation steps) on 2 local Dask workers with one thread each, and print the summary;
3. directions: InterFaceGAN boundaries from the store's labels (with the conditional eyeglasses | blond_hair),
   SeFa and GANSpace directions, and a small edit grid evaluated by the attribute classifier, under demo/edits/;
4. report: the evaluation report of the store under demo/reports/<run>/index.html; its file:// address is the
   demo's last line.

Each stage is a function that takes the `DemoContext` and returns a small dict of what it made; it may read what
earlier stages stored in `ctx.results`. Every stage is safe to re-run: a second `make demo` reuses the images,
finds the store complete, replaces the demo's directions and writes a new report run (compared with the last).

The demo runs its flows against one temporary local Prefect server (or `PREFECT_API_URL` if set), see
flows/prefect_api.py. Budget: a few minutes on 2 CPU cores (timings in README.md).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Optimisation steps after the encoder, and faces. On this repo's 2-core CI-class machine a worker inverted a face in
# ~1.45 s at 20 steps one image at a time; the store's CPU numerics now invert batches of independent rows
# (runtime/numerics.py), ~0.8 s of CPU per face (BENCHMARKS.md, "CPU per-image step"), which leaves room for more
# steps or faces once world 2's encoder is timed; 160 faces at 20 steps were 149 s in all before it.
DEMO_STEPS = 20
DEMO_IMAGES = 160


@dataclass(frozen=True)
class DemoConfig:
    """What the demo makes and where."""

    out: Path = Path("demo")
    num_images: int = DEMO_IMAGES
    world_seed: int = 1          # held out: faces64 saw world seed 0 only
    generator: str = "faces64"
    steps: int = DEMO_STEPS
    shard_size: int | None = None  # None: chosen for the workers (runtime/config.py: auto_shard_size)
    cluster: str = "local"       # or a Dask scheduler address
    workers: int = 2
    batch_size: int = 16

    @property
    def images(self) -> Path:
        return self.out / "heldout"

    @property
    def store(self) -> Path:
        return self.out / "store.zarr"

    @property
    def reports(self) -> Path:
        return self.out / "reports"


@dataclass
class DemoContext:
    config: DemoConfig
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[DemoContext], dict[str, Any]]


def make_heldout_images(ctx: DemoContext) -> dict[str, Any]:
    """1. Render the held-out faces (skipped when they are all there already)."""
    from ganinv.datasets.procedural_faces import write_dataset

    cfg = ctx.config
    csv_path = cfg.images / "attributes.csv"
    have = len(list((cfg.images / "images").glob("*.png"))) if csv_path.exists() else 0
    if have != cfg.num_images:
        write_dataset(cfg.images, cfg.num_images, seed=cfg.world_seed, workers=2)
    return {"images": str(cfg.images / "images"), "labels": str(csv_path), "count": cfg.num_images}


def invert_heldout(ctx: DemoContext) -> dict[str, Any]:
    """2. Invert them into the store on local Dask workers, with a progress bar, and print the summary."""
    from flows.console import format_invert_summary, progress_bar

    cfg, data = ctx.config, ctx.results["data"]
    t0 = time.perf_counter()
    with progress_bar():
        from flows.invert_dataset import invert_dataset
        from runtime.config import ExecutionOptions, InvertConfig

        summary = invert_dataset(data["images"], str(cfg.store), cfg.generator, labels=data["labels"],
                                 config=InvertConfig(inversion={"num_steps": cfg.steps}, shard_size=cfg.shard_size),
                                 execution=ExecutionOptions(cluster=cfg.cluster, workers=cfg.workers,
                                                            batch_size=cfg.batch_size))
    print(format_invert_summary(summary))
    return {"store": str(cfg.store), "summary": summary, "seconds": time.perf_counter() - t0}


def find_directions(ctx: DemoContext) -> dict[str, Any]:
    """3. Fit boundaries from the store's labels, discover SeFa/GANSpace directions, render a small edit grid."""
    from flows.demo_directions import demo_directions

    cfg = ctx.config
    from runtime.config import ExecutionOptions

    made = demo_directions(str(cfg.store), cfg.out, execution=ExecutionOptions(
        cluster=cfg.cluster, workers=1 if cfg.cluster == "local" else None, device="cpu"))
    print(f"      directions: {', '.join(made['directions'])}")
    for grid in made["grids"]:
        print(f"      edit grid: {grid}")
    return {"directions": made["directions"], "grids": made["grids"]}


def write_report(ctx: DemoContext) -> dict[str, Any]:
    """4. Write the evaluation report of the store (HTML, metrics.json, plots), compared with the last demo run."""
    from report import ReportConfig, demo_report

    path = demo_report(str(ctx.config.store), ctx.config.reports, ReportConfig())  # throughput: the store's run log
    return {"report": str(path), "url": Path(path).resolve().as_uri()}


STAGES: list[Stage] = [
    Stage("data", make_heldout_images),
    Stage("invert", invert_heldout),
    Stage("directions", find_directions),
    Stage("report", write_report),
]


def main(config: DemoConfig = DemoConfig()) -> DemoContext:
    from flows.prefect_api import prefect_api, quiet_logging

    quiet_logging()  # before prefect and distributed are imported
    ctx = DemoContext(config)
    t_start = time.perf_counter()
    with prefect_api():  # one temporary Prefect server for every flow of the demo
        for number, stage in enumerate(STAGES, start=1):
            t0 = time.perf_counter()
            print(f"[{number}/{len(STAGES)}] {stage.name}: {(stage.run.__doc__ or '').strip().splitlines()[0]}",
                  flush=True)
            ctx.results[stage.name] = stage.run(ctx)
            print(f"      {stage.name} took {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"demo finished in {time.perf_counter() - t_start:.1f} s; outputs under {config.out}/")
    if "report" in ctx.results:
        print(f"report: {ctx.results['report']['url']}")
    return ctx


if __name__ == "__main__":
    from flows.console import invert_exit_code

    sys.exit(invert_exit_code(main().results["invert"]["summary"]))
