"""The StyleGAN2(-ADA) generator, written from the papers (Karras et al. 2020a, "Analyzing and Improving the Image
Quality of StyleGAN"; 2020b, "Training Generative Adversarial Networks with Limited Data").

Module names, parameter names and buffers match the official StyleGAN2-ADA networks, so an official `G_ema`
state dict loads with `load_state_dict`, and the constructor takes the official `init_kwargs`. Only the `skip`
generator architecture (config-f, used by every released StyleGAN2-ADA model) is implemented.

Shapes: `z [N, z_dim]`, `c [N, c_dim]`, `ws [N, num_ws, w_dim]`, images `[N, C, H, W]` in about [-1, 1].
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ganinv.generators.base import StyleGeneratorBase
from ganinv.generators.layers import (
    FullyConnectedLayer,
    SampleDelta,
    bias_act,
    modulated_conv2d,
    normalize_2nd_moment,
    setup_filter,
    upsample2d,
    LRELU_GAIN,
)
from ganinv.utils.precision import full_precision

SUPPORTED_ARCHITECTURES = ("skip",)
NOISE_MODES = ("const", "random", "none")


class MappingNetwork(nn.Module):
    """z (and optional class c) -> w through `num_layers` dense layers; tracks `w_avg` for truncation."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995,
                 **unused: Any):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, skip_w_avg_update: bool = False,
                update_emas: bool | None = None) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            assert z is not None and z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}]"
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            assert c is not None and c.ndim == 2 and c.shape[1] == self.c_dim, f"c must be [N, {self.c_dim}]"
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        update = self.training and not skip_w_avg_update if update_emas is None else update_emas
        if self.w_avg_beta is not None and update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling x2), per-pixel noise, bias and leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None,
                 channels_last: bool = False):
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = LRELU_GAIN if activation == "lrelu" else 1.0
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", fused_modconv: bool = True,
                gain: float = 1, noise: torch.Tensor | None = None, delta: SampleDelta | None = None) -> torch.Tensor:
        """`noise` overrides the layer's own noise input: `[N, 1, res, res]` (unscaled, as `noise_const`).
        `delta`: per-sample changes of this layer's weight and bias (pivotal tuning)."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        with full_precision(w):  # styles steer every weight of the layer: keep them fp32 under autocast
            styles = self.affine(w.float())
        layer_noise = None
        if self.use_noise and noise is not None:
            layer_noise = noise * self.noise_strength
        elif self.use_noise and noise_mode == "random":
            layer_noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution],
                                      device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            layer_noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=layer_noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, fused_modconv=fused_modconv, delta=delta)
        x = _add_bias_delta(x, delta)
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=act_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None, channels_last: bool = False):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True,
                delta: SampleDelta | None = None) -> torch.Tensor:
        with full_precision(w):
            styles = self.affine(w.float()) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv, delta=delta)
        x = _add_bias_delta(x, delta)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


def _add_bias_delta(x: torch.Tensor, delta: SampleDelta | None) -> torch.Tensor:
    """x plus each sample's bias change `[N, O]` (before the layer's own bias and activation: the same sum)."""
    if delta is None or delta.bias_delta is None:
        return x
    return x + delta.bias_delta.to(x.dtype).reshape(*delta.bias_delta.shape, 1, 1)


class SynthesisBlock(nn.Module):
    """One resolution: (constant input | upsampling conv0), conv1, and a toRGB output added to the upsampled image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None, use_fp16: bool = False, fp16_channels_last: bool = False,
                 **layer_kwargs: Any):
        super().__init__()
        if architecture not in SUPPORTED_ARCHITECTURES:
            raise ValueError(f"synthesis architecture {architecture!r} is not supported: ganinv implements "
                             f"{SUPPORTED_ARCHITECTURES} (config-f and every released StyleGAN2-ADA model)")
        self.in_channels, self.w_dim, self.resolution = in_channels, w_dim, resolution
        self.img_channels, self.is_last, self.architecture, self.use_fp16 = img_channels, is_last, architecture, use_fp16
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.is_first = in_channels == 0
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, **layer_kwargs)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.num_torgb += 1

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, force_fp32: bool = False,
                fused_modconv: bool | None = None, noise_mode: str = "const",
                noise: Sequence[torch.Tensor] | None = None, channels_last: bool = False,
                deltas: Mapping[str, SampleDelta] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`deltas`: per-sample changes of this block's layers, by name (`conv0`, `conv1`, `torgb`)."""
        assert ws.shape[1] == self.num_conv + self.num_torgb, "ws must hold one w per layer of this block"
        deltas = deltas or {}
        # Indexed, not iterated: torch 2.11's dynamo gives up on the whole compiled block at `next(it) if it else
        # None` (StopIteration) and compiles each layer as its own frame instead (tests/test_regional_compile.py).
        layer_ws = ws.unbind(dim=1)  # [conv0,] conv1, torgb
        layer_noise = list(noise) if noise is not None else [None] * self.num_conv  # [conv0,] conv1
        use_fp16 = self.use_fp16 and not force_fp32 and ws.device.type == "cuda"
        dtype = torch.float16 if use_fp16 else torch.float32
        if fused_modconv is None:
            fused_modconv = (not self.training) and (dtype == torch.float32 or int(ws.shape[0]) == 1)
        kwargs = dict(fused_modconv=fused_modconv, noise_mode=noise_mode)
        memory_format = torch.channels_last if channels_last else torch.preserve_format
        if self.is_first:  # a bool, not `in_channels == 0`: compiled regions guard on attribute values
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1]).to(memory_format=memory_format)
        else:
            x = self.conv0(x.to(dtype=dtype, memory_format=memory_format), layer_ws[0], noise=layer_noise[0],
                           delta=deltas.get("conv0"), **kwargs)
        x = self.conv1(x, layer_ws[-2], noise=layer_noise[-1], delta=deltas.get("conv1"), **kwargs)
        if img is not None:
            with full_precision(img):  # the image accumulates over all blocks: keep its skip path fp32
                img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, layer_ws[-1], fused_modconv=fused_modconv, delta=deltas.get("torgb")).to(torch.float32)
        img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws -> image: a learned 4x4 constant grown to `img_resolution` by one block per octave."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs: Any):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        self.channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = self.channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(in_channels, self.channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last, use_fp16=res >= fp16_resolution,
                                   **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)
        # ws row k feeds conv k (0 = b4.conv1, 1 = b8.conv0, ...); the last row only the final toRGB.
        self.ws_resolutions = [layer.resolution for layer in self.noise_layers()] + [img_resolution]

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def compile_regions(self) -> list[SynthesisBlock]:
        """The repeated modules regional compilation compiles once (`ganinv.utils.regional_compile`): the blocks,
        which differ only in shapes, so blocks of equal width share one graph at any resolution."""
        return self.blocks()

    def noise_layers(self) -> list[SynthesisLayer]:
        """Synthesis conv layers in forward order (0 = `b4.conv1`, 1 = `b8.conv0`, ...); toRGB excluded."""
        return [layer for block in self.blocks() for layer in (getattr(block, "conv0", None), block.conv1)
                if layer is not None]

    def modulated_layers(self) -> dict[str, SynthesisLayer | ToRGBLayer]:
        """Every modulated layer by name (`b4.conv1`, `b4.torgb`, `b8.conv0`, ...), the keys `forward`'s `deltas`
        take; forward order within a block."""
        return {f"b{block.resolution}.{name}": getattr(block, name) for block in self.blocks()
                for name in ("conv0", "conv1", "torgb") if hasattr(block, name)}

    def style_layers(self) -> dict[int, SynthesisLayer]:
        """ws row -> the conv layer whose `affine` turns it into styles (toRGB layers excluded): row k is conv k."""
        return dict(enumerate(self.noise_layers()))

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", fused_modconv: bool | None = None,
                force_fp32: bool = False, noise: Sequence[torch.Tensor] | None = None,
                channels_last: bool = False, deltas: Mapping[str, SampleDelta] | None = None) -> torch.Tensor:
        """`noise`: optional per-sample noise inputs, one `[N, 1, res, res]` per conv layer (see `noise_layers`).
        `channels_last`: NHWC activations (what GPU tensor cores want); the image comes back in the same layout.
        `deltas`: per-sample weight/bias changes by layer name (see `modulated_layers`; pivotal tuning)."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        if deltas and not set(deltas) <= set(self.modulated_layers()):
            unknown, known = sorted(set(deltas) - set(self.modulated_layers())), list(self.modulated_layers())
            raise ValueError(f"deltas name layers this generator lacks: {unknown}; its modulated layers are {known}")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = noise_idx = 0
        for block in self.blocks():
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            block_noise = None if noise is None else noise[noise_idx:noise_idx + block.num_conv]
            block_deltas = {name.split(".", 1)[1]: d for name, d in (deltas or {}).items()
                            if name.split(".", 1)[0] == f"b{block.resolution}"}
            x, img = block(x, img, block_ws, force_fp32=force_fp32, fused_modconv=fused_modconv,
                           noise_mode=noise_mode, noise=block_noise, channels_last=channels_last,
                           deltas=block_deltas)
            w_idx += block.num_conv
            noise_idx += block.num_conv
        return img


class Generator(StyleGeneratorBase):
    """StyleGAN2-ADA generator: `G(z, c) = synthesis(mapping(z, c))`.

    Takes the official constructor arguments (`init_kwargs`): `z_dim, c_dim, w_dim, img_resolution, img_channels,
    mapping_kwargs={num_layers, lr_multiplier, ...}, synthesis_kwargs={channel_base, channel_max, num_fp16_res,
    conv_clamp, architecture, ...}`. Synthesis kwargs may also be given flat, as in the StyleGAN3 code base.
    Unlike the official code, `synthesis` defaults to `noise_mode='const'` (deterministic: what inversion wants).
    """

    family = "stylegan2"

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict | None = None, synthesis_kwargs: dict | None = None, **flat_synthesis_kwargs):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = {**dict(synthesis_kwargs or {}), **flat_synthesis_kwargs}
        self.init_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, mapping_kwargs=mapping_kwargs,
                                synthesis_kwargs=synthesis_kwargs)
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)
