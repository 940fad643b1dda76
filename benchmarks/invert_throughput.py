"""Inversion throughput: the projector-style baseline (one image per call) against the batched engine.

    PYTHONPATH=. python -m benchmarks.invert_throughput --device cuda --out benchmarks/results/invert_throughput.json
    PYTHONPATH=. python -m benchmarks.invert_throughput --tiny --device cpu      # smoke test

For each generator (`config-f`: config-f-sized, random weights; `faces64`: the embedded world's, when loadable) it
times (a) `benchmarks.projector_baseline.project` on `--baseline-images` images one at a time and (b) `invert` at
each batch size, all with the same VGG-LPIPS-shaped loss: `lpips.LPIPS(net='vgg')` with a *random* trunk (nothing
is downloaded; it has LPIPS-VGG's shape and cost, it is not LPIPS). Reported: image-steps/s, the ratio to (a),
peak GPU memory. (a) times its step loop only; (b) times the whole `invert` call (setup, final metrics included).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    device_facts, load_named_generator, markdown_table, peak_memory_gib, random_targets, reset_peak_memory,
    synchronize, write_json,
)
from benchmarks.projector_baseline import project  # noqa: E402
from ganinv.inversion import InversionConfig, invert, projector_w_stats  # noqa: E402
from ganinv.losses import LPIPSLoss  # noqa: E402

COLUMNS = ["generator", "method", "batch", "steps", "seconds", "image_steps_per_s", "ratio_to_baseline",
           "peak_gib"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--resolution", type=int, default=256, help="config-f generator resolution")
    p.add_argument("--batch-sizes", default="1,8,32,64")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps per timed run")
    p.add_argument("--baseline-images", type=int, default=2, help="images the baseline projects one by one")
    p.add_argument("--generators", default="config-f,faces64", help="comma-separated: config-f, faces64, ...")
    p.add_argument("--tiny", action="store_true", help="tiny generator and sizes: a CPU smoke test")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.tiny:
        args.resolution, args.steps, args.baseline_images = 32, 3, 1
        args.batch_sizes = "1,4" if args.batch_sizes == "1,8,32,64" else args.batch_sizes
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    return args


def time_baseline(G, targets, loss, config) -> dict:
    seconds = sum(project(G, target, loss, config=config)[1] for target in targets)
    return dict(method="baseline (projector loop)", batch=1, steps=config.num_steps, seconds=seconds,
                image_steps_per_s=len(targets) * config.num_steps / seconds)


def time_engine(G, targets, loss, config, device) -> dict:
    invert(G, targets, config, loss_fn=loss, num_steps=2)  # warm-up: kernels, allocator, w stats cache
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    invert(G, targets, config, loss_fn=loss)
    synchronize(device)
    seconds = time.perf_counter() - start
    return dict(method="engine (batched)", batch=len(targets), steps=config.num_steps, seconds=seconds,
                image_steps_per_s=len(targets) * config.num_steps / seconds, peak_gib=peak_memory_gib(device))


def bench_generator(spec: str, args, device: torch.device, loss) -> tuple[list[dict], str]:
    G, description = load_named_generator(spec, resolution=args.resolution, tiny=args.tiny)
    if G is None:
        print(f"skipping {spec}: {description}")
        return [], description
    G = G.to(device)
    config = InversionConfig(num_steps=args.steps, loss="lpips-vgg")  # labels the run; loss_fn is the random trunk
    projector_w_stats(G, config.w_avg_samples)
    targets = random_targets(G, max(args.batch_sizes + [args.baseline_images]), device)
    reset_peak_memory(device)
    baseline = time_baseline(G, targets[:args.baseline_images], loss, config)
    baseline["peak_gib"] = peak_memory_gib(device)
    rows = [baseline] + [time_engine(G, targets[:b], loss, config, device) for b in args.batch_sizes]
    for row in rows:
        row["generator"] = spec
        row["ratio_to_baseline"] = row["image_steps_per_s"] / baseline["image_steps_per_s"]
        print(markdown_table([row], COLUMNS).splitlines()[-1], flush=True)
    return rows, description


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    loss = LPIPSLoss("vgg", random_trunk=True).to(device)
    facts = device_facts(device)
    print(facts)
    rows, generators = [], {}
    for spec in args.generators.split(","):
        new_rows, generators[spec] = bench_generator(spec, args, device, loss)
        rows += new_rows
    print(markdown_table(rows, COLUMNS))
    payload = dict(facts, loss=loss.name, generators=generators, rows=rows)
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
