"""From process start to the first optimisation step: where a worker's start-up goes, cold and warm.

`measure_startup` (called by `benchmarks.perf_inversion`) starts this module as a fresh Python process twice with
the same compile cache directory (`ganinv.utils.compile_cache`): the first process finds it empty (cold: it
compiles and fills it), the second reads it (warm: the next worker of a run, or the next night's run). Each child
prints one JSON line of wall-clock stamps; the parent turns them into seconds since it started the process:

    imported       python, torch and ganinv imported
    model_loaded   generator (config-f shape, random weights) and loss network built and on the device
    w_stats        w_avg / w_std from 10k mapped z (the projector's start)
    problem_built  targets and the inversion problem set up
    first_step     the first optimisation step done (compilation and cuDNN autotuning happen here)
    steady_step_s  seconds per step over the next `--steps` steps

plus the inductor cache's hits and misses, so a "warm" row shows it really read the cache, and what the process
compiled, graph by graph (`benchmarks.compile_metrics`: graphs, recompiles, seconds by stage, cache hits).

    PYTHONPATH=. python -m benchmarks.startup_timeline --resolution 32 --tiny --batch 4 --device cpu \\
        --compile-cache /tmp/cc    # one child by hand (prints its JSON line)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_START = time.time()  # module import: as close to process start as Python code gets
ROOT = Path(__file__).resolve().parents[1]
STAMPS = ("imported", "model_loaded", "w_stats", "problem_built", "first_step")
LPIPS = "lpips-vgg"


def child(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--resolution", type=int, required=True)
    p.add_argument("--arch", default="config-f")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="cuda")
    p.add_argument("--compile-cache", required=True)
    p.add_argument("--compile-scope", default="regional")
    p.add_argument("--backend", default=None, help="torch.compile backend of the regions (default inductor; "
                   "aot_eager for a CPU smoke test: tracing without code generation)")
    p.add_argument("--loss", default=LPIPS, help=f"the inversion's loss (default {LPIPS}, on a random VGG16 trunk: "
                   "the engine's work; a pixel loss for a smoke test: a graph of a few ops instead of VGG's)")
    args = p.parse_args(argv)

    from ganinv.utils.compile_cache import use_compile_cache

    use_compile_cache(args.compile_cache)  # before torch compiles anything
    import torch
    from torch._dynamo.utils import counters

    from benchmarks import compile_metrics
    from benchmarks.common import load_named_generator, random_targets, synchronize
    from ganinv.generators import layers
    from ganinv.inversion import InversionConfig, build_problem, projector_w_stats
    from ganinv.losses import LPIPSLoss, build_loss
    from ganinv.utils import regional_compile

    if args.backend:
        regional_compile.REGION_OPTIONS["backend"] = args.backend

    compile_metrics.start()
    stamps = {"imported": time.time()}
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    loss = LPIPSLoss("vgg", random_trunk=True).to(device) if args.loss == LPIPS else build_loss(args.loss, device=device)
    G, _ = load_named_generator(args.arch, resolution=args.resolution, tiny=args.tiny)
    G = G.to(device)
    synchronize(device)
    stamps["model_loaded"] = time.time()
    config = InversionConfig(num_steps=args.steps + 1, loss=args.loss, precision="bf16", channels_last=True,
                             compile=True)
    projector_w_stats(G, config.w_avg_samples)
    synchronize(device)
    stamps["w_stats"] = time.time()
    targets = random_targets(G, args.batch, device, chunk=16)
    with layers.resample_impl(os.environ.get("GANINV_RESAMPLE_IMPL", "composite")):
        problem = build_problem(G, targets, config, loss_fn=loss, seed=list(range(args.batch)),
                                compile_scope=args.compile_scope)
        stamps["problem_built"] = time.time()
        problem.step(0)
        synchronize(device)
        stamps["first_step"] = time.time()
        for step in range(1, args.steps + 1):
            problem.step(step)
        synchronize(device)
        steady = (time.time() - stamps["first_step"]) / args.steps
        latent = problem.latent.detach().double().cpu()
        problem.close()
    inductor = {k: v for k, v in counters["inductor"].items() if "cache" in k}
    aot = {k: v for k, v in counters["aot_autograd"].items() if "cache" in k}
    result = dict(stamps=stamps, steady_step_s=steady, batch=args.batch, inductor_cache=inductor,
                  aot_autograd_cache=aot, t_import=T_START, latent=latent.reshape(args.batch, -1).sum(1).tolist(),
                  compile=compile_metrics.summary())
    print("STARTUP " + json.dumps(result), flush=True)
    return result


def run_child(resolution: int, batch: int, cache_dir: str, *, arch: str = "config-f", tiny: bool = False,
              device: str = "cuda", steps: int = 5, timeout: float = 400, scope: str = "regional",
              backend: str | None = None, loss: str = LPIPS) -> dict:
    """One child process; its timeline in seconds since this process started it."""
    cmd = [sys.executable, "-m", "benchmarks.startup_timeline", "--resolution", str(resolution), "--batch",
           str(batch), "--arch", arch, "--device", device, "--steps", str(steps), "--compile-cache", cache_dir,
           "--compile-scope", scope, "--loss", loss] + (["--tiny"] if tiny else []) + \
        (["--backend", backend] if backend else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("STARTUP ")), None)
    if proc.returncode != 0 or line is None:
        return dict(error=f"exit {proc.returncode}: {proc.stderr[-600:]}")
    raw = json.loads(line[len("STARTUP "):])
    row = {name: raw["stamps"][name] - started for name in STAMPS}
    row.update(python_start_s=raw["t_import"] - started, steady_step_s=raw["steady_step_s"], batch=raw["batch"],
               inductor_cache=raw["inductor_cache"], aot_autograd_cache=raw["aot_autograd_cache"], latent=raw["latent"],
               compile_and_first_step_s=raw["stamps"]["first_step"] - raw["stamps"]["problem_built"],
               compile=raw.get("compile"))
    return row


def measure_startup(resolution: int, batch: int, **kwargs) -> dict:
    """Cold then warm start with one fresh compile cache directory: {'cold': timeline, 'warm': timeline}."""
    cache_dir = tempfile.mkdtemp(prefix=f"ganinv-compile-cache-{resolution}-")
    cold = run_child(resolution, batch, cache_dir, **kwargs)
    warm = run_child(resolution, batch, cache_dir, **kwargs) if "error" not in cold else dict(error="cold failed")
    return dict(resolution=resolution, batch=batch, cache_dir=cache_dir, cold=cold, warm=warm)


if __name__ == "__main__":
    child()
