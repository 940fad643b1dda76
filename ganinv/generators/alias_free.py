"""Signal processing of the alias-free generator (Karras et al. 2021, "Alias-Free Generative Adversarial Networks"):
Kaiser-windowed low-pass filter design, FIR up- and down-sampling, and the filtered leaky ReLU (Sec. 3.2, Fig. 4b).

A feature map is the sampling, at rate `s`, of a continuous signal band-limited below `s / 2`. A pointwise
nonlinearity creates frequencies above that limit, so it is applied to a temporarily upsampled signal: insert zeros
to reach `up * s`, low-pass at the input cutoff (which interpolates), apply the leaky ReLU, low-pass at the output
cutoff and keep every `down`-th sample (Sec. 3.2: "filtered nonlinearity").

Filters are 1D (separable: the same taps along x and along y) or 2D (config R's radially symmetric "jinc" filters,
downsampling only). Both are symmetric, but the code convolves (not correlates) all the same.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ganinv.generators.layers import pad_or_crop


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, *,
                          radial: bool = False) -> torch.Tensor | None:
    """A low-pass FIR filter of `numtaps` taps at sampling rate `fs`: pass below `cutoff`, transition band `width`.

    Separable (`radial=False`): `[numtaps]` taps, the ideal low-pass (a sinc) under a Kaiser window whose beta gives
    the attenuation the transition band allows (Kaiser's formulas, as `scipy.signal.firwin` implements them), DC gain 1.
    Radial: `[numtaps, numtaps]`, the ideal disc low-pass (a jinc, `J1(2 pi fc r) / (pi r)`) under the outer product of
    the same 1D Kaiser window, sum 1 (the paper's config R, Sec. 3.3 and App. F). `None` for one tap (identity).
    """
    import scipy.signal  # here: scipy.signal takes a second to import, and only StyleGAN3's constructor needs it
    import scipy.special

    if numtaps < 1:
        raise ValueError(f"a filter needs at least one tap, got numtaps={numtaps}")
    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs), dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(x[:, None], x[None, :])
    safe_r = np.where(r > 0, r, 1.0)
    jinc = np.where(r > 0, scipy.special.j1(2 * np.pi * cutoff * safe_r) / (np.pi * safe_r), cutoff)  # limit at 0
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f = jinc * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


def _depthwise_kernel(taps: torch.Tensor, channels: int, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """1D taps as a depthwise kernel along `dim` (2 = y, 3 = x): `[C, 1, K, 1]` or `[C, 1, 1, K]`."""
    shape = [1, 1, 1, 1]
    shape[dim] = taps.numel()
    return taps.to(dtype).reshape(shape).expand(channels, 1, *shape[2:])


def _upsample_axis(x: torch.Tensor, taps: torch.Tensor, up: int, pad0: int, pad1: int, dim: int) -> torch.Tensor:
    """Along `dim`: insert `up - 1` zeros after every sample, pad by `pad0`/`pad1` (negative crops), convolve `taps`.

    A stride-`up` transposed convolution computes the full convolution `z` of the zero-stuffed signal with `taps`
    without multiplying the zeros; output j of the padded valid convolution is `z[j + K - 1 - pad0]`.
    """
    n, k = x.shape[dim], taps.numel()
    stride = (up, 1) if dim == 2 else (1, up)
    z = F.conv_transpose2d(x, _depthwise_kernel(taps, x.shape[1], dim, x.dtype), stride=stride, groups=x.shape[1])
    start, length = k - 1 - pad0, n * up + pad0 + pad1 - k + 1
    lo, hi = max(0, -start), max(0, start + length - z.shape[dim])
    if lo or hi:
        z = F.pad(z, [lo, hi, 0, 0] if dim == 3 else [0, 0, lo, hi])
    return z.narrow(dim, start + lo, length)


def upsample(x: torch.Tensor, f: torch.Tensor | None, up: int, padding: Sequence[int]) -> torch.Tensor:
    """Zero-insertion upsampling by `up` in x and y, padding `(x0, x1, y0, y1)` (negative values crop), then the
    separable filter `f [K]` with gain `up` per axis, so that a constant signal keeps its value (DC gain `up**2`).
    `f=None` (one tap, `up` must be 1) only pads or crops."""
    px0, px1, py0, py1 = padding
    if f is None:
        if up != 1:
            raise ValueError(f"upsampling by {up} needs a filter")
        return pad_or_crop(x, padding)
    if f.ndim != 1:
        raise ValueError("upsampling filters are separable (1D taps)")
    taps = f * up
    return _upsample_axis(_upsample_axis(x, taps, up, px0, px1, dim=3), taps, up, py0, py1, dim=2)


def downsample(x: torch.Tensor, f: torch.Tensor | None, down: int) -> torch.Tensor:
    """Valid convolution with `f` (`[K]` separable or `[K, K]` radial), keeping every `down`-th sample in x and y.
    `f=None` (one tap) only decimates."""
    if f is None:
        return x[:, :, ::down, ::down] if down > 1 else x
    channels = x.shape[1]
    if f.ndim == 1:
        taps = f.flip(0)
        x = F.conv2d(x, _depthwise_kernel(taps, channels, 3, x.dtype), stride=(1, down), groups=channels)
        return F.conv2d(x, _depthwise_kernel(taps, channels, 2, x.dtype), stride=(down, 1), groups=channels)
    kernel = f.flip([0, 1]).to(x.dtype)[None, None].expand(channels, 1, *f.shape)
    return F.conv2d(x, kernel, stride=down, groups=channels)


def filtered_lrelu(x: torch.Tensor, up_filter: torch.Tensor | None, down_filter: torch.Tensor | None,
                   bias: torch.Tensor, *, up: int = 1, down: int = 1, padding: Sequence[int] = (0, 0, 0, 0),
                   gain: float = math.sqrt(2), slope: float = 0.2, clamp: float | None = None) -> torch.Tensor:
    """The filtered leaky ReLU (Sec. 3.2): add `bias [C]`, upsample by `up` (`upsample`), leaky ReLU with `slope`
    scaled by `gain`, clamp to `[-clamp, clamp]`, low-pass and decimate by `down` (`downsample`).

    `x [N, C, H, W]` -> `[N, C, (H * up + y0 + y1 - Ku + 1 - Kd) // down + 1, ...]`; `slope=1, gain=1` is linear
    (the ToRGB layer: bias and clamp only).
    """
    x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    x = upsample(x, up_filter, up, padding)
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return downsample(x, down_filter, down)
