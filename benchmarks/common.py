"""Shared pieces of the benchmark scripts: generators to benchmark, targets and held-out faces, device facts, tables,
JSON output."""

from __future__ import annotations

import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ganinv.generators.stylegan2 import Generator
from ganinv.generators.stylegan3 import Generator as StyleGAN3Generator


def official_channel_base(resolution: int) -> int:
    """StyleGAN2-ADA's `train.py`: channel_base = fmaps * 32768 with fmaps 1 for config-f ('stylegan2'), 'paper512'
    and 'paper1024', 0.5 for 'paper256'; its 'auto' config takes fmaps = 1 if resolution >= 512 else 0.5."""
    return 32768 if resolution >= 512 else 16384


def config_f_generator(resolution: int = 256, *, seed: int = 0, channel_base: int | None = None) -> Generator:
    """A config-f-sized StyleGAN2 generator with random weights (channel_base `official_channel_base(resolution)`,
    i.e. 16384 up to 256 px and 32768 from 512 px, channel_max 512, w_dim 512, 8 mapping layers, fp32 everywhere):
    the right shape and cost for timing, meaningless images."""
    torch.manual_seed(seed)
    channel_base = channel_base or official_channel_base(resolution)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                  mapping_kwargs=dict(num_layers=8),
                  synthesis_kwargs=dict(channel_base=channel_base, channel_max=512, num_fp16_res=0, conv_clamp=256))
    return G.eval().requires_grad_(False)


def tiny_generator(resolution: int = 32, *, seed: int = 0) -> Generator:
    """A few-hundred-kilobyte random generator for CPU smoke runs, its output scaled to stay near [-1, 1]."""
    torch.manual_seed(seed)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=resolution, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=512, channel_max=32))
    return in_range_outputs_(G).eval().requires_grad_(False)


@torch.no_grad()
def in_range_outputs_(G: Generator, scale: float = 0.2) -> Generator:
    """Scales a random generator's toRGB weights in place so that its images mostly fall inside [-1, 1]: same shapes
    and cost, images with detail instead of clipped colours (config-f at 256 px, truncation 0.7: 53 % of the pixel
    values clipped before, 0.4 % after)."""
    for block in G.synthesis.blocks():
        block.torgb.weight.mul_(scale)
    return G


# The released StyleGAN3 FFHQ-U 256 px generators (stylegan3-{t,r}-ffhqu-256x256.pkl) were trained with
# `train.py --cbase=16384` (its default cmax 512); --cfg=stylegan3-r doubles both. Their configs as mmagic converted
# them, and fine-tuning recipes that resume from them, use exactly these values.
STYLEGAN3_CHANNELS = {"stylegan3-t": (16384, 512), "stylegan3-r": (32768, 1024)}


def stylegan3_generator(resolution: int = 256, *, config: str = "stylegan3-t", seed: int = 0,
                        tiny: bool = False) -> StyleGAN3Generator:
    """A StyleGAN3 generator (config T or R) with random weights, shaped like the released FFHQ-U 256 px ones
    (`STYLEGAN3_CHANNELS`, w_dim 512, 2 mapping layers, 14 layers + ToRGB), fp32 layers (num_fp16_res 0: the engine's
    autocast picks the precision); `tiny`: z/w 32, channel_base 1024, channel_max 32, 6 layers, for CPU smoke runs.
    Random StyleGAN3 images stay inside [-1, 1] (std ~0.16 at 256 px), so no output scaling is needed."""
    torch.manual_seed(seed)
    channel_base, channel_max = STYLEGAN3_CHANNELS[config]
    dims, layers = (32, dict(num_layers=6)) if tiny else (512, {})
    if tiny:
        channel_base, channel_max = channel_base // 16, channel_max // 16
    radial = dict(conv_kernel=1, use_radial_filters=True) if config == "stylegan3-r" else {}
    G = StyleGAN3Generator(z_dim=dims, c_dim=0, w_dim=dims, img_resolution=resolution, img_channels=3,
                           mapping_kwargs=dict(num_layers=2), channel_base=channel_base, channel_max=channel_max,
                           num_fp16_res=0, conv_clamp=256, **layers, **radial)
    return G.eval().requires_grad_(False)


def load_named_generator(spec: str, *, resolution: int, tiny: bool) -> tuple[Generator | None, str]:
    """`config-f` (random weights), `stylegan3-t` / `stylegan3-r` (random weights), `tiny` or a name for
    `ganinv.generators.io.load_generator` (e.g. `faces64`). Returns (None, reason) when the named generator cannot be
    loaded here."""
    if spec == "config-f":
        return (tiny_generator(resolution) if tiny else config_f_generator(resolution)), \
            ("tiny random generator" if tiny else f"config-f-sized, random weights, {resolution} px")
    if spec in STYLEGAN3_CHANNELS:
        return stylegan3_generator(resolution, config=spec, tiny=tiny), \
            f"{'tiny ' if tiny else ''}{spec} (FFHQ-U 256 px channels), random weights, {resolution} px"
    try:
        from ganinv.generators.io import load_generator
        return load_generator(spec).eval().requires_grad_(False), f"{spec} (trained weights)"
    except Exception as err:  # noqa: BLE001 - any failure means "not available here"; say why and go on
        return None, f"{spec} unavailable: {type(err).__name__}: {err}"


class Budget:
    """Wall-clock budget of one benchmark run (`--time-budget`): parts that would not fit are skipped or shrunk."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def exhausted(self, reserve: float = 0.0) -> bool:
        return self.elapsed() + reserve > self.seconds


HELDOUT_SEED = 1  # procedural-faces world seed the faces64 GAN never saw (it was trained on seed 0)


@torch.no_grad()
def random_targets(G: Generator, n: int, device: torch.device, *, seed: int = 0,
                   chunk: int | None = None) -> torch.Tensor:
    """`[n, 3, R, R]` images of G from random z (noise_mode const): targets with an exact reconstruction. `chunk`:
    render that many at a time (large generators), else all in one batch."""
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))
    chunk = chunk or max(n, 1)
    return torch.cat([G(z[i:i + chunk].to(device), None).clamp(-1, 1) for i in range(0, n, chunk)])


def to_unit_range(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Pixel values in [0, 255] (uint8 or float), `[N, H, W, 3]` as render_batch, PIL and .npy files hold them or
    `[N, 3, H, W]` (channels first when dim 1 is 3) -> `[N, 3, H, W]` float32 in [-1, 1], as ganinv takes images."""
    x = torch.as_tensor(pixels)
    assert x.ndim == 4 and 3 in (x.shape[1], x.shape[-1]), f"pixels must be [N, H, W, 3] or [N, 3, H, W], " \
                                                          f"got {list(x.shape)}"
    x = x if x.shape[1] == 3 else x.permute(0, 3, 1, 2)
    return x.float() / 127.5 - 1


def heldout_faces(n: int, device: str | torch.device = "cpu", *, version: int | None = None,
                  size: int = 64) -> torch.Tensor:
    """The first `n` procedural faces of world seed `HELDOUT_SEED` as `[n, 3, size, size]` in [-1, 1], of world
    `version` (None: the shipped world's; a training run's is `run_world(run)[0]`)."""
    from ganinv.datasets.procedural_faces import render_batch

    images, _ = render_batch(HELDOUT_SEED, range(n), size=size, version=version)
    return to_unit_range(images).to(device)


def device_facts(device: torch.device) -> dict[str, Any]:
    facts = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
             "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "command": " ".join([Path(sys.executable).name, "-m", "benchmarks." + Path(sys.argv[0]).stem,
                                  *sys.argv[1:]])}
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    else:
        facts["cpu"] = platform.processor() or platform.machine()
        facts["threads"] = torch.get_num_threads()
    return facts


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "n/a"
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def finite_or_null(value: Any) -> Any:
    """`value` with every NaN or infinite float (nested in dicts, lists, tuples) replaced by None: `json.dumps` writes
    those as bare `NaN` / `Infinity`, which is not JSON (strict parsers, `jq`, browsers reject the file)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def write_json(path: str | Path | None, payload: Any, *, indent: int | None = 2) -> None:
    """Write `payload` as strict JSON (NaN and infinities as null, anything else unknown as its str) if `path`."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(finite_or_null(payload), indent=indent, default=str, allow_nan=False))
        print(f"wrote {path}")


EARLIER_RUNS = "earlier_runs.jsonl"  # an encoder run's log entries from before its warm starts (encoder_any_generator)
ENCODER_RUN_FILES = ("log.jsonl", "run.json", EARLIER_RUNS)  # an encoder run's files beside its checkpoint


def export_run(run_dir: str | Path, out: str | Path, *, files: Sequence[str] = ENCODER_RUN_FILES) -> list[Path]:
    """Copy a training run's checkpoint (as `checkpoint-<name>`) and its `files` into the flat folder `out`: what a
    lent GPU machine returns (files at most two folders down, each under 16 MiB), to commit here."""
    import shutil

    run_dir, out = Path(run_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    copied = [Path(shutil.copy2(f, out / f"checkpoint-{f.name}")) for f in sorted((run_dir / "checkpoint").iterdir())]
    return copied + [Path(shutil.copy2(run_dir / name, out / name)) for name in files if (run_dir / name).exists()]


def install_run(source: str | Path, run_dir: str | Path, *, files: Sequence[str] = ENCODER_RUN_FILES) -> None:
    """The inverse of `export_run`: replace `run_dir`'s checkpoint and `files` by those in `source`."""
    source = Path(source)
    shards = sorted(source.glob("checkpoint-*"))
    if not any(f.name == "checkpoint-checkpoint.json" for f in shards):
        raise FileNotFoundError(f"{source} holds no checkpoint-checkpoint.json: not an exported run")
    _replace_run({f.name.removeprefix("checkpoint-"): f for f in shards}, source, run_dir, files)


def install_run_folder(folder: str | Path, run_dir: str | Path, *, files: Sequence[str]) -> None:
    """Replace `run_dir`'s checkpoint and `files` by those of the run folder `folder` (e.g. a device's, untarred)."""
    folder = Path(folder)
    if not (folder / "checkpoint" / "checkpoint.json").exists():
        raise FileNotFoundError(f"{folder} holds no checkpoint/checkpoint.json: not a run folder")
    _replace_run({f.name: f for f in (folder / "checkpoint").iterdir()}, folder, run_dir, files)


def _replace_run(checkpoint: dict[str, Path], source: Path, run_dir: str | Path, files: Sequence[str]) -> None:
    """`run_dir/checkpoint` becomes the files `checkpoint` ({name: path}; written aside, then renamed in), and each of
    `files` present in `source` is copied beside it."""
    import shutil

    run_dir = Path(run_dir)
    tmp = run_dir / "checkpoint.new"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, f in checkpoint.items():
        shutil.copy2(f, tmp / name)
    shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    tmp.rename(run_dir / "checkpoint")
    for name in files:
        if (source / name).exists():
            shutil.copy2(source / name, run_dir / name)


