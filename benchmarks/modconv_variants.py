"""Modulated convolution forms at the 256 px config-f layer shapes, forward + backward, one table per device call.

    PYTHONPATH=. python -m benchmarks.modconv_variants --device cuda --out $OUT/modconv_variants.json   # ~1 min
    PYTHONPATH=. python -m benchmarks.modconv_variants --tiny --device cpu                            # smoke test

Forms (StyleGAN2 eq. 1-3; all compute the same function):
- `grouped`: per-sample modulated + demodulated weights, one grouped convolution (`fused_modconv=True`);
- `unfused`: scale the input channels, one shared convolution for the batch, scale the output channels (the engine's
  form, `fused_modconv=False`);
- `bmm`: im2col (`F.unfold`) and a batched matmul with the per-sample weights (3x3 layers without upsampling only).
Crossed with fp32 / bf16 (autocast), NCHW / channels_last, and the resample implementation of the upsampling
layers (`composite`: FIR folded into the transposed conv's kernel; `subpixel`: that kernel run as a 3x3 conv with
4x the output channels and a pixel shuffle; `fir`: a separate depthwise FIR pass).

Each case runs forward and backward (gradients of the input and the styles, as inversion needs; the weights are
frozen) on random inputs, timed with CUDA events (median of `--reps` after `--warmup`), summed over the layers.
`rel_err` is the largest ||out - ref|| / ||ref|| over layers against unfused fp32 NCHW fir (bf16: expect 1e-3..1e-2).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import device_facts, markdown_table, write_json  # noqa: E402
from ganinv.generators import layers  # noqa: E402
from ganinv.generators.layers import modulated_conv2d, setup_filter  # noqa: E402
from ganinv.utils.precision import autocast  # noqa: E402

FORMS = ("unfused", "grouped", "bmm")
COLUMNS = ["form", "precision", "layout", "resample", "total_ms", "ms_3x3_only", "ms_upsampling_only", "rel_err",
           "error"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--channel-base", type=int, default=16384)
    p.add_argument("--channel-max", type=int, default=512)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--time-budget", type=float, default=80, help="seconds; later cases are skipped")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.tiny:
        args.batch, args.resolution, args.channel_base, args.channel_max = 2, 16, 128, 16
        args.warmup, args.reps = 1, 1
    return args


def layer_shapes(resolution: int, channel_base: int, channel_max: int) -> list[tuple[int, int, int, int]]:
    """(output resolution, in channels, out channels, up) of every 3x3 synthesis layer, as in config-f."""
    ch = lambda r: min(channel_base // r, channel_max)  # noqa: E731
    shapes = [(4, ch(4), ch(4), 1)]
    r = 8
    while r <= resolution:
        shapes += [(r, ch(r // 2), ch(r), 2), (r, ch(r), ch(r), 1)]
        r *= 2
    return shapes


def modconv_bmm(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """3x3, padding 1, demodulated: im2col + batched matmul with per-sample weights `[N, O, I*9]`."""
    n, _, h, w = x.shape
    out_channels = weight.shape[0]
    wn = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
    wn = wn * (wn.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    cols = F.unfold(x, kernel_size=3, padding=1)  # [N, I*9, H*W]
    return torch.bmm(wn.reshape(n, out_channels, -1).to(cols.dtype), cols).reshape(n, out_channels, h, w)


def run_form(form: str, x, weight, styles, up: int, f) -> torch.Tensor:
    if form == "bmm":
        return modconv_bmm(x, weight, styles)
    return modulated_conv2d(x, weight, styles, up=up, padding=1, resample_filter=f, fused_modconv=form == "grouped")


def cases() -> list[tuple[str, str, str, str]]:
    """(form, precision, layout, resample), the most telling first (a time budget may cut the tail)."""
    first = [("unfused", "bf16", "channels_last", r) for r in ("composite", "subpixel", "fir")]
    first += [("unfused", "fp32", "nchw", r) for r in ("composite", "subpixel", "fir")]
    first += [("grouped", "bf16", "channels_last", "composite"), ("grouped", "fp32", "nchw", "composite"),
              ("bmm", "bf16", "channels_last", "composite"), ("bmm", "fp32", "nchw", "composite")]
    rest = [(f, p, lay, r) for f in FORMS for p in ("bf16", "fp32") for lay in ("channels_last", "nchw")
            for r in (("composite", "subpixel", "fir") if f != "bmm" else ("composite",))]
    return first + [c for c in rest if c not in first]


def time_case(fn, device: torch.device, warmup: int, reps: int) -> float:
    """Median milliseconds of `fn()` (CUDA events on GPUs, a synchronised host clock elsewhere)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def make_inputs(shape, batch: int, device: torch.device, seed: int):
    res, cin, cout, up = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn([batch, cin, res // up, res // up], generator=gen).to(device)
    styles = (torch.randn([batch, cin], generator=gen) * 0.5 + 1).to(device)  # like affine outputs (bias 1)
    weight = torch.randn([cout, cin, 3, 3], generator=gen).to(device)
    grad = torch.randn([batch, cout, res, res], generator=gen).to(device)
    return x, styles, weight, grad


def bench_case(form, precision, layout, resample, shapes, args, device, refs) -> dict:
    f = setup_filter().to(device)
    totals = {"total_ms": 0.0, "ms_3x3_only": 0.0, "ms_upsampling_only": 0.0}
    rel_err = 0.0
    for i, shape in enumerate(shapes):
        up = shape[3]
        if form == "bmm" and up > 1:
            continue
        x, styles, weight, grad = make_inputs(shape, args.batch, device, seed=i)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        styles.requires_grad_(True)

        def fwd_bwd():
            with autocast(precision, device):
                out = run_form(form, x, weight, styles, up, f)
            torch.autograd.grad(out, [x, styles], grad.to(out.dtype))
            return out

        with torch.no_grad(), autocast(precision, device):
            out = run_form(form, x, weight, styles, up, f).float()
        rel_err = max(rel_err, float((out - refs[i]).norm() / refs[i].norm()))
        ms = time_case(fwd_bwd, device, args.warmup, args.reps)
        totals["total_ms"] += ms
        totals["ms_upsampling_only" if up > 1 else "ms_3x3_only"] += ms
    if form == "bmm":
        totals["total_ms"] = None  # not comparable: upsampling layers not run
    return dict(form=form, precision=precision, layout=layout, resample=resample, rel_err=rel_err, **totals)


@torch.no_grad()
def references(shapes, args, device) -> list[torch.Tensor]:
    f = setup_filter().to(device)
    refs = []
    with layers.resample_impl("fir"):
        for i, shape in enumerate(shapes):
            x, styles, weight, _ = make_inputs(shape, args.batch, device, seed=i)
            refs.append(modulated_conv2d(x, weight, styles, up=shape[3], padding=1, resample_filter=f,
                                         fused_modconv=False).float())
    return refs


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    shapes = layer_shapes(args.resolution, args.channel_base, args.channel_max)
    refs = references(shapes, args, device)
    rows = []
    for form, precision, layout, resample in cases():
        row = dict(form=form, precision=precision, layout=layout, resample=resample)
        if time.perf_counter() - start > args.time_budget:
            row["error"] = "skipped: time budget"
        else:
            try:
                with layers.resample_impl(resample):  # read at call time by conv2d_resample
                    row = bench_case(form, precision, layout, resample, shapes, args, device, refs)
            except Exception as err:  # noqa: BLE001 - record and go on
                row["error"] = f"{type(err).__name__}: {str(err)[:200]}"
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
        print(markdown_table([row], COLUMNS).splitlines()[-1], flush=True)
    ranked = sorted(rows, key=lambda r: (r.get("total_ms") is None, r.get("total_ms") or r.get("ms_3x3_only") or 0))
    payload = dict(device_facts(device), batch=args.batch, resolution=args.resolution, layers=shapes, rows=rows,
                   elapsed_s=time.perf_counter() - start)
    write_json(args.out, payload)
    print(f"\n## Modulated conv, fwd+bwd, batch {args.batch}, {args.resolution} px config-f layers "
          f"({len(shapes)} layers; {payload.get('gpu', device)})\n")
    print(markdown_table(ranked, COLUMNS))
    return payload


if __name__ == "__main__":
    main()
