"""The StyleGAN3 generator (configs T and R), written from the paper (Karras et al. 2021, "Alias-Free Generative
Adversarial Networks") and its equations, in plain PyTorch.

Structure (Sec. 3, Fig. 4): the mapping network of StyleGAN2 (2 layers by default) gives `num_ws = num_layers + 2`
ws rows. Row 0 steers `SynthesisInput`: Fourier features (a fixed set of frequencies and phases, rotated and
translated per image by an affine of w, Sec. 3.1 and App. F) on a grid with a margin around the image. Rows
1..num_layers+1 steer the layers `L{i}_{size}_{channels}`: a modulated convolution (1x1 in config R, 3x3 in T)
followed by the filtered leaky ReLU (`ganinv.generators.alias_free`), the last one a linear ToRGB. Each layer's
cutoff `fc` and stopband `ft` follow the paper's schedule (Sec. 3.2, Fig. 4c): geometric from `first_cutoff` /
`first_stopband` to `img_resolution / 2` / `last_stopband_rel * img_resolution / 2` over the first
`num_layers - num_critical` layers, constant over the last `num_critical` (critically sampled) ones.

Constructor arguments, parameter and buffer names follow the official networks, so an official `G_ema` state dict
loads with `load_state_dict`; the low-pass filters are buffers of that state dict and the constructor designs the same
ones from the schedule. Shapes: `z [N, z_dim]`, `ws [N, num_ws, w_dim]`, images `[N, C, R, R]` in about [-1, 1].

Choices that differ from the official code in form only: the styles are pre-normalised per image, not over the whole
batch (the factor cancels in demodulation, except against its 1e-8, and an image no longer depends on its batch);
the modulated convolution may run unfused (`fused_modconv=False`, exact); the input grid's transform may be given per
call (`synthesis(ws, transform=...)`) instead of written into the `transform` buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ganinv.generators.alias_free import design_lowpass_filter, filtered_lrelu
from ganinv.generators.base import StyleGeneratorBase
from ganinv.generators.layers import FullyConnectedLayer, modulated_conv2d
from ganinv.generators.stylegan2 import NOISE_MODES, MappingNetwork
from ganinv.utils.precision import full_precision

MAPPING_DEFAULTS = dict(num_layers=2, w_avg_beta=0.998)  # StyleGAN3's mapping: StyleGAN2's with 2 layers


@dataclass(frozen=True)
class LayerSpec:
    """One point of the filter schedule: the signal after layer i (index 0 = the input layer's output)."""

    cutoff: float         # fc, cycles per image: passband edge
    stopband: float       # ft: where attenuation is complete
    sampling_rate: int    # s, a power of two, at least 2 * ft (capped at the image resolution)
    half_width: float     # fh = max(ft, s / 2) - fc: half the transition band
    size: int             # samples per side: s plus the margin, the image size for the last two
    channels: int


def layer_schedule(img_resolution: int, img_channels: int, *, channel_base: int = 32768, channel_max: int = 512,
                   num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                   first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
                   margin_size: int = 10) -> list[LayerSpec]:
    """The paper's per-layer cutoffs, stopbands, sampling rates, sizes and widths (Sec. 3.2 and App. F): `num_layers + 1`
    entries, entry i describing the output of layer i (entry 0 is also the input layer's output)."""
    if num_layers <= num_critical or num_critical < 0:
        raise ValueError(f"num_layers must exceed num_critical >= 0, got {num_layers} and {num_critical}")
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    t = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** t
    stopbands = first_stopband * (last_stopband / first_stopband) ** t
    rates = np.exp2(np.ceil(np.log2(np.minimum(2 * stopbands, img_resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + 2 * margin_size
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum(channel_base / 2 / cutoffs, channel_max))
    channels[-1] = img_channels
    return [LayerSpec(float(c), float(s), int(r), float(h), int(n), int(ch))
            for c, s, r, h, n, ch in zip(cutoffs, stopbands, rates, half_widths, sizes, channels)]


def user_transform(translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> torch.Tensor:
    """`[3, 3]` transform of the input grid that shows the image translated by `translate` (in image widths, x then
    y) and rotated by `rotate` degrees, as the official `gen_images.py` sets `G.synthesis.input.transform` (the inverse
    of the rotation-translation matrix it builds)."""
    angle = math.radians(rotate)
    c, s = math.cos(angle), math.sin(angle)
    m = torch.tensor([[c, s, float(translate[0])], [-s, c, float(translate[1])], [0, 0, 1]], dtype=torch.float64)
    return torch.linalg.inv(m).float()


class SynthesisInput(nn.Module):
    """Fourier features: `channels` sinusoids of fixed frequency and phase, sampled on a `size x size` grid at
    `sampling_rate`, rotated and translated per image by `affine(w)`, mixed by a learned `[C, C]` matrix (Sec. 3.1)."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        # Frequencies: uniform directions, radii bandwidth * exp(-|g|^2 / 4), g ~ N(0, I): dense at low frequencies,
        # all inside the band. Phases uniform over one period.
        g = torch.randn([channels, 2])
        radii = g.norm(dim=1, keepdim=True)
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", g / radii * (-radii.square() / 4).exp() * self.bandwidth)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)
        # w -> (cos, sin, tx, ty) of a per-image rotation and translation; the identity at initialisation.
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))

    def forward(self, w: torch.Tensor, transform: torch.Tensor | None = None) -> torch.Tensor:
        """`w [N, w_dim]` -> features `[N, C, size, size]`; `transform [3, 3]` or `[N, 3, 3]` replaces the buffer."""
        with full_precision(w):  # phases of up to hundreds of cycles: bf16 would scramble them
            frequencies, phases, amplitudes = self._frequencies(w.float(), transform)
            coords = (torch.arange(self.size, device=w.device, dtype=torch.float32) + 0.5 - self.size / 2)
            coords = coords / self.sampling_rate  # pixel centres, in units of the input's sampling period
            fx, fy = frequencies[:, None, None, :, 0], frequencies[:, None, None, :, 1]
            cycles = coords[None, None, :, None] * fx + coords[None, :, None, None] * fy + phases[:, None, None, :]
            features = torch.sin(2 * math.pi * cycles) * amplitudes[:, None, None, :]  # [N, H, W, C]
        mixed = features @ (self.weight / math.sqrt(self.channels)).t()
        return mixed.permute(0, 3, 1, 2)

    def _frequencies(self, w: torch.Tensor, transform: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-image frequencies `[N, C, 2]`, phases `[N, C]` and amplitudes `[N, C]` after the transforms."""
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)  # (cos, sin) of a pure rotation
        cos, sin, tx, ty = t.unbind(dim=1)
        one, zero = torch.ones_like(cos), torch.zeros_like(cos)
        rotation = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=1).reshape(-1, 3, 3)
        translation = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).reshape(-1, 3, 3)
        user = (self.transform if transform is None else transform.to(w.device, torch.float32)).expand(len(w), 3, 3)
        m = rotation @ translation @ user  # maps grid points to where the features are evaluated
        # sin(2 pi (f . (A p + b) + phi)) = sin(2 pi ((f A) . p + f . b + phi))
        phases = self.phases + (self.freqs @ m[:, :2, 2:]).squeeze(2)
        frequencies = self.freqs @ m[:, :2, :2]
        # A user transform may push frequencies past the band: fade them out between fc and s / 2 (no aliasing).
        amplitudes = 1 - (frequencies.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)
        return frequencies, phases, amplitudes.clamp(0, 1)

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


class SynthesisLayer(nn.Module):
    """Modulated convolution + filtered leaky ReLU between two points of the schedule (`is_torgb`: a linear 1x1
    output layer without demodulation or resampling)."""

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool, in_channels: int,
                 out_channels: int, in_size: int, out_size: int, in_sampling_rate: int, out_sampling_rate: int,
                 in_cutoff: float, out_cutoff: float, in_half_width: float, out_half_width: float,
                 conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                 use_radial_filters: bool = False, conv_clamp: float | None = 256, magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.w_dim, self.is_torgb, self.use_fp16 = w_dim, is_torgb, use_fp16
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size, self.out_size = int(in_size), int(out_size)
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta
        self.conv_kernel = 1 if is_torgb else conv_kernel
        # The nonlinearity runs at `lrelu_upsampling` times the higher of the two rates (Sec. 3.2).
        tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.up_factor = int(round(tmp_sampling_rate / in_sampling_rate))
        self.down_factor = int(round(tmp_sampling_rate / out_sampling_rate))
        if in_sampling_rate * self.up_factor != tmp_sampling_rate:
            raise ValueError(f"sampling rates {in_sampling_rate} -> {tmp_sampling_rate} are not an integer ratio")
        up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1

        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", design_lowpass_filter(
            up_taps, in_cutoff, 2 * in_half_width, tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            down_taps, out_cutoff, 2 * out_half_width, tmp_sampling_rate,
            radial=use_radial_filters and not is_critically_sampled))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)

        # Padding of the upsampled signal so that `out_size` samples remain after both filters and decimation; the
        # extra `up` on the low side keeps samples at the centres of their cells (pixels are cell centres, not
        # corners), so input and output grids stay aligned.
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += up_taps + down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        self.padding = [pad_lo, pad_total - pad_lo, pad_lo, pad_total - pad_lo]

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, force_fp32: bool = False, fused_modconv: bool = True,
                update_emas: bool = False) -> torch.Tensor:
        if update_emas:  # training: track E[x^2] of the input, whose inverse root normalises it
            magnitude = x.detach().float().square().mean()
            self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        with full_precision(w):  # styles steer every weight of the layer: keep them fp32 under autocast
            styles = self.affine(w.float())
            if self.is_torgb:
                styles = styles / math.sqrt(self.in_channels * self.conv_kernel ** 2)
            else:  # pre-normalise (cancels in demodulation; keeps fp16 in range), per image
                styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
        if self.use_fp16 and not force_fp32 and x.device.type == "cuda":
            x = x.to(torch.float16)
        elif x.dtype != torch.bfloat16:  # bf16 comes from autocast, which picks the precision itself
            x = x.to(torch.float32)
        weight = self.weight
        if not self.is_torgb:
            weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        x = modulated_conv2d(x, weight, styles, padding=self.conv_kernel - 1, demodulate=not self.is_torgb,
                             fused_modconv=fused_modconv, gain=self.magnitude_ema.rsqrt())
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias, up=self.up_factor,
                              down=self.down_factor, padding=self.padding, gain=1 if self.is_torgb else math.sqrt(2),
                              slope=1 if self.is_torgb else 0.2, clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}x{self.in_size}, out={self.out_channels}x{self.out_size}, "
                f"up={self.up_factor}, down={self.down_factor}, torgb={self.is_torgb}, fp16={self.use_fp16}")


class SynthesisNetwork(nn.Module):
    """ws -> image: `input`, then `num_layers + 1` layers named `L{i}_{out_size}_{out_channels}` as in the official
    code; the image is the last layer's output times `output_scale`."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs: Any):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_layers, self.num_critical, self.output_scale = num_layers, num_critical, output_scale
        self.num_ws = num_layers + 2
        schedule = layer_schedule(img_resolution, img_channels, channel_base=channel_base, channel_max=channel_max,
                                  num_layers=num_layers, num_critical=num_critical, first_cutoff=first_cutoff,
                                  first_stopband=first_stopband, last_stopband_rel=last_stopband_rel,
                                  margin_size=margin_size)
        self.input = SynthesisInput(w_dim, channels=schedule[0].channels, size=schedule[0].size,
                                    sampling_rate=schedule[0].sampling_rate, bandwidth=schedule[0].cutoff)
        self.layer_names = []
        for idx, (spec_in, spec) in enumerate(zip([schedule[0]] + schedule[:-1], schedule)):
            layer = SynthesisLayer(
                w_dim, is_torgb=idx == num_layers, is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=spec.sampling_rate * 2 ** num_fp16_res > img_resolution,
                in_channels=spec_in.channels, out_channels=spec.channels, in_size=spec_in.size, out_size=spec.size,
                in_sampling_rate=spec_in.sampling_rate, out_sampling_rate=spec.sampling_rate,
                in_cutoff=spec_in.cutoff, out_cutoff=spec.cutoff, in_half_width=spec_in.half_width,
                out_half_width=spec.half_width, **layer_kwargs)
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)
        # What each ws row controls, as the power of two nearest the band limit 2 fc of the signal it shapes: row 0
        # the input, row i + 1 the output of layer i (the scale that edits' coarse/middle/fine ranges mean).
        cutoffs = [schedule[0].cutoff] + [spec.cutoff for spec in schedule]
        self.ws_resolutions = [min(2 ** round(math.log2(2 * c)), img_resolution) for c in cutoffs]

    def layers(self) -> list[SynthesisLayer]:
        return [getattr(self, name) for name in self.layer_names]

    def compile_regions(self) -> list[SynthesisLayer]:
        """The modules regional compilation compiles (`ganinv.utils.regional_compile`): the layers, one graph per
        width and resampling kind (spatial sizes and the batch are symbolic; widths are not, and the resampling
        factors and paddings are int attributes: 10 graphs for the 15 layers of config T at 256 px); the input stays
        eager."""
        return self.layers()

    def noise_layers(self) -> list[nn.Module]:
        """StyleGAN3 has no per-pixel noise inputs (Sec. 3: they would break equivariance)."""
        return []

    def style_layers(self) -> dict[int, SynthesisLayer]:
        """ws row -> the modulated convolution reading it: row i + 1 is layer i; the ToRGB layer (last row) and the
        input's geometric affine (row 0: rotation and translation, not a style) are excluded."""
        return {idx + 1: layer for idx, layer in enumerate(self.layers()[:-1])}

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", fused_modconv: bool | None = None,
                force_fp32: bool = False, noise: Sequence[torch.Tensor] | None = None, channels_last: bool = False,
                transform: torch.Tensor | None = None, update_emas: bool = False) -> torch.Tensor:
        """`noise_mode` is accepted for interface parity and ignored (no noise inputs); `noise` must be empty.
        `transform`: a user transform of the input grid (`user_transform`), `[3, 3]` or `[N, 3, 3]`, used instead of
        the `input.transform` buffer. `channels_last`: NHWC activations; the image comes back in the same layout."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise:
            raise ValueError("StyleGAN3 has no noise inputs: pass noise=None (synthesis.noise_layers() is empty)")
        if fused_modconv is None:
            fused_modconv = not self.training  # the official form; unfused is faster for large batches
        ws = ws.to(torch.float32).unbind(dim=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # A tensor of its own, not a view of the input's [N, H, W, C] product: a compiled layer guards on the base of
        # a view input, so the first layer would need a graph of its own ("'NoneType' object has no attribute
        # 'stride'" on the second). One copy of the small input map.
        x = self.input(ws[0], transform=transform).clone(memory_format=memory_format)
        for layer, w in zip(self.layers(), ws[1:]):
            x = layer(x.contiguous(memory_format=memory_format), w, force_fp32=force_fp32,
                      fused_modconv=fused_modconv, update_emas=update_emas)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32).contiguous(memory_format=memory_format)


class Generator(StyleGeneratorBase):
    """StyleGAN3 generator: `G(z, c) = synthesis(mapping(z, c))`.

    Takes the official constructor arguments (`init_kwargs`): `z_dim, c_dim, w_dim, img_resolution, img_channels,
    mapping_kwargs={num_layers, ...}` and flat synthesis kwargs (`channel_base, channel_max, num_layers,
    num_critical, first_cutoff, first_stopband, last_stopband_rel, margin_size, output_scale, num_fp16_res,
    conv_kernel, filter_size, lrelu_upsampling, use_radial_filters, conv_clamp, magnitude_ema_beta`). Config T is the
    default; config R is `conv_kernel=1, use_radial_filters=True` (and twice the channels, as its training runs use).
    """

    family = "stylegan3"

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict | None = None, **synthesis_kwargs: Any):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        self.init_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, mapping_kwargs=mapping_kwargs, **synthesis_kwargs)
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **{**MAPPING_DEFAULTS, **mapping_kwargs})

    @property
    def architecture(self) -> str:
        """'stylegan3-r' for radial filters (config R), else 'stylegan3-t'."""
        return "stylegan3-r" if self.init_kwargs.get("use_radial_filters") else "stylegan3-t"
