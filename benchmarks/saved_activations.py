"""What one synthesis forward keeps for its backward pass, per image, by the source line of the op that saved it:
where the engine's activation memory goes (issue 17: StyleGAN3-T at 256 px took 5.4 GiB per image on an H100 in
fp32, config-f 0.57). Runs on the CPU: autograd's `saved_tensors_hooks` see every tensor a backward node keeps,
counted once per storage (several nodes may keep one tensor).

`--recompute`: the same with StyleGAN3's filtered leaky ReLU under `torch.utils.checkpoint` (non-reentrant): its
input is kept and its up-sampling, activation, clamp and down-sampling run again in backward. A what-if, swapped in
here only; the engine does not do it (BENCHMARKS.md, "StyleGAN3-T at 256 px": at 256 px on an 80 GB card the batch
it frees gains less than the recomputation costs). Both are timed (forward + backward, `--repeats` interleaved, the
minimum) and their images and gradients compared bitwise.

    python3 -m benchmarks.saved_activations --arch stylegan3-t --channel-divisor 4 --batch 2 --recompute
"""

from __future__ import annotations

import argparse
import contextlib
import time
import traceback
from collections import Counter
from collections.abc import Iterator

import torch
from torch.utils.checkpoint import checkpoint

from benchmarks.common import STYLEGAN3_CHANNELS, config_f_generator
from ganinv.generators import layers, stylegan3
from ganinv.generators.alias_free import filtered_lrelu
from ganinv.utils.precision import autocast

MIB = 2 ** 20


def generator(arch: str, resolution: int, divisor: int) -> torch.nn.Module:
    """The benchmark's generator with its widths divided by `divisor` (activations scale with the widths: at 256 px
    StyleGAN3-T keeps 4.39 GiB per image in fp32 at full width and 4 x 1.08 with divisor 4)."""
    if arch == "config-f":
        base = 16384 if resolution < 512 else 32768
        return config_f_generator(resolution, channel_base=base // divisor)
    torch.manual_seed(0)
    base, cmax = STYLEGAN3_CHANNELS[arch]
    radial = dict(conv_kernel=1, use_radial_filters=True) if arch == "stylegan3-r" else {}
    G = stylegan3.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                            mapping_kwargs=dict(num_layers=2), channel_base=base // divisor,
                            channel_max=cmax // divisor, num_fp16_res=0, conv_clamp=256, **radial)
    return G.eval().requires_grad_(False)


@contextlib.contextmanager
def recomputed_filtered_lrelu() -> Iterator[None]:
    """StyleGAN3's layers call the filtered leaky ReLU under activation checkpointing inside the block."""
    def wrapped(x, *args, **kwargs):
        return checkpoint(filtered_lrelu, x, *args, use_reentrant=False, **kwargs)

    stylegan3.filtered_lrelu = wrapped
    try:
        yield
    finally:
        stylegan3.filtered_lrelu = filtered_lrelu


def _site() -> str:
    frames = [f for f in traceback.extract_stack()[:-2] if "ganinv" in f.filename and "torch" not in f.filename]
    if not frames:
        return "?"
    f = frames[-1]
    return f"{f.filename.split('ganinv/')[-1]}:{f.lineno} {(f.line or '').strip()[:72]}"


def measure(G, args, *, count: bool) -> dict:
    """One forward + backward as the engine synthesises (unfused modulation, `--precision`, `--channels-last`):
    seconds, and with `count` the saved bytes by site."""
    storages: dict[int, int] = {}
    sites: Counter = Counter()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if count and storage.data_ptr() not in storages:
            storages[storage.data_ptr()] = storage.nbytes()
            sites[_site()] += storage.nbytes()
        return t

    ws = torch.randn(args.batch, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(args.precision, "cpu"):
        images = G.synthesis(ws, noise_mode="const", fused_modconv=False, channels_last=args.channels_last,
                             force_fp32=args.precision != "fp32")
    images.float().square().sum().backward()
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, saved=sum(storages.values()), sites=sites, images=images.detach(), grad=ws.grad)


def report(result: dict, seconds: list[float], args, label: str) -> None:
    timing = (f"; forward + backward {min(seconds):.2f} s at batch {args.batch} (min of "
              f"{' '.join(f'{s:.2f}' for s in seconds)})") if seconds else ""
    print(f"{label}: {result['saved'] / args.batch / MIB:.1f} MiB saved per image{timing}", flush=True)
    for site, nbytes in result["sites"].most_common(args.top):
        print(f"  {nbytes / args.batch / MIB:9.1f} MiB  {site}")


def variants(args) -> dict[str, contextlib.AbstractContextManager]:
    out = {"": contextlib.nullcontext}
    if args.recompute and args.arch != "config-f":
        out[", filtered lrelu recomputed"] = recomputed_filtered_lrelu
    return out


def main(argv=None) -> dict:
    """Prints the table; returns {variant label: {"saved": bytes per image, "seconds": [...], "same": bitwise}}."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="stylegan3-t", choices=["config-f", *STYLEGAN3_CHANNELS])
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--channel-divisor", type=int, default=1, help="divide the widths (CPU time and memory)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--recompute", action="store_true", help="also measure the checkpointed filtered leaky ReLU")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each variant (0: count bytes only)")
    p.add_argument("--top", type=int, default=8)
    args = p.parse_args(argv)
    G = generator(args.arch, args.resolution, args.channel_divisor)
    name = f"{args.arch} {args.resolution} px / {args.channel_divisor}, {args.precision}" + (
        " + channels_last" if args.channels_last else "")
    with layers.resample_impl("composite"):
        results = {}
        for suffix, context in variants(args).items():
            with context():
                results[suffix] = measure(G, args, count=True)
        seconds: dict[str, list[float]] = {suffix: [] for suffix in results}
        for _ in range(args.repeats):  # interleaved: a shared machine's load drifts
            for suffix, context in variants(args).items():
                with context():
                    seconds[suffix].append(measure(G, args, count=False)["seconds"])
    for suffix, result in results.items():
        report(result, seconds[suffix], args, name + suffix)
    plain = next(iter(results.values()))
    same = {suffix: torch.equal(plain["images"], r["images"]) and torch.equal(plain["grad"], r["grad"])
            for suffix, r in results.items()}
    out = {name + suffix: dict(saved=r["saved"] / args.batch, seconds=seconds[suffix], same=same[suffix])
           for suffix, r in results.items()}
    if len(results) == 2 and args.repeats:
        (plain_s, again_s), again = seconds.values(), list(results.values())[1]
        ratios = " ".join(f"{b / a:.2f}" for a, b in zip(plain_s, again_s))
        print(f"recompute: {plain['saved'] / max(again['saved'], 1):.2f}x less saved; time ratio per repeat {ratios} "
              f"(min to min {min(again_s) / min(plain_s):.2f}); images and gradients bitwise equal: "
              f"{all(same.values())}")
    return out


if __name__ == "__main__":
    main()
