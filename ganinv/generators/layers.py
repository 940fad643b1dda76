"""Building blocks of StyleGAN2 (Karras et al., 2020, "Analyzing and Improving the Image Quality of StyleGAN"),
written from the paper and its appendix, in plain PyTorch: no custom CUDA extension.

Conventions follow the StyleGAN2-ADA networks so that official state dicts load unchanged: equalized learning rate
(weights stored at unit variance, scaled at run time by `1/sqrt(fan_in)`), a `[1, 3, 3, 1]` FIR filter for
resampling, leaky ReLU with slope 0.2 and gain `sqrt(2)`, optional clamping of activations (`conv_clamp`).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from ganinv.utils.precision import full_precision

LRELU_GAIN = math.sqrt(2.0)

# How FIR resampling inside convolutions is executed (all exact, they differ in speed only):
#   "fir"        the filter as its own depthwise convolution on the wide tensor (the reference form);
#   "separable"  the same filter as two 1D depthwise convolutions;
#   "composite"  the filter folded into the convolution kernel (3x3 (*) 4x4 -> 6x6), no depthwise pass at all;
#   "subpixel"   as composite for 2x upsampling, but the stride-2 transposed 6x6 convolution is run as an ordinary 3x3
#                convolution with 4x the output channels (one per output phase) and a pixel shuffle, the form GPU
#                convolution libraries are fastest at; other cases fall back to composite.
RESAMPLE_IMPLS = ("fir", "separable", "composite", "subpixel")


def check_resample_impl(name: str, *, source: str = "resample_impl") -> str:
    """`name` if it is one of `RESAMPLE_IMPLS`; otherwise a ValueError naming `source` (a misspelt name must not
    silently run the reference path)."""
    if name not in RESAMPLE_IMPLS:
        raise ValueError(f"{source}={name!r}: choose one of {RESAMPLE_IMPLS}")
    return name


RESAMPLE_IMPL = check_resample_impl(os.environ.get("GANINV_RESAMPLE_IMPL", "fir"), source="GANINV_RESAMPLE_IMPL")


@contextlib.contextmanager
def resample_impl(name: str) -> Iterator[None]:
    """Run `conv2d_resample` (read at call time) with implementation `name` inside the block; restored after."""
    global RESAMPLE_IMPL
    saved, RESAMPLE_IMPL = RESAMPLE_IMPL, check_resample_impl(name)
    try:
        yield
    finally:
        RESAMPLE_IMPL = saved


_INDEPENDENT_ROWS = threading.local()  # `.on` inside `independent_rows()`, per thread (a worker may run two shards)


@contextlib.contextmanager
def independent_rows(enabled: bool = True) -> Iterator[None]:
    """Inside the block, on CPU in fp32, the layers compute each sample of a batch of two or more bitwise as in any
    other such batch, whatever its size, order and other samples (tests/test_cpu_step_shortcuts.py).

    Measured on torch 2.14's CPU kernels, one thread: convolutions of two or more samples (oneDNN, forward and
    backward) are; a single sample's are not (the backward picks other kernels for small inputs, whatever runs the
    forward), nor are matrix products whose rows are samples (the BLAS kernel depends on the row count: 1, 2-10,
    11+ differ), nor 1x1 convolutions (another kernel from 16 samples). So here the styles' and demodulation's
    products are row by row (`row_products`) and plain convolutions always run on oneDNN; callers keep batches at
    two or more samples (`ganinv.inversion.batch.invert_batch` inverts a lone image beside a copy of itself).
    `enabled=False` turns it off inside the block (statistics over many samples, such as `w_avg`)."""
    saved, _INDEPENDENT_ROWS.on = getattr(_INDEPENDENT_ROWS, "on", False), enabled
    try:
        yield
    finally:
        _INDEPENDENT_ROWS.on = saved


def rows_independent(x: torch.Tensor) -> bool:
    """Whether `x`'s samples are computed independently here (`independent_rows` on, a CPU fp32 tensor)."""
    return getattr(_INDEPENDENT_ROWS, "on", False) and x.device.type == "cpu" and x.dtype == torch.float32


def row_products(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`a [N, K] @ b [K, M]` as N products of one row each (one batched product): each row's result is the same
    in any batch, unlike one [N, K] product whose kernel depends on N."""
    return torch.bmm(a.unsqueeze(1), b.expand(a.shape[0], *b.shape)).squeeze(1)


_FROZEN_DERIVED = WeakIdKeyDictionary()  # weight -> {name: ((version, data_ptr), value)}


def frozen_derived(weight: torch.Tensor, name: str, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`compute(weight)`, remembered while `weight` is the same unchanged tensor that needs no gradient.

    Inversion re-derived the same things from frozen generator weights at every step (demodulation energies,
    transposed upsampling kernels): ~5 % of a CPU step at 64 px (BENCHMARKS.md, "CPU per-image step"). The value is
    the same op on the same values, so results are bitwise unchanged. Computed afresh where the weight trains (it
    needs a gradient), under compilation (the graph folds constants itself), in inference mode (its tensors could
    not be saved for a later backward) and for inference tensors (no version counter)."""
    if (torch.compiler.is_compiling()  # first: dynamo cannot trace the inference checks
            or weight.requires_grad or weight.is_inference() or torch.is_inference_mode_enabled()):
        return compute(weight)
    entries = _FROZEN_DERIVED.setdefault(weight, {})
    state = (weight._version, weight.data_ptr())  # an in-place change bumps the version; `.data = ...` moves the data
    seen, value = entries.get(name, (None, None))
    if seen != state:
        value = compute(weight)
        entries[name] = (state, value)
    return value


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """A normalised 2D FIR filter `[k, k]` from 1D taps (outer product, sum 1)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def bias_act(x: torch.Tensor, b: torch.Tensor | None, *, act: str = "linear", gain: float | None = None,
             clamp: float | None = None) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply `linear` or `lrelu` (slope 0.2), scale by `gain`, clamp to +-clamp."""
    if b is not None:
        x = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
        gain = LRELU_GAIN if gain is None else gain
    elif act != "linear":
        raise ValueError(f"activation {act!r} is not supported; use 'linear' or 'lrelu'")
    if gain is not None and gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0 and not _within(x, clamp):
        x = x.clamp(-clamp, clamp)
    return x


def _within(x: torch.Tensor, bound: float) -> bool:
    """True when every value of CPU tensor `x` is already in [-bound, bound] (not NaN), so clamping is the identity,
    forward and backward (its gradient mask is all ones): one min/max pass instead of the clamp and its backward's
    comparisons and select, ~7 % of a CPU inversion step at 64 px (BENCHMARKS.md, "CPU per-image step"). False on
    other devices (the check would wait for the device) and under compilation (data-dependent branch)."""
    if x.device.type != "cpu" or torch.compiler.is_compiling() or x.numel() == 0:
        return False
    low, high = torch.aminmax(x.detach())
    return bool(low >= -bound) and bool(high <= bound)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, *, up: int = 1, down: int = 1,
              padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad (x0, x1, y0, y1; negative crops), FIR-filter, downsample by striding.

    `f` is a symmetric 2D filter `[k, k]`; `gain` multiplies its sum (up**2 keeps the mean when upsampling).
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = _fir(pad_or_crop(x, padding), f, gain)
    return x[:, :, ::down, ::down] if down > 1 else x


def pad_or_crop(x: torch.Tensor, padding: Sequence[int]) -> torch.Tensor:
    """Zero-pad `[N, C, H, W]` by `(x0, x1, y0, y1)`; negative values crop instead."""
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    return x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]


def _fir(x: torch.Tensor, f: torch.Tensor, gain: float) -> torch.Tensor:
    """Valid-mode depthwise filtering with the (flipped, i.e. truly convolved) 2D filter `f * gain`."""
    c = x.shape[1]
    if RESAMPLE_IMPL == "separable":
        taps = f.sum(dim=0).flip(0).to(x.dtype) * math.sqrt(gain)  # f = outer(taps, taps)
        x = F.conv2d(x, taps.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(x, taps.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    weight = (f * gain).to(x.dtype).flip([0, 1])
    return F.conv2d(x, weight[None, None].expand(c, 1, *f.shape), groups=c)


def _compose_kernel(w: torch.Tensor, f: torch.Tensor, gain: float) -> torch.Tensor:
    """Full 2D convolution of every `[kh, kw]` kernel of `w [A, B, kh, kw]` with the FIR `f * gain`.

    Computed as one matrix product with the `[kh*kw, (kh+fk-1)*(kw+fk-1)]` matrix of the convolution (the full
    convolution of each unit kernel with f): the same products as convolving the A*B kernels one by one, in a form
    whose layout does not depend on the (possibly symbolic, under compilation) number of kernels."""
    a, b, kh, kw = w.shape
    fk = f.shape[-1]
    units = torch.eye(kh * kw, dtype=w.dtype, device=w.device).reshape(kh * kw, 1, kh, kw)
    matrix = F.conv2d(units, (f * gain).to(w.dtype).flip([0, 1])[None, None], padding=fk - 1)
    return (w.reshape(a * b, kh * kw) @ matrix.reshape(kh * kw, -1)).reshape(a, b, kh + fk - 1, kw + fk - 1)


def _subpixel_upsample_conv(x: torch.Tensor, kernel: torch.Tensor, groups: int) -> torch.Tensor:
    """`conv_transpose2d(x, kernel, stride=2)` cropped by 2 on each side (what the composite path computes for a 3x3
    convolution with a 4-tap FIR and padding 1), as one 3x3 convolution and a pixel shuffle.

    `kernel [G*I, O/G, 6, 6]` (transposed-conv layout). Output pixel 2m + r only meets taps r, r + 2, r + 4 of the 6x6
    kernel, against inputs m + 1, m, m - 1: so phase (ry, rx) is a padded 3x3 cross-correlation with the taps
    `kernel[..., ry::2, rx::2]` flipped. Stacking the 4 phases as output channels gives one ordinary convolution.
    """
    gi, opg, kh, kw = kernel.shape
    assert (kh, kw) == (6, 6), "subpixel upsampling expects the composed 6x6 kernel"
    k = kernel.reshape(groups, gi // groups, opg, 6, 6).transpose(1, 2)  # [G, O/G, I, 6, 6], conv2d layout
    phases = [k[..., ry::2, rx::2].flip([-2, -1]) for ry in (0, 1) for rx in (0, 1)]
    weight = torch.stack(phases, dim=2).reshape(groups * opg * 4, gi // groups, 3, 3)  # channel = o * 4 + phase
    return F.pixel_shuffle(F.conv2d(x, weight, padding=1, groups=groups), 2)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample by `up` with the FIR filter `f`, keeping the image size exactly `up` times the input."""
    k = f.shape[-1]
    p0, p1 = (k + up - 1) // 2, (k - up) // 2
    if RESAMPLE_IMPL != "fir" and p0 == p1 + up - 1:
        # Zero-stuffing then filtering is a depthwise transposed convolution with the filter (symmetric, so no
        # flip) whose padding crops the symmetric excess: one op that keeps x's memory format (channels_last
        # stays channels_last, so the image skip path matches toRGB's layout and needs no conversions).
        c = x.shape[1]
        weight = (f * (up * up)).to(x.dtype)[None, None].expand(c, 1, k, k)
        return F.conv_transpose2d(x, weight, stride=up, padding=k - 1 - p0, groups=c)
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """Downsample by `down` after FIR filtering with `f`."""
    k = f.shape[-1]
    p0, p1 = (k - down + 1) // 2, (k - down) // 2
    return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, *, up: int = 1,
                    down: int = 1, padding: int = 0, groups: int = 1) -> torch.Tensor:
    """2D convolution (cross-correlation with `w [O, I/groups, kh, kw]`) fused with FIR up- or downsampling.

    Upsampling runs as a stride-2 transposed convolution followed by the FIR filter; downsampling as the FIR filter
    followed by a stride-2 convolution. Both match filtering the zero-stuffed (or full-rate) signal exactly.
    """
    out_channels, in_per_group, kh, kw = w.shape
    if up > 1:
        fk = f.shape[-1]
        px0 = padding + (fk + up - 1) // 2 - (kw - 1)
        px1 = padding + (fk - up) // 2 - (kw - up)
        pt = max(min(-px0, -px1), 0)
        if groups == 1:  # contiguous, as the convolution wants it (bitwise the same as the transposed view)
            wt = frozen_derived(w, "transposed",
                                lambda w: w.transpose(0, 1).clone(memory_format=torch.contiguous_format))
        else:
            wt = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
            wt = wt.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        # As in StyleGAN2-ADA, upsampling layers apply `w` as a true convolution (the transposed op's convention).
        if RESAMPLE_IMPL == "subpixel" and up == 2 and fk == 4 and kh == kw == 3 and padding == 1:
            return _subpixel_upsample_conv(x, _compose_kernel(wt, f, up * up), groups)
        if RESAMPLE_IMPL in ("composite", "subpixel"):
            # Zero-stuff, convolve with w, then with f  ==  zero-stuff, convolve with (w * f): one op.
            start = fk - 1 - px0
            h, w_ = ((n - 1) * up + kw + px0 + px1 - fk + 1 for n in x.shape[2:])
            kernel = _compose_kernel(wt, f, up * up)
            if start >= 0 and (x.shape[2] - 1) * up + kernel.shape[-1] - 2 * start == h == w_:
                # A symmetric crop is the transposed convolution's own padding: no strided view of the output,
                # whose backward (a zero-filled NCHW buffer) costs two layout copies under channels_last.
                return F.conv_transpose2d(x, kernel, stride=up, padding=start, groups=groups)
            y = F.conv_transpose2d(x, kernel, stride=up, groups=groups)
            return y[:, :, start:start + h, start:start + w_]
        x = F.conv_transpose2d(x, wt, stride=up, padding=pt, groups=groups)
        return upfirdn2d(x, f, padding=(px0 + pt, px1 + pt, px0 + pt, px1 + pt), gain=up * up)
    if down > 1:
        fk = f.shape[-1]
        p0, p1 = padding + (fk - down + 1) // 2, padding + (fk - down) // 2
        if RESAMPLE_IMPL in ("composite", "subpixel"):
            # FIR then strided conv  ==  strided conv with the composed kernel (f is symmetric).
            x = F.pad(x, [p0, p1, p0, p1])
            return F.conv2d(x, _compose_kernel(w, f, 1.0), stride=down, groups=groups)
        x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
        return F.conv2d(x, w, stride=down, groups=groups)
    if rows_independent(x) and x.ndim == 4:  # oneDNN for any batch and kernel size (`independent_rows`)
        return torch.ops.aten.mkldnn_convolution(x, w.to(x.dtype), None, [padding, padding], [1, 1], [1, 1], groups)
    return F.conv2d(x, w, padding=padding, groups=groups)


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalized learning rate and an optional learning-rate multiplier (mapping uses 0.01)."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        if rows_independent(x) and x.ndim == 2:
            return bias_act(row_products(x, w.t()), b, act=self.activation)
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Plain (unmodulated) convolution with equalized learning rate and optional FIR resampling; used by D."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1, conv_clamp: float | None = None,
                 resample_filter: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down, padding=self.padding)
        act_gain = (LRELU_GAIN if self.activation == "lrelu" else 1.0) * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = None if self.bias is None else self.bias.to(x.dtype)
        return bias_act(x, b, act=self.activation, gain=act_gain, clamp=clamp)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square (StyleGAN's pixel norm of z)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class SampleDelta(NamedTuple):
    """A per-sample change of one modulated layer (pivotal tuning, `ganinv.inversion.pivotal`): sample n's weight is
    `weight + (up[n] @ down[n])` (rank r, `down` flattened over its input channel and kernel axes) and its bias
    `bias + bias_delta[n]`. Either part may be None."""

    up: torch.Tensor | None = None          # [N, O, r]
    down: torch.Tensor | None = None        # [N, r, I, k, k]
    bias_delta: torch.Tensor | None = None  # [N, O]


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *,
                     noise: torch.Tensor | None = None, up: int = 1, padding: int = 0,
                     resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                     fused_modconv: bool = True, delta: SampleDelta | None = None,
                     gain: torch.Tensor | float | None = None) -> torch.Tensor:
    """Modulated convolution, StyleGAN2 eq. 1-3: scale input channels by `styles [N, I]`, convolve with
    `weight [O, I, k, k]`, and (demodulate) rescale each output channel to unit expected norm.

    `fused_modconv=True` builds per-sample weights and runs one grouped convolution (fast for small batches);
    `False` scales activations before and after a shared convolution (fast for large batches). Both are exact.
    `delta`: per-sample low-rank weight changes (its `up`/`down`; the bias part is the caller's): fused, they are
    added to the per-sample weights; unfused, the shared convolution is followed by a rank-r grouped one, and the
    demodulation coefficients of `weight + up @ down` are computed in factored form.
    `gain` (a scalar, or a 0-d tensor such as StyleGAN3's input gain) multiplies the output; it is folded into the
    per-sample weights, the demodulation coefficients or the styles, so it costs no pass over the activations.
    """
    n = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    low_rank = delta is not None and delta.up is not None
    if x.dtype == torch.float16 and demodulate:
        if low_rank:
            raise NotImplementedError("per-sample weight deltas run in fp32 or bf16, not in fp16 blocks")
        # Pre-normalize to keep fp16 away from overflow; demodulation undoes the scale.
        weight = weight * (1 / math.sqrt(in_channels * kh * kw)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    if not fused_modconv:
        dcoefs = _demodulation_coefficients(weight, styles, delta if low_rank else None) if demodulate else None
        if gain is not None and demodulate:
            dcoefs = dcoefs * gain
        elif gain is not None:
            styles = styles * gain
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        y = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding)
        if low_rank:
            y = y + _low_rank_conv(x, delta, resample_filter, up=up, padding=padding)
        if demodulate:
            y = y * dcoefs.to(y.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            y = y + noise.to(y.dtype)
        return y

    w = weight.unsqueeze(0)
    if low_rank:
        w = w + torch.einsum("nor,nrikl->noikl", delta.up, delta.down)
    w = w * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    if gain is not None:
        w = w * gain
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), resample_filter, up=up, padding=padding, groups=n)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def _low_rank_conv(x: torch.Tensor, delta: SampleDelta, f: torch.Tensor | None, *, up: int,
                   padding: int) -> torch.Tensor:
    """`conv(x[n], up[n] @ down[n])` for every sample: the rank-r convolution `down[n]` as one grouped convolution
    (N groups of r output channels), then `up[n]` mixes its r channels into O (convolution is linear in the weight,
    and resampling acts on each output channel alone, so the mixing can come after it)."""
    n, r = delta.down.shape[:2]
    down = delta.down.reshape(n * r, *delta.down.shape[2:]).to(x.dtype)
    h = conv2d_resample(x.reshape(1, -1, *x.shape[2:]), down, f, up=up, padding=padding, groups=n)
    return torch.einsum("nor,nrhw->nohw", delta.up.to(x.dtype), h.reshape(n, r, *h.shape[2:]))


def _demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor,
                               delta: SampleDelta | None = None) -> torch.Tensor:
    """`[N, O]` = 1 / sqrt(sum over i, k of (weight[o, i, k] * styles[n, i])^2 + 1e-8), in fp32 (StyleGAN2 eq. 3).

    The sum factors as `styles^2 @ sum_k(weight^2)^T`: an `[N, I] x [I, O]` product instead of building the
    `[N, O, I, k, k]` per-sample weights (0.6 GB per 512-channel layer at batch 64, kept for backward). With a
    low-rank `delta` the weight is `weight + U D` (U = up[n], D = down[n] flattened): the square expands into the
    same term, `2 * sum_r U[o, r] (W S D^T)[o, r]` and `U (D S D^T) U^T` on the diagonal, S = diag(styles^2)
    repeated over the kernel taps; all small products.
    """
    with full_precision(styles):
        s2 = styles.float().square()  # [N, I]
        energy = frozen_derived(weight, "energy", lambda w: w.float().square().sum(dim=[2, 3]))  # [O, I]
        total = row_products(s2, energy.t()) if rows_independent(s2) else s2 @ energy.t()
        if delta is not None:
            n, r = delta.down.shape[:2]
            down = delta.down.float().reshape(n, r, -1)  # [N, r, I*k*k]
            scaled = (delta.down.float() * s2.reshape(n, 1, -1, 1, 1)).reshape(n, r, -1)
            up = delta.up.float()  # [N, O, r]
            cross = scaled @ weight.float().reshape(weight.shape[0], -1).t()  # [N, r, O]
            gram = scaled @ down.transpose(1, 2)  # [N, r, r]
            total = total + 2 * (up * cross.transpose(1, 2)).sum(dim=2)
            total = total + ((up @ gram) * up).sum(dim=2)
            total = total.clamp_min(0)  # a sum of squares; the expansion may round a hair below 0
        return (total + 1e-8).rsqrt()
