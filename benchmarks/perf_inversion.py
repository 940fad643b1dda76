"""Inversion near the GPU's limit: the projector-style baseline against the engine's execution options at 64, 256 and
1024 px config-f-sized generators, with MFU, peak memory and a bf16-vs-fp32 quality check, in one run.

    PYTHONPATH=. python -m benchmarks.perf_inversion --device cuda --out $OUT/perf_inversion.json \\
        --profile $OUT/profile_256.txt                  # H100: about 7 minutes
    PYTHONPATH=. python -m benchmarks.perf_inversion --tiny --device cpu          # smoke test (numbers mean nothing)
    PYTHONPATH=. python -m benchmarks.perf_inversion --arch stylegan3-t --resolutions 256 --device cuda \
        --out $OUT/perf_sg3t_256.json                   # StyleGAN3-T, FFHQ-U 256 px channels, random weights

`--arch stylegan3-t` / `stylegan3-r` times a StyleGAN3 generator shaped like the released FFHQ-U 256 px ones
(`benchmarks.common.stylegan3_generator`) instead of config-f; everything else (baseline, variants, FLOPs, MFU,
quality against fp32) is the same. StyleGAN3 has no noise maps, so neither loop optimises any.

What runs, per resolution (256 first: the headline), all with one loss, `lpips.LPIPS(net='vgg')` with a *random*
trunk (LPIPS-VGG's shape and cost, nothing downloaded; it is not LPIPS):
- **baseline**: `benchmarks.projector_baseline.project`, the official projector's loop (batch 1, fp32, fused
  modulated convs, a host read of the loss every step); its step loop is timed after a warm-up call;
- **engine variants** (`VARIANTS`): `build_problem` + `step` on `auto_batch_size` images (`--max-batch` cap), the
  schedule `--steps` long; the first `--warmup` steps (cuDNN autotuning, compilation, graph capture) are timed
  apart as `warmup_s`, the rest give image-steps/s. Ablations (bf16 alone, + channels_last, graphs without compile)
  run at `--ablation-resolutions` only.
- **FLOPs** per image-step: `torch.utils.flop_counter.FlopCounterMode` on one eager fp32 step (forward + backward)
  at batch 1; **MFU** = FLOPs x image-steps/s / the card's dense bf16 peak (H100/H200 SXM datasheet: 989.4 TFLOP/s;
  this workplace measured ~790 on an 8192^3 bf16 matmul) — fp32 rows too, against the same bf16 peak.
- **quality**: every engine run is a real inversion of the same targets (rendered by the generator itself from
  random z, so an exact reconstruction exists) with per-image seeds; its final reconstructions are evaluated in
  fp32 (PSNR, SSIM, the perceptual distance). bf16 rows are compared with the fp32 row on the images they share
  (each image is independent of its batch). At 64 px the embedded faces64 generator is also inverted on held-out
  procedural faces (world seed 1) with fp32 and with the fastest bf16 variant for `--quality-steps` steps.
- `--profile PATH`: `torch.profiler` over a few steps of the fastest non-graph bf16 variant at 256 px; the top
  kernels by GPU time and a breakdown by kind are printed and written to PATH.

Compilation (issue 16): `+compile` is the engine's regional compilation (one graph per synthesis block width, the
loss and the noise regulariser; dynamic shapes, so later resolutions and batch sizes reuse it in this process);
`+compile(whole)` the earlier whole-objective graph (on request, and the fallback if regional fails). A regional
variant's batch is sized by probing the compiled step, so its first compile shows in `batch_s` (seconds spent
choosing the batch) rather than in `warmup_s`; `oom_retries` counts halvings after an out-of-memory error in the
timed run (the auto batch size should make it 0). This process compiles into a fresh cache directory (cold), and
at `--startup-resolutions` `benchmarks.startup_timeline` times two fresh worker processes sharing another fresh
compile cache: process start -> imports -> model loaded -> w_avg -> problem built -> first step, cold (fills the
cache) and warm (reads it), with the inductor cache's hits and misses. With `--startup-first` the pair runs before
that resolution's rows (at `--startup-batch`) and the rows then read the cache it filled: the cold compile is paid
once, in the cold process, and `batch_s` of the compiled rows is a warm worker's batch search (one resolution, its
rows and its start-up fit one device call).
Every compiled row records what it compiled (`benchmarks.compile_metrics`): graphs, recompiles and why, graph breaks,
seconds per graph by stage (tracing, inductor, Triton, autotuning, backward), cache hits; the log prints them.

Every variant runs in a try block (errors are recorded, the run goes on) and `--time-budget` skips what would start
late, so one device call always ends with a table and JSON (rewritten after every row).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch  # noqa: E402
import torch._dynamo  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import compile_metrics  # noqa: E402
from benchmarks.common import (  # noqa: E402
    STYLEGAN3_CHANNELS, Budget, device_facts, heldout_faces, load_named_generator, markdown_table,
    official_channel_base, peak_memory_gib, random_targets, reset_peak_memory, synchronize, write_json,
)
from benchmarks.projector_baseline import project  # noqa: E402
from benchmarks.startup_timeline import measure_startup  # noqa: E402
from ganinv.generators import layers  # noqa: E402
from ganinv.inversion import InversionConfig, auto_batch_size, build_problem, optimize, projector_w_stats  # noqa: E402
from ganinv.losses import LPIPSLoss  # noqa: E402
from ganinv.utils import regional_compile  # noqa: E402
from ganinv.utils.compile_cache import use_compile_cache  # noqa: E402

BF16_DENSE_PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4}  # NVIDIA datasheets (SXM), dense, no sparsity
CORE = dict(precision="bf16", channels_last=True)
VARIANTS: dict[str, dict[str, Any]] = {  # compile: regional (the engine's default) unless compile_scope says whole
    "fp32": dict(),
    "bf16+cl+compile+graph": dict(CORE, compile=True, cuda_graph=True),
    "bf16+cl+compile": dict(CORE, compile=True),
    "bf16+cl+compile(whole)": dict(CORE, compile=True, compile_scope="whole"),  # one graph per problem (before)
    # Candidates for the steady speed, on request (--variants): static block graphs (one per resolution and batch:
    # inductor keeps its conv layout optimisation, which it turns off for dynamic shapes, pytorch#102670, and
    # specialises every kernel), and inductor's autotuning of its kernels and templates (minutes of compile).
    "bf16+cl+compile(static)": dict(CORE, compile=True, compile_options=dict(dynamic=False)),
    "bf16+cl+compile(max-autotune)": dict(CORE, compile=True, compile_options=dict(mode="max-autotune-no-cudagraphs")),
    "bf16": dict(precision="bf16"),
    "bf16+cl": dict(CORE),
    "bf16+cl+graph": dict(CORE, cuda_graph=True),
    "bf16+cl subpixel": dict(CORE, resample="subpixel"),  # upsampling convs as 3x3 conv + pixel shuffle
}
FAST_CHAIN = ["bf16+cl+compile", "bf16+cl+compile(whole)", "bf16+cl"]  # the first that works is "the engine"; then
GRAPHED = {"bf16+cl+compile": "bf16+cl+compile+graph", "bf16+cl": "bf16+cl+graph"}  # its CUDA-graph version
ABLATIONS = ["bf16", "bf16+cl"]  # "bf16+cl subpixel" on request (--variants)
STEPS = {64: 40, 256: 40, 1024: 20}
COMPILE_RESERVE_S = 120  # a first compile (trace + inductor + Triton) is not started with less budget left
COLUMNS = ["generator", "variant", "batch", "steps", "image_steps_per_s", "ratio_to_baseline", "tflops", "mfu",
           "batch_s", "warmup_s", "graphs", "recompiles", "compile_s", "peak_gib", "oom_retries", "error"]
QUALITY_COLUMNS = ["generator", "variant", "images", "steps", "perceptual_fp32", "perceptual", "perceptual_rel",
                   "psnr_fp32", "psnr", "psnr_rel", "within_1pct"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="config-f", choices=["config-f", "stylegan3-t", "stylegan3-r"],
                   help="the generator: config-f-sized StyleGAN2, or StyleGAN3 shaped like FFHQ-U 256 (random weights)")
    p.add_argument("--resolutions", default=None, help="generators' resolutions, in this order (default: "
                                                        "256,64,1024 for config-f, 256 for StyleGAN3)")
    p.add_argument("--ablation-resolutions", default="256", help="where the ablation variants run too")
    p.add_argument("--variants", default=None, help=f"comma list from {list(VARIANTS)} (default: core + ablations)")
    p.add_argument("--steps", type=int, default=None, help="schedule length per run (default per resolution)")
    p.add_argument("--warmup", type=int, default=5, help="leading steps timed apart (compile, capture, autotune)")
    p.add_argument("--baseline-steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=None, help="fixed batch instead of auto_batch_size")
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--memory-fraction", type=float, default=0.8)
    p.add_argument("--quality-steps", type=int, default=100, help="steps of the faces64 quality runs")
    p.add_argument("--quality-images", type=int, default=64)
    p.add_argument("--no-faces64", action="store_true", help="skip the faces64 quality runs")
    p.add_argument("--profile", default=None, help="write a torch.profiler summary at 256 px here")
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--time-budget", type=float, default=430, help="seconds; later runs are skipped")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default: from the GPU name)")
    p.add_argument("--no-cudnn-benchmark", action="store_true")
    p.add_argument("--startup-resolutions", default="256,1024", help="where to time a fresh worker process's start "
                   "(cold, then warm from the compile cache it filled; benchmarks.startup_timeline)")
    p.add_argument("--startup-steps", type=int, default=5)
    p.add_argument("--startup-first", action="store_true", help="time the start-up before the rows of its resolution "
                   "and let the rows read the compile cache it filled (the cold compile is paid once)")
    p.add_argument("--startup-batch", type=int, default=None, help="the start-up processes' batch with "
                   "--startup-first (default: the engine's auto batch measured on an H100, STARTUP_BATCH)")
    p.add_argument("--compile-cache", default=None, help="this process's compile cache (default: a fresh "
                   "directory, so its warm-up times are cold ones)")
    p.add_argument("--graph-resolutions", default=None, help="where the CUDA-graph variant of the engine runs "
                   "(default: every resolution)")
    p.add_argument("--backend", default=None, help="torch.compile backend of the compiled variants (default "
                   "inductor; aot_eager for a CPU smoke test: dynamo's graphs without code generation)")
    p.add_argument("--tiny", action="store_true", help="tiny generator and sizes: a CPU smoke test")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.tiny:
        args.resolutions, args.ablation_resolutions = "32", "32"
        args.steps, args.warmup, args.baseline_steps = args.steps or 5, 2, 3
        args.batch = args.batch or 4
        args.quality_steps, args.quality_images = 3, 4
        args.variants = args.variants or "fp32,bf16,bf16+cl,bf16+cl+graph"  # compile takes minutes on a CPU
        args.startup_resolutions = args.startup_resolutions if "--startup-resolutions" in (argv or sys.argv) else ""
    args.resolutions = args.resolutions or ("256,64,1024" if args.arch == "config-f" else "256")
    args.resolutions = [int(r) for r in args.resolutions.split(",")]
    args.ablation_resolutions = [int(r) for r in args.ablation_resolutions.split(",") if r]
    args.startup_resolutions = [int(r) for r in args.startup_resolutions.split(",") if r]
    args.graph_resolutions = (args.resolutions if args.graph_resolutions is None
                              else [int(r) for r in args.graph_resolutions.split(",") if r])
    if args.variants:
        args.variants = args.variants.split(",")
        unknown = set(args.variants) - set(VARIANTS)
        if unknown:
            p.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    return args


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override or device.type != "cuda":
        return override
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_DENSE_PEAK_TFLOPS.items() if k in name), None)


TARGET_CHUNK = 16  # targets are rendered this many at a time, which bounds the forward's memory at 1024 px


def flops_per_image_step(G, loss, device: torch.device, steps: int) -> float:
    """FLOPs of one eager fp32 step (forward + backward) at batch 1, by `FlopCounterMode`."""
    from torch.utils.flop_counter import FlopCounterMode

    target = random_targets(G, 1, device, seed=99)
    problem = build_problem(G, target, InversionConfig(num_steps=steps), loss_fn=loss)
    try:
        problem.step(0)
        counter = FlopCounterMode(display=False)
        with counter:
            problem.step(1)
        return float(counter.get_total_flops())
    finally:
        problem.close()


def time_baseline(G, target, loss, args, device) -> dict:
    project(G, target[0], loss, config=InversionConfig(num_steps=2))  # warm-up: kernels, cuDNN autotuning
    reset_peak_memory(device)
    _, seconds = project(G, target[0], loss, config=InversionConfig(num_steps=args.baseline_steps))
    return dict(variant="baseline (projector loop)", batch=1, steps=args.baseline_steps, seconds=seconds,
                image_steps_per_s=args.baseline_steps / seconds, peak_gib=peak_memory_gib(device))


def split_options(options: dict) -> tuple[dict, str, dict]:
    """(InversionConfig fields, resample implementation, how it compiles: `build_problem`'s compile_scope and
    compile_options) of a variant."""
    options = dict(options)
    compiling = dict(compile_scope=options.pop("compile_scope", "regional"),
                     compile_options=options.pop("compile_options", None))
    return options, options.pop("resample", layers.RESAMPLE_IMPL), compiling


def run_engine(G, targets, loss, options: dict, batch: int, steps: int, args, device) -> dict:
    """One engine run: `steps` steps on `targets[:batch]`; returns timing, memory and the final fp32 metrics."""
    options, resample, compiling = split_options(options)
    config = InversionConfig(num_steps=steps, loss="lpips-vgg", **options)  # loss_fn below is the random trunk
    with layers.resample_impl(resample):
        return _run_engine(G, targets, loss, config, batch, steps, args, device, compiling)


def _run_engine(G, targets, loss, config, batch: int, steps: int, args, device, compiling: dict) -> dict:
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    problem = build_problem(G, targets[:batch], config, loss_fn=loss, seed=list(range(batch)), **compiling)
    try:
        for step in range(args.warmup):
            problem.step(step)
        synchronize(device)
        warm = time.perf_counter()
        for step in range(args.warmup, steps):
            problem.step(step)
        synchronize(device)
        seconds = time.perf_counter() - warm
        peak = peak_memory_gib(device)
        result = problem.finish(torch.zeros(0, batch, device=device), [])
    finally:
        problem.close()
    timed = steps - args.warmup
    metrics = {k: result.metrics[k].tolist() for k in ("psnr", "ssim", loss.name)}
    return dict(batch=batch, steps=steps, seconds=seconds, image_steps_per_s=batch * timed / seconds,
                warmup_s=warm - start, peak_gib=peak, metrics=metrics)


def try_engine(G, targets, loss, name: str, batch: int, steps: int, args, device) -> dict:
    """`run_engine` that records instead of raising; on CUDA out-of-memory it retries at half the batch, twice, and
    counts it in `oom_retries` (the auto batch size should make that 0)."""
    row: dict[str, Any] = dict(variant=name, batch=batch, steps=steps, oom_retries=0)
    for attempt in range(3):
        try:
            row.pop("error", None)
            return {**row, **run_engine(G, targets, loss, VARIANTS[name], batch, steps, args, device)}
        except torch.cuda.OutOfMemoryError as err:
            row["error"] = f"OutOfMemoryError at batch {batch}: {str(err)[:200]}"
            torch.cuda.empty_cache()
            batch = max(1, batch // 2)
            row["batch"], row["oom_retries"] = batch, attempt + 1
        except Exception as err:  # noqa: BLE001 - record, print, go on with the next variant
            traceback.print_exc()
            row["error"] = f"{type(err).__name__}: {str(err)[:400]}"
            break
    return row


def batch_for(G, loss, options: dict, args, cache: dict) -> int:
    if args.batch:
        return args.batch
    # What sets the memory. The engine's regional compile is probed compiled (its graphs take any batch). Another
    # compiled variant (whole graph, static or autotuned regions) would compile once per probe batch or autotune in
    # the probes: it takes the regional compile's answer when this run has one (same fusion, about the same memory;
    # and a side-by-side at one batch), else an eager probe's (the eager step needs more: a safe answer).
    fields = (options.get("precision", "fp32"), options.get("channels_last", False))
    compiled = options.get("compile", False)
    regional = compiled and options.get("compile_scope", "regional") == "regional" and not options.get("compile_options")
    key = (*fields, regional)
    if compiled and not regional and (*fields, True) in cache:
        key = (*fields, True)
    if key not in cache:
        config = InversionConfig(precision=key[0], channels_last=key[1], compile=regional)
        cache[key] = auto_batch_size(G, config, loss_fn=loss, max_batch=args.max_batch,
                                     memory_fraction=args.memory_fraction)
        print(f"  auto batch for {key}: {cache[key]}", flush=True)
    return cache[key]


FAILED_GRAPH_CAPTURE: list[str] = []  # once a capture fails (not for memory), later graph variants are skipped


def bench_generator(label: str, G, targets, loss, steps: int, args, device, budget: Budget,
                    flops: float | None, peak: float | None, record, *, ablations: bool, graphs: bool = True
                    ) -> list[dict]:
    """Baseline, fp32, the first working variant of `FAST_CHAIN` and its CUDA-graph version, then `ABLATIONS`
    (when `ablations`), or exactly `args.variants`."""
    rows: list[dict] = []
    batches: dict = {}
    try:
        baseline = time_baseline(G, targets[:1], loss, args, device)
    except Exception as err:  # noqa: BLE001
        traceback.print_exc()
        baseline = dict(variant="baseline (projector loop)", batch=1, error=f"{type(err).__name__}: {err}")
    rows.append(record(label, baseline, baseline, flops, peak))
    ran: dict[str, dict] = {}

    def attempt(name: str) -> dict:
        if name not in ran:
            if "graph" in name and FAILED_GRAPH_CAPTURE:
                row = dict(variant=name, error=f"skipped: capture failed before ({FAILED_GRAPH_CAPTURE[0]})")
            else:
                compiled = any(VARIANTS[v].get("compile") and "error" not in r for v, r in ran.items())
                row = run_variant(G, targets, loss, name, steps, args, device, budget, batches, compiled)
                if "graph" in name and "error" in row and not row["error"].startswith(("skipped", "OutOfMemory")):
                    FAILED_GRAPH_CAPTURE.append(row["error"][:120])
            ran[name] = row
            rows.append(record(label, row, baseline, flops, peak))
        return ran[name]

    if args.variants:
        for name in args.variants:
            attempt(name)
        return rows
    attempt("fp32")
    fast = next((name for name in FAST_CHAIN if "error" not in attempt(name)), None)
    if fast is not None and graphs and fast in GRAPHED:
        attempt(GRAPHED[fast])
    for name in ABLATIONS if ablations else []:
        attempt(name)
    return rows


def run_variant(G, targets, loss, name: str, steps: int, args, device, budget: Budget, batches: dict,
                compiled: bool) -> dict:
    first_compile = VARIANTS[name].get("compile") and not compiled
    if budget.exhausted(COMPILE_RESERVE_S if first_compile else 0.0):
        return dict(variant=name, error=f"skipped: time budget ({args.time_budget:.0f} s)")
    print(f"  {name} ...", flush=True)
    compile_metrics.start()  # what this variant compiles: its batch search's probes and its run
    start = time.perf_counter()
    try:
        batch = batch_for(G, loss, VARIANTS[name], args, batches)
    except Exception as err:  # noqa: BLE001
        traceback.print_exc()
        return dict(variant=name, error=f"auto_batch_size: {type(err).__name__}: {err}", **compiled_summary(name))
    batch_s = time.perf_counter() - start  # a regional compile happens here, in the probes (0 when cached)
    row = try_engine(G, targets, loss, name, min(batch, len(targets)), steps, args, device)
    return {**row, "batch_s": batch_s, **compiled_summary(name)}


def compiled_summary(name: str) -> dict:
    """The row's compile columns and its per-graph record (`benchmarks.compile_metrics`), printed to the log."""
    if not VARIANTS[name].get("compile"):
        return {}
    stats = compile_metrics.summary()
    print(f"{name}: " + compile_metrics.format_summary(stats, indent="").lstrip(), flush=True)
    return dict(graphs=stats["graphs"], recompiles=stats["recompiles"], compile_s=stats["compile_s"], compile=stats)


def make_recorder(rows_out: list, payload: dict, args):
    def record(label: str, row: dict, baseline: dict | None, flops: float | None, peak: float | None) -> dict:
        row = dict(row, generator=label)
        ips = row.get("image_steps_per_s")
        if ips and baseline and baseline.get("image_steps_per_s"):
            row["ratio_to_baseline"] = ips / baseline["image_steps_per_s"]
        if ips and flops:
            row["tflops"] = ips * flops / 1e12
            row["mfu"] = row["tflops"] / peak if peak else None
        rows_out.append(row)
        print(markdown_table([row], COLUMNS).splitlines()[-1], flush=True)
        payload["quality"] = quality_rows(rows_out, payload["loss"])
        write_json(args.out, payload)
        return row
    return record


def quality_rows(rows: list[dict], loss_name: str) -> list[dict]:
    """Each bf16 engine row against its generator's fp32 row, on the images both inverted."""
    out = []
    for ref in (r for r in rows if r.get("variant") == "fp32" and "metrics" in r):
        for row in (r for r in rows if r["generator"] == ref["generator"] and r.get("variant", "").startswith("bf16")
                    and "metrics" in r):
            n = min(len(ref["metrics"]["psnr"]), len(row["metrics"]["psnr"]))
            mean = lambda key, r: sum(r["metrics"][key][:n]) / n  # noqa: E731
            p32, p16 = mean(loss_name, ref), mean(loss_name, row)
            q32, q16 = mean("psnr", ref), mean("psnr", row)
            out.append(dict(generator=row["generator"], variant=row["variant"], images=n, steps=row["steps"],
                            perceptual_fp32=p32, perceptual=p16, perceptual_rel=(p16 - p32) / p32,
                            psnr_fp32=q32, psnr=q16, psnr_rel=(q16 - q32) / q32,
                            within_1pct=abs(p16 - p32) <= 0.01 * p32 and abs(q16 - q32) <= 0.01 * q32))
    return out


def profile_engine(G, targets, loss, name: str, batch: int, args, device, path: str) -> str:
    """Top kernels by device time over `--profile-steps` steps of variant `name` (after warm-up steps)."""
    from torch.profiler import ProfilerActivity, profile

    steps = args.warmup + args.profile_steps
    options, resample, compiling = split_options(VARIANTS[name])
    config = InversionConfig(num_steps=steps + 1, loss="lpips-vgg", **options)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with layers.resample_impl(resample):
        problem = build_problem(G, targets[:batch], config, loss_fn=loss, seed=list(range(batch)), **compiling)
        try:
            for step in range(args.warmup):
                problem.step(step)
            synchronize(device)
            with profile(activities=activities, record_shapes=True) as prof:
                for step in range(args.warmup, steps):
                    problem.step(step)
                synchronize(device)
        finally:
            problem.close()
    events = prof.key_averages()
    sort_key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    try:
        table = events.table(sort_by=sort_key.replace("cuda", "device"), row_limit=30, max_name_column_width=70)
    except Exception:  # noqa: BLE001 - older spelling
        table = events.table(sort_by=sort_key, row_limit=30, max_name_column_width=70)
    text = (f"# profile: {name} at batch {batch}, {args.profile_steps} steps, {G.img_resolution} px\n\n"
            f"{kernel_breakdown(events, device)}\n\n{table}\n\n{copies_by_shape(prof, sort_key)}\n")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    return text


def copies_by_shape(prof, sort_key: str, *, rows: int = 15) -> str:
    """The `aten::copy_` calls grouped by input shapes, largest first: which tensors the layout copies move (the
    8 % of GPU time in NCHW <-> NHWC conversions that the profile of 2026-11-25 could not attribute)."""
    copies = [e for e in prof.key_averages(group_by_input_shape=True) if e.key == "aten::copy_"]
    total = lambda e: getattr(e, sort_key.replace("cuda", "device"), None) or getattr(e, sort_key, 0.0)  # noqa: E731
    copies.sort(key=total, reverse=True)
    lines = ["| aten::copy_ input shapes | calls | self time ms |", "|---|---|---|"]
    lines += [f"| {e.input_shapes} | {e.count} | {total(e) / 1000:.2f} |" for e in copies[:rows]]
    return "\n".join(lines)


KERNEL_KINDS = [  # first match wins; names of cuDNN/cuBLAS/Triton/ATen kernels on Hopper
    ("convolution / matmul (cuDNN, cuBLAS, CUTLASS)", ("conv", "gemm", "xmma", "cutlass", "sm90", "dgrad", "wgrad",
                                                       "implicit", "cudnn", "nchw", "nhwc")),
    ("fused elementwise / reductions (Triton)", ("triton",)),
    ("optimizer (Adam)", ("adam", "multi_tensor")),
    ("layout transposes / copies", ("copy", "transpose", "memcpy", "memset")),
    ("reductions (ATen)", ("reduce",)),
    ("elementwise (ATen)", ("elementwise", "vectorized")),
]


def kernel_breakdown(events, device: torch.device) -> str:
    """Share of device time by kernel kind (kernels only: names of device-side events)."""
    if device.type != "cuda":
        return "(CPU run: no kernel breakdown)"
    totals: dict[str, float] = {}
    for ev in events:
        t = getattr(ev, "self_device_time_total", None) or getattr(ev, "self_cuda_time_total", 0)
        if not t or getattr(ev, "device_type", None) is not None and "CUDA" not in str(ev.device_type):
            continue
        name = ev.key.lower()
        kind = next((k for k, keys in KERNEL_KINDS if any(s in name for s in keys)), "other")
        totals[kind] = totals.get(kind, 0.0) + t
    total = sum(totals.values()) or 1.0
    lines = ["| kernel kind | GPU ms | share |", "|---|---|---|"]
    lines += [f"| {k} | {v / 1e3:.1f} | {v / total:.1%} |" for k, v in sorted(totals.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def bench_resolution(resolution: int, args, device, loss, budget, payload, record) -> list[dict]:
    print(f"\n# {resolution} px (elapsed {budget.elapsed():.0f} s)", flush=True)
    G, _ = load_named_generator(args.arch, resolution=resolution, tiny=args.tiny)
    G = G.to(device)
    label = f"{args.arch} {resolution} px"
    if args.tiny:
        label = f"tiny {resolution} px" if args.arch == "config-f" else f"tiny {label}"
    steps = args.steps or STEPS.get(resolution, 50)
    projector_w_stats(G, InversionConfig().w_avg_samples)
    flops = flops_per_image_step(G, loss, device, steps)
    payload["flops_per_image_step"][label] = flops
    print(f"{label}: {flops / 1e9:.1f} GFLOP per image-step (forward + backward, fp32 eager count)", flush=True)
    n = args.batch or (args.max_batch if resolution <= 256 else min(args.max_batch, 64))  # 1024 px: ~2.5 GB/image
    targets = random_targets(G, n, device, chunk=TARGET_CHUNK)
    rows = bench_generator(label, G, targets, loss, steps, args, device, budget, flops, payload["peak_tflops"],
                           record, ablations=resolution in args.ablation_resolutions,
                           graphs=resolution in args.graph_resolutions)
    if args.profile and resolution in (256, 32) and not budget.exhausted():
        candidates = [r for r in rows if "error" not in r and r["variant"].startswith("bf16")
                      and "graph" not in r["variant"]]
        if candidates:
            best = max(candidates, key=lambda r: r["image_steps_per_s"])
            try:
                print(profile_engine(G, targets, loss, best["variant"], best["batch"], args, device, args.profile))
                payload["profile"] = dict(path=args.profile, variant=best["variant"], batch=best["batch"])
            except Exception as err:  # noqa: BLE001
                traceback.print_exc()
                payload["profile"] = dict(error=f"{type(err).__name__}: {err}")
    if resolution in (64, 32) and args.arch == "config-f" and not args.no_faces64 and not budget.exhausted():
        rows += faces64_quality(rows, args, device, loss, budget, record)
    return rows


def faces64_quality(rows, args, device, loss, budget, record) -> list[dict]:
    """fp32 and bf16 + channels_last (+ CUDA graph) on faces64 with held-out faces: a trained generator and real-ish
    targets. Not compiled (a new generator would compile anew): compilation only changes fusion rounding, and the
    config-f rows check its numerics."""
    try:
        from ganinv.generators.io import load_generator

        G = load_generator("faces64").to(device).eval().requires_grad_(False)
    except Exception as err:  # noqa: BLE001
        print(f"faces64 quality skipped: {type(err).__name__}: {err}")
        return []
    fast = "bf16+cl" if FAILED_GRAPH_CAPTURE else "bf16+cl+graph"
    targets = heldout_faces(args.quality_images, device)
    label = "faces64 (held-out faces)"
    out = []
    for name in ["fp32", fast]:
        if budget.exhausted():
            out.append(record(label, dict(variant=name, error="skipped: time budget"), None, None, None))
            continue
        row = try_engine(G, targets, loss, name, args.quality_images, args.quality_steps, args, device)
        out.append(record(label, row, None, None, None))
    return out


STARTUP_RESERVE_S = {64: 120, 256: 150, 1024: 200}  # a cold + warm pair is not started with less budget left
STARTUP_BATCH = {64: 256, 256: 168, 1024: 32}  # --startup-first: auto batches of bf16+cl(+compile), H100, 2026-12-06
STARTUP_COLUMNS = ["resolution", "start", "batch", "python_start_s", "imported", "model_loaded", "w_stats",
                   "problem_built", "first_step", "compile_and_first_step_s", "graphs", "compile_s", "steady_step_s",
                   "fx_cache", "error"]


def startup(resolution: int, rows: list[dict], args, budget: Budget, payload: dict) -> dict:
    """Cold and warm start of a fresh worker process at `resolution` (`benchmarks.startup_timeline`), at the batch
    the regionally compiled engine ran with here (before the rows: `--startup-batch`, `STARTUP_BATCH`)."""
    if budget.exhausted(STARTUP_RESERVE_S.get(resolution, 150)):
        result = dict(resolution=resolution, error=f"skipped: time budget ({args.time_budget:.0f} s)")
        payload["startup"].append(result)
        return result
    compiled = [r for r in rows if r.get("variant") == "bf16+cl+compile" and "error" not in r]
    batch = compiled[0]["batch"] if compiled else (args.startup_batch or args.batch
                                                     or STARTUP_BATCH.get(resolution, 32))
    print(f"  start-up at {resolution} px, batch {batch} (cold, then warm) ...", flush=True)
    try:
        result = measure_startup(resolution, batch, arch=args.arch, tiny=args.tiny, device=args.device,
                                 steps=args.startup_steps, timeout=max(60.0, budget.remaining()), backend=args.backend)
    except Exception as err:  # noqa: BLE001 - record, go on
        traceback.print_exc()
        result = dict(resolution=resolution, error=f"{type(err).__name__}: {err}")
    payload["startup"].append(result)
    write_json(args.out, payload)
    print(markdown_table(startup_table([result]), STARTUP_COLUMNS), flush=True)
    for start in ("cold", "warm"):
        if (result.get(start) or {}).get("compile"):
            print(f"start-up {start}: " + compile_metrics.format_summary(result[start]["compile"], indent=""), flush=True)
    return result


def startup_table(results: list[dict]) -> list[dict]:
    out = []
    for result in results:
        for start in ("cold", "warm"):
            row = dict(resolution=result["resolution"], start=start, batch=result.get("batch"))
            timeline = result.get(start) or {"error": result.get("error")}
            row.update({k: v for k, v in timeline.items() if k in STARTUP_COLUMNS})
            cache = timeline.get("inductor_cache") or {}
            row["fx_cache"] = f"{cache.get('fxgraph_cache_hit', 0)} hit / {cache.get('fxgraph_cache_miss', 0)} miss"
            compiled = timeline.get("compile") or {}
            row.update({k: compiled[k] for k in ("graphs", "compile_s") if k in compiled})
            out.append(row)
    return out


def main(argv=None) -> dict:
    # The composite resample (FIR folded into the conv kernels) is the fastest exact form measured on GPUs so far
    # (BENCHMARKS.md); GANINV_RESAMPLE_IMPL overrides it. Restored afterwards (tests call main in-process).
    args = parse_args(argv)
    with layers.resample_impl(os.environ.get("GANINV_RESAMPLE_IMPL", "composite")), compile_backend(args.backend):
        return _main(args)


@contextlib.contextmanager
def compile_backend(backend: str | None):
    """Both compile scopes' torch.compile backend set to `backend` (None: unchanged), restored afterwards."""
    if backend is None:
        yield
        return
    saved = dict(regional_compile.REGION_OPTIONS), dict(optimize.COMPILE_OPTIONS)
    regional_compile.REGION_OPTIONS["backend"] = optimize.COMPILE_OPTIONS["backend"] = backend
    try:
        yield
    finally:
        for options, before in zip((regional_compile.REGION_OPTIONS, optimize.COMPILE_OPTIONS), saved):
            options.clear()
            options.update(before)


def _main(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    budget = Budget(args.time_budget)
    cache_dir = use_compile_cache(args.compile_cache or tempfile.mkdtemp(prefix="ganinv-perf-compile-cache-"))
    FAILED_GRAPH_CAPTURE.clear()
    torch.manual_seed(0)  # the random VGG trunk: the same loss in every run
    loss = LPIPSLoss("vgg", random_trunk=True).to(device)
    facts = device_facts(device)
    facts.update(resample_impl=layers.RESAMPLE_IMPL, cudnn_benchmark=torch.backends.cudnn.benchmark,
                 cudnn=torch.backends.cudnn.version(), arch=args.arch,
                 channel_base={r: official_channel_base(r) for r in args.resolutions} if args.arch == "config-f"
                 else STYLEGAN3_CHANNELS[args.arch][0], compile_cache=str(cache_dir))
    print(facts, flush=True)
    rows: list[dict] = []
    payload = dict(facts, loss=loss.name, peak_tflops=peak_tflops(device, args.peak_tflops),
                   peak_note="dense bf16 datasheet peak; MFU of fp32 rows uses it too", flops_per_image_step={},
                   settings={k: v for k, v in vars(args).items() if k != "out"}, rows=rows, quality=[], startup=[])
    record = make_recorder(rows, payload, args)
    for resolution in args.resolutions:  # compiled regions stay: later resolutions reuse them (warmup_s says so)
        timed_startup = resolution in args.startup_resolutions
        if timed_startup and args.startup_first:
            result = startup(resolution, [], args, budget, payload)
            if "error" not in (result.get("cold") or result):  # the rows read what the cold process compiled
                payload["rows_compile_cache"] = str(use_compile_cache(result["cache_dir"]))
                print(f"  the rows read the start-up's compile cache {payload['rows_compile_cache']}", flush=True)
        res_rows = bench_resolution(resolution, args, device, loss, budget, payload, record)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if timed_startup and not args.startup_first:
            startup(resolution, res_rows, args, budget, payload)
    payload["quality"] = quality_rows(rows, loss.name)
    payload["elapsed_s"] = budget.elapsed()
    write_json(args.out, payload)
    print(f"\n## Throughput ({facts.get('gpu', device)}; MFU against {payload['peak_tflops']} TFLOP/s dense bf16)\n")
    print(markdown_table(rows, COLUMNS))
    print("\n## Quality: bf16 against fp32, same images, same steps, evaluated in fp32\n")
    print(markdown_table(payload["quality"], QUALITY_COLUMNS))
    print("\n## Start-up: seconds from process start (cold: empty compile cache; warm: the cache the cold one filled)\n")
    print(markdown_table(startup_table(payload["startup"]), STARTUP_COLUMNS))
    print(f"\nelapsed {payload['elapsed_s']:.0f} s")
    return payload


if __name__ == "__main__":
    main()
