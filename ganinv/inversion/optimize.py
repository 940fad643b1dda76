"""Optimization-based inversion ("projection") of a batch of images into a StyleGAN2 generator, in Z, W or W+.

For `space='w'` the algorithm and its defaults are those of the StyleGAN2 projector (Karras et al. 2020, "Analyzing
and Improving the Image Quality of StyleGAN", appendix D; behaviour of the StyleGAN2-ADA `projector.py`):

- start from `w_avg`, the mean of `w_avg_samples` mapped z; `w_std` is those samples' RMS distance to `w_avg`;
- Adam (betas 0.9, 0.999; `betas`) on w and on one noise map per synthesis conv layer, with learning rate
  `initial_learning_rate * ramp(t)`, `t = step / num_steps`: a cosine ramp-down over the last `lr_rampdown_length`
  of the run times a linear ramp-up over the first `lr_rampup_length` (so step 0 has learning rate 0);
- Gaussian noise added to w before synthesis, std `w_std * initial_noise_factor * max(0, 1 - t / noise_ramp_length)^2`,
  which explores early and vanishes after `noise_ramp_length` of the run;
- loss = perceptual distance (VGG LPIPS by default, images area-downsampled to 256 px when larger)
  + `regularize_noise_weight` * the noise maps' multi-scale autocorrelation (`ganinv.losses.noise_regularization`);
- noise maps start N(0, 1) and are renormalised to zero mean and unit variance after every step; synthesis uses
  them as the per-layer noise inputs (`noise_mode='const'` semantics with the optimised maps).

Generators without noise inputs (StyleGAN3: `G.synthesis.noise_layers()` is empty) have no noise maps to optimise
or regularise: `optimize_noise` and `regularize_noise_weight` then have no effect, the result's `noise` is None and
the latent alone reproduces the image; W and W+ start from `w_avg` as for StyleGAN2.

`space='w+'` optimises one w per synthesis layer (Abdal et al. 2019, Image2StyleGAN), starting from `w_avg` in every
layer; `space='z'` optimises z through the mapping network, starting from a per-image N(0, I) draw, with the latent
noise scaled by z's std (1) instead of `w_std`.

Batching: the N targets are N independent problems solved in one forward/backward pass. Each image has its own
latent, its own noise maps (`[N, 1, r, r]`, normalised and regularised over its own pixels), its own random stream
(`torch.Generator` seeded from its own seed, see `PerImageRandom`), and its own Adam moments (Adam is elementwise).
The per-image losses are *summed*, so image i's gradient is exactly the gradient of its own loss; nothing reduces
over the batch. An image therefore follows the same trajectory alone or in any batch (to float rounding of batched
kernels), which `tests/test_inversion_optimize.py` checks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from ganinv.generators.layers import independent_rows
from ganinv.inversion.degradations import Degradation, resolve_degradation
from ganinv.inversion_names import PRECISIONS, PROJECTOR_BETAS, RECORD_DEFAULTS, SPACES, parse_betas
from ganinv.losses.base import ImageLoss
from ganinv.losses.noise_regularization import noise_regularization, normalize_noise_
from ganinv.losses.registry import WeightedLoss, as_weighted_loss, build_loss, canonical_loss_spec
from ganinv.metrics.reconstruction import available_lpips, reconstruction_metrics
from ganinv.utils.cuda_graph import capture_step
from ganinv.utils.precision import autocast
from ganinv.utils.regional_compile import RegionalCompiler, compiled_function, synthesis_regions

W_NOISE_CHUNK = 50  # latent noise is drawn per image in blocks of this many steps (part of the stream's definition)
W_STATS_SEED = 123  # z samples for w_avg / w_std come from this fixed seed, as in the official projector
COMPILE_OPTIONS: dict[str, Any] = dict(dynamic=False)  # scope 'whole': torch.compile(objective, **COMPILE_OPTIONS)
# How `compile=True` compiles (the same computation, it changes only the start-up and the speed):
#   "regional"  the synthesis network's repeated blocks, the loss and the noise regulariser, each compiled once per
#               process with dynamic shapes and reused for every block, resolution and batch
#               (`ganinv.utils.regional_compile`); the default;
#   "whole"     the whole objective (synthesis + loss, forward and backward) as one static graph per problem:
#               more fusion across blocks, a compile that grows with depth and repeats for every new batch shape.
# `build_problem(compile_options=...)` passes torch.compile options over the scope's (e.g. {"dynamic": False}: static
# block graphs, one per resolution and batch), for benchmarks that measure them; defaults change only with a GPU number.
COMPILE_SCOPES = ("regional", "whole")


@dataclass(frozen=True)
class InversionConfig:
    """How an inversion is run; saved next to its results (`to_dict`). Defaults: the StyleGAN2 projector's."""

    space: str = "w"                        # 'z', 'w' (one w for all layers) or 'w+' (one w per layer)
    num_steps: int = 1000
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05      # latent noise std at step 0, as a fraction of w_std
    lr_rampdown_length: float = 0.25        # fraction of the run with a cosine learning-rate ramp-down
    lr_rampup_length: float = 0.05          # fraction of the run with a linear learning-rate ramp-up
    betas: tuple[float, float] = PROJECTOR_BETAS  # Adam's; recorded only when not the projector's (RECORD_DEFAULTS)
    noise_ramp_length: float = 0.75         # fraction of the run over which the latent noise decays to 0
    regularize_noise_weight: float = 1e5
    regularize_encoder_weight: float = 0.0  # weight of mean((latent - init)^2): in-domain term for hybrid inversion
    w_avg_samples: int = 10000
    loss: str = "lpips-vgg"                 # registry spec, e.g. 'lpips-vgg', 'clf-perceptual+0.1*mse'
    optimize_noise: bool = True             # False: keep the generator's own constant noise, ws alone reproduce
    history_every: int = 10                 # record the per-image loss every this many steps (and at the last)
    # Execution (same algorithm, different rounding; see docs/inversion.md "Speed"):
    precision: str = "fp32"                 # 'bf16': autocast synthesis + loss net; latents, Adam, noise maps stay fp32
    channels_last: bool = False             # NHWC activations in synthesis and the loss net (GPU tensor cores)
    compile: bool = False                   # torch.compile synthesis + loss, forward and backward (COMPILE_SCOPES)
    cuda_graph: bool = False                # capture the whole step as one CUDA graph (no-op off CUDA)

    def __post_init__(self):
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.num_steps < 1 or self.history_every < 1 or self.w_avg_samples < 2:
            raise ValueError("num_steps and history_every must be >= 1 and w_avg_samples >= 2, got "
                             f"{self.num_steps}, {self.history_every}, {self.w_avg_samples}")
        object.__setattr__(self, "loss", canonical_loss_spec(self.loss))
        object.__setattr__(self, "betas", parse_betas(self.betas))

    def to_dict(self) -> dict[str, Any]:
        """The record a store keeps: every field but those at a value their absence means (`RECORD_DEFAULTS`)."""
        return {name: value for name, value in dataclasses.asdict(self).items()
                if name not in RECORD_DEFAULTS or value != RECORD_DEFAULTS[name]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "InversionConfig":
        return cls(**values)


@dataclass
class InversionResult:
    """Per-image outcome of `invert`; every tensor's first axis is the image index."""

    ws: torch.Tensor                   # [N, num_ws, w_dim]
    z: torch.Tensor | None             # [N, z_dim] for space 'z', else None
    noise: list[torch.Tensor] | None   # optimised noise maps [N, 1, r, r] in `G.synthesis.noise_layers()` order;
                                       # None without noise optimisation or noise inputs (StyleGAN3)
    images: torch.Tensor               # final reconstructions [N, C, H, W] in about [-1, 1]
    losses: torch.Tensor               # [N] final loss (without regularisers) on the reconstructions
    metrics: dict[str, torch.Tensor]   # each [N]: mse, psnr, ssim, the loss's perceptual terms, lpips-vgg if on disk
    history: torch.Tensor              # [K, N] total per-image loss at `history_steps`
    history_steps: list[int]
    seeds: list[int]
    config: InversionConfig
    init_ws: torch.Tensor | None = None  # [N, num_ws, w_dim] the encoder's output, for hybrid inversion


class PerImageRandom:
    """One CPU `torch.Generator` per image, so image i's random numbers depend only on `seeds[i]`, never on the batch
    it is in. Draws are made on the CPU (identical streams on every device), into pinned memory when `device` is a
    GPU, and copied to `device` asynchronously."""

    def __init__(self, seeds: Sequence[int], device: torch.device):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.device = device

    def randn_host(self, *shape: int) -> torch.Tensor:
        """`[N, *shape]` on the CPU, row i drawn from image i's generator (safe to call from one other thread)."""
        draws = torch.empty((len(self.generators), *shape), pin_memory=self.device.type == "cuda")
        for row, gen in zip(draws, self.generators):
            torch.randn(shape, generator=gen, out=row)
        return draws

    def to_device(self, draws: torch.Tensor) -> torch.Tensor:
        return draws.to(self.device, non_blocking=draws.is_pinned())

    def randn(self, *shape: int) -> torch.Tensor:
        """`[N, *shape]` on `device`, row i drawn from image i's generator."""
        return self.to_device(self.randn_host(*shape))


class _LatentNoise:
    """The projector's exploration noise on the latent, drawn per image in blocks of `W_NOISE_CHUNK` steps.

    Block k + 1 is drawn on a background thread while block k is in use, so the loop never waits for the CPU
    (at batch 64 in W+ a block is ~90 MB of normal draws). The streams are unchanged: the thread makes the same
    draws from each image's generator in the same order, and nothing else draws from them once the loop starts.
    """

    def __init__(self, rng: PerImageRandom, shape: Sequence[int], num_blocks: int):
        self.rng, self.shape, self.remaining = rng, tuple(shape), num_blocks
        self.block, self.pos = None, W_NOISE_CHUNK
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ganinv-latent-noise") if num_blocks else None
        self._pending = self._submit()

    def _submit(self) -> Future | None:
        if self.remaining == 0:
            return None
        self.remaining -= 1
        return self._pool.submit(self.rng.randn_host, W_NOISE_CHUNK, *self.shape)

    def next(self) -> torch.Tensor:
        """This step's `[N, *shape]` draw."""
        if self.pos == W_NOISE_CHUNK:
            if self._pending is None:
                raise RuntimeError("latent noise was asked for more steps than the schedule has noise")
            draws, self._pending = self._pending.result(), None
            self._pending = self._submit()
            self.block, self.pos = self.rng.to_device(draws), 0
        self.pos += 1
        return self.block[:, self.pos - 1]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


_W_STATS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def projector_w_stats(G: nn.Module, num_samples: int = 10000) -> tuple[torch.Tensor, float]:
    """`w_avg [w_dim]` and scalar `w_std` from `num_samples` mapped z, cached per generator object (the weights
    are assumed frozen while the generator is used for inversion)."""
    device = next(G.parameters()).device
    cache = _W_STATS.setdefault(G, {})
    key = (num_samples, str(device))
    if key not in cache:
        with independent_rows(False):  # one statistic of many samples: the same bits wherever it is first asked for
            w_avg, w_std = G.w_stats(num_samples, seed=W_STATS_SEED)
        cache[key] = (w_avg, float(w_std))
    return cache[key]


def learning_rate(step: int, config: InversionConfig) -> float:
    """The projector's schedule: cosine ramp-down over the last `lr_rampdown_length`, linear ramp-up at the start."""
    t = step / config.num_steps
    ramp = min(1.0, (1.0 - t) / config.lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / config.lr_rampup_length) if config.lr_rampup_length > 0 else ramp
    return config.initial_learning_rate * ramp


def latent_noise_std(step: int, config: InversionConfig, latent_std: float) -> float:
    """Std of the noise added to the latent at `step`: quadratic decay to 0 at `noise_ramp_length`."""
    t = step / config.num_steps
    return latent_std * config.initial_noise_factor * max(0.0, 1.0 - t / config.noise_ramp_length) ** 2


def image_seeds(seed: int | Sequence[int], num_images: int) -> list[int]:
    """Per-image seeds: a sequence is used as given (e.g. seeds from image ids); an int s gives s, s+1, ..."""
    if isinstance(seed, numbers.Integral):
        return [int(seed) + i for i in range(num_images)]
    seeds = [int(s) for s in seed]
    if len(seeds) != num_images:
        raise ValueError(f"seed must be an int or one seed per image: got {len(seeds)} seeds for {num_images} images")
    return seeds


def _initial_latent(G: nn.Module, space: str, init: torch.Tensor | None, w_avg: torch.Tensor,
                    rng: PerImageRandom, num_images: int) -> torch.Tensor:
    """The starting point: `[N, 1, w_dim]` (w), `[N, num_ws, w_dim]` (w+) or `[N, z_dim]` (z)."""
    if space == "z":
        return rng.randn(G.z_dim) if init is None else init.clone()
    if init is None:
        init = w_avg.reshape(1, 1, -1).expand(num_images, 1, -1)
    elif init.ndim == 2:
        init = init.unsqueeze(1)
    if space == "w":
        return init.mean(dim=1, keepdim=True).clone()  # an encoder's per-layer ws are averaged to one w
    return init.expand(-1, G.num_ws, -1).clone()


def _latent_to_ws(G: nn.Module, space: str, latent: torch.Tensor) -> torch.Tensor:
    if space == "z":
        return G.mapping(latent, None, update_emas=False)
    return latent.expand(-1, G.num_ws, -1) if space == "w" else latent


def _check_inputs(G: nn.Module, target: torch.Tensor, degradation: Degradation | None, init: torch.Tensor | None,
                  config: InversionConfig) -> None:
    expected = (G.img_channels, G.img_resolution, G.img_resolution)
    if degradation is not None:
        degradation.check(target.shape[0], expected)
        expected = degradation.observed_shape(expected)
    if target.ndim != 4 or tuple(target.shape[1:]) != expected or not target.is_floating_point():
        what = "matching the generator" if degradation is None else f"(the generator's images through {degradation!r})"
        raise ValueError(f"target must be a float tensor [N, {', '.join(map(str, expected))}] {what}, got "
                         f"{target.dtype} {list(target.shape)}; resize images to {expected[-1]} px first")
    if target.min() < -1.05 or target.max() > 1.05:
        raise ValueError("target must be in [-1, 1] (uint8 pixels p map to p / 127.5 - 1), got values in "
                         f"[{target.min().item():.3g}, {target.max().item():.3g}]")
    if config.space == "z" and G.c_dim > 0:
        raise ValueError("space 'z' needs a class label for this conditional generator; invert in 'w' or 'w+'")
    if config.regularize_encoder_weight > 0 and init is None:
        raise ValueError("regularize_encoder_weight > 0 keeps the latent near `init`: pass init (e.g. an encoder's ws)")
    if init is not None:
        _check_init(G, config.space, init, target.shape[0])


def _check_init(G: nn.Module, space: str, init: torch.Tensor, num_images: int) -> None:
    if space == "z":
        ok, want = tuple(init.shape) == (num_images, G.z_dim), f"[{num_images}, {G.z_dim}]"
    else:
        ok = tuple(init.shape) in ((num_images, G.w_dim), (num_images, 1, G.w_dim), (num_images, G.num_ws, G.w_dim))
        want = f"[{num_images}, {G.w_dim}] or [{num_images}, {G.num_ws}, {G.w_dim}]"
    if not ok:
        raise ValueError(f"init for space {space!r} must be {want}, got {list(init.shape)}")


def _resolve_loss(config: InversionConfig, loss_fn: ImageLoss | None, device: torch.device) -> WeightedLoss:
    return build_loss(config.loss, device=device) if loss_fn is None else as_weighted_loss(loss_fn)


def noise_steps(config: InversionConfig, latent_std: float) -> int:
    """How many leading steps perturb the latent (the noise std falls to 0 at `noise_ramp_length` and stays 0)."""
    return sum(1 for step in range(config.num_steps) if latent_noise_std(step, config, latent_std) > 0)


def history_steps(config: InversionConfig) -> list[int]:
    return sorted(set(range(0, config.num_steps, config.history_every)) | {config.num_steps - 1})


@dataclass
class _StaticInputs:
    """What changes from step to step when the step is compiled or captured: fed with `copy_`, read in place."""

    latent_noise: torch.Tensor         # [N, *latent.shape[1:]], this step's draw
    noise_std: torch.Tensor            # 0-d, this step's latent noise std
    noise_std_schedule: torch.Tensor   # [num_steps]
    lr: torch.Tensor | None = None     # 0-d, the capturable optimizer's learning rate (CUDA graphs only)
    lr_schedule: torch.Tensor | None = None


class InversionProblem:
    """N independent inversions stacked along the first axis, ready to step.

    `invert` is `build_problem`, `run`, `finish`, `close`; benchmarks and profilers call `step` themselves. With
    `config.compile` or `config.cuda_graph` the step reads its per-step inputs (latent noise, its std, the learning
    rate) from static tensors, so one compiled graph or one captured CUDA graph serves every step.
    """

    def __init__(self, G: nn.Module, config: InversionConfig, loss: WeightedLoss, target: torch.Tensor,
                 degradation: Degradation | None, latent: torch.Tensor, noise_bufs: list[torch.Tensor] | None,
                 rng: PerImageRandom, latent_std: float, seeds: list[int], compile_scope: str = "regional",
                 compile_options: dict[str, Any] | None = None):
        if compile_scope not in COMPILE_SCOPES:
            raise ValueError(f"compile_scope must be one of {COMPILE_SCOPES}, got {compile_scope!r}")
        self.G, self.config, self.loss, self.target, self.seeds = G, config, loss, target, seeds
        self.degradation = degradation
        self.latent, self.latent_init, self.noise_bufs = latent, latent.detach().clone(), noise_bufs
        self.latent_std, self.device = latent_std, latent.device
        self.use_graph = config.cuda_graph and self.device.type == "cuda"  # elsewhere cuda_graph is a no-op
        self.prepared = self._prepare(self._observed_view(target))
        num_blocks = math.ceil(noise_steps(config, latent_std) / W_NOISE_CHUNK)
        self.latent_noise = _LatentNoise(rng, latent.shape[1:], num_blocks)
        self.optimizer = self._make_optimizer()
        self.static = self._make_static_inputs() if config.compile or config.cuda_graph else None
        whole = config.compile and compile_scope == "whole"
        self.compile_options = dict(compile_options or {})
        self.regions = (RegionalCompiler(synthesis_regions(G.synthesis) + [loss], **self.compile_options)
                        if config.compile and not whole else None)
        self.objective_fn = (torch.compile(self.objective, **{**COMPILE_OPTIONS, **self.compile_options}) if whole
                             else self.objective)
        self.graph = self.graph_loss = None

    def _params(self) -> list[torch.Tensor]:
        return [self.latent] + (self.noise_bufs or [])

    def _make_optimizer(self) -> torch.optim.Optimizer:
        lr = self.config.initial_learning_rate
        if self.use_graph:  # capture needs the learning rate as a device tensor, fed before each replay
            return torch.optim.Adam(self._params(), lr=torch.tensor(lr, device=self.device), betas=self.config.betas,
                                    capturable=True, foreach=True)
        return torch.optim.Adam(self._params(), lr=lr, betas=self.config.betas,
                                fused=self.device.type == "cuda" or None)

    def _make_static_inputs(self) -> _StaticInputs:
        cfg, device = self.config, self.device
        schedule = [latent_noise_std(step, cfg, self.latent_std) for step in range(cfg.num_steps)]
        static = _StaticInputs(latent_noise=torch.zeros_like(self.latent), noise_std=torch.zeros([], device=device),
                               noise_std_schedule=torch.tensor(schedule, dtype=torch.float32, device=device))
        if self.use_graph:
            static.lr = self.optimizer.param_groups[0]["lr"]
            assert torch.is_tensor(static.lr), "this torch's capturable Adam does not keep a tensor learning rate"
            lrs = [learning_rate(step, cfg) for step in range(cfg.num_steps)]
            static.lr_schedule = torch.tensor(lrs, dtype=torch.float32, device=device)
        return static

    @torch.no_grad()
    def _prepare(self, target: torch.Tensor) -> Any:
        """The loss's target-only work, done once, in the same precision and layout as the synthesised images."""
        with autocast(self.config.precision, self.device):
            return self.loss.prepare(self._layout(target))

    def _layout(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.config.channels_last else images

    def _observed_view(self, target: torch.Tensor) -> torch.Tensor:
        return target if self.degradation is None else self.degradation.observed_view(target)

    def _degraded_view(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.degradation is None else self.degradation.degraded_view(images)

    def _synthesize(self, ws: torch.Tensor, noise_bufs: list[torch.Tensor] | None) -> torch.Tensor:
        # Unfused modulation runs one shared convolution for the whole batch (fused groups per image).
        kwargs: dict[str, Any] = dict(noise_mode="const", fused_modconv=False, noise=noise_bufs)
        if self.config.precision != "fp32":
            kwargs["force_fp32"] = True  # autocast picks the precision, not the generator's own fp16 blocks
        if self.config.channels_last:
            kwargs["channels_last"] = True
        return self._degraded_view(self.G.synthesis(ws, **kwargs))

    def objective(self, latent: torch.Tensor, noise_bufs: list[torch.Tensor] | None, prepared: Any,
                  latent_noise: torch.Tensor | None, noise_std: float | torch.Tensor) -> torch.Tensor:
        """Per-image objective `[N]` (fp32) with the latent perturbed by `latent_noise * noise_std` (None: not)."""
        cfg = self.config
        noised = latent if latent_noise is None else latent + latent_noise * noise_std
        ws = _latent_to_ws(self.G, cfg.space, noised)
        regions = self.regions.active() if self.regions is not None else contextlib.nullcontext()
        with autocast(cfg.precision, self.device), regions:
            loss = self.loss(self._synthesize(ws, noise_bufs), prepared).float()
        if noise_bufs is not None and cfg.regularize_noise_weight > 0:
            regularizer = (noise_regularization if self.regions is None
                           else compiled_function(noise_regularization, **self.compile_options))
            loss = loss + cfg.regularize_noise_weight * regularizer(noise_bufs)
        if cfg.regularize_encoder_weight > 0:
            dims = tuple(range(1, latent.ndim))
            loss = loss + cfg.regularize_encoder_weight * (latent - self.latent_init).square().mean(dim=dims)
        return loss

    def _update(self, loss: torch.Tensor) -> torch.Tensor:
        loss.sum().backward()  # a sum, not a mean: image i's gradient is that of its own loss alone
        self.optimizer.step()
        if self.noise_bufs is not None:
            normalize_noise_(self.noise_bufs)
        return loss.detach()

    @torch.enable_grad()
    def step(self, step: int) -> torch.Tensor:
        """Take step `step` (0-based; steps must come in order) and return the per-image objective `[N]` it saw."""
        if self.static is not None:
            return self._static_step(step)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(step, self.config)
        noise_std = latent_noise_std(step, self.config, self.latent_std)
        latent_noise = self.latent_noise.next() if noise_std > 0 else None
        loss = self.objective(self.latent, self.noise_bufs, self.prepared, latent_noise, noise_std)
        self.optimizer.zero_grad(set_to_none=True)
        return self._update(loss)

    def _static_train_step(self) -> torch.Tensor:
        static = self.static
        return self._update(self.objective_fn(self.latent, self.noise_bufs, self.prepared, static.latent_noise,
                                              static.noise_std))

    def _static_step(self, step: int) -> torch.Tensor:
        static = self.static
        if latent_noise_std(step, self.config, self.latent_std) > 0:
            static.latent_noise.copy_(self.latent_noise.next())
        static.noise_std.copy_(static.noise_std_schedule[step])  # 0 once the noise has ramped down
        if not self.use_graph:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(step, self.config)
            self.optimizer.zero_grad(set_to_none=True)
            return self._static_train_step()
        static.lr.copy_(static.lr_schedule[step])
        if self.graph is None:
            self.graph, self.graph_loss = capture_step(self._static_train_step, self._params(), self.optimizer)
        self.graph.replay()
        return self.graph_loss.clone()

    def run(self, start_step: int = 0) -> tuple[torch.Tensor, list[int]]:
        """Steps `start_step` ... `num_steps - 1` (all by default); returns the per-image loss history `[K, N]` (on
        the device: no host sync) and its steps. Starting later (`ganinv.inversion.refine`) first draws, and
        discards, the latent noise the skipped steps would have drawn, so step s sees the same draw either way."""
        steps = [s for s in history_steps(self.config) if s >= start_step]
        slot = {s: k for k, s in enumerate(steps)}
        history = torch.zeros(len(steps), self.latent.shape[0], device=self.device)
        for step in range(start_step):
            if latent_noise_std(step, self.config, self.latent_std) > 0:
                self.latent_noise.next()
        for step in range(start_step, self.config.num_steps):
            loss = self.step(step)
            if step in slot:
                history[slot[step]] = loss
        return history, steps

    @torch.no_grad()
    def finish(self, history: torch.Tensor, steps: list[int]) -> InversionResult:
        """Final reconstructions, losses and metrics, evaluated in fp32 whatever the optimisation's precision."""
        cfg, target = self.config, self.target
        ws = _latent_to_ws(self.G, cfg.space, self.latent.detach()).contiguous()
        force_fp32 = {} if cfg.precision == "fp32" else {"force_fp32": True}
        images = self.G.synthesis(ws, noise_mode="const", fused_modconv=False, noise=self.noise_bufs, **force_fp32)
        degraded, observed = self._degraded_view(images), self._observed_view(target)
        prepared = self.prepared if cfg.precision == "fp32" else self.loss.prepare(observed)
        perceptual = {**available_lpips(target.device), **self.loss.perceptual_terms()}  # LPIPS-VGG whenever its trunk is on disk
        return InversionResult(
            ws=ws, z=self.latent.detach() if cfg.space == "z" else None,
            noise=None if self.noise_bufs is None else [b.detach() for b in self.noise_bufs],
            images=images, losses=self.loss(degraded, prepared),
            metrics=reconstruction_metrics(degraded, observed, perceptual=perceptual),
            history=history, history_steps=steps, seeds=self.seeds, config=cfg)

    def close(self) -> None:
        """Stop the latent-noise thread and free the captured graph (idempotent)."""
        self.latent_noise.close()
        self.graph = self.graph_loss = None


def build_problem(G: nn.Module, target: torch.Tensor, config: InversionConfig | None = None, *,
                  init: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                  degradation: Degradation | None = None, seed: int | Sequence[int] = 0,
                  loss_fn: ImageLoss | None = None, compile_scope: str = "regional",
                  compile_options: dict[str, Any] | None = None, **overrides: Any) -> InversionProblem:
    """Check the inputs and set up the N problems (arguments as for `invert`; `compile_scope`: how `compile=True`
    compiles, `COMPILE_SCOPES`, and `compile_options` its torch.compile options over the scope's); call `close()`
    when done."""
    config = dataclasses.replace(config or InversionConfig(), **overrides)
    device = next(G.parameters()).device
    target = target.to(device, torch.float32)
    degradation = resolve_degradation(None if mask is None else mask.to(device, torch.float32), degradation)
    degradation = None if degradation is None else degradation.to(device)
    init = None if init is None else init.to(device, torch.float32)
    _check_inputs(G, target, degradation, init, config)
    seeds = image_seeds(seed, target.shape[0])
    rng = PerImageRandom(seeds, device)
    loss = _resolve_loss(config, loss_fn, device)
    w_avg, w_std = projector_w_stats(G, config.w_avg_samples)
    # Draw order per image (fixes each image's stream): z init (space z, no init), noise maps, then latent noise.
    latent = _initial_latent(G, config.space, init, w_avg, rng, target.shape[0]).requires_grad_(True)
    noise_bufs = None
    if config.optimize_noise and G.synthesis.noise_layers():  # StyleGAN3 has none: nothing to optimise (module doc)
        noise_bufs = [rng.randn(1, layer.resolution, layer.resolution).requires_grad_(True)
                      for layer in G.synthesis.noise_layers()]
    return InversionProblem(G, config, loss, target, degradation, latent, noise_bufs, rng,
                            latent_std=1.0 if config.space == "z" else w_std, seeds=seeds, compile_scope=compile_scope,
                            compile_options=compile_options)


def invert(G: nn.Module, target: torch.Tensor, config: InversionConfig | None = None, *,
           init: torch.Tensor | None = None, mask: torch.Tensor | None = None,
           degradation: Degradation | None = None, seed: int | Sequence[int] = 0, loss_fn: ImageLoss | None = None,
           **overrides: Any) -> InversionResult:
    """Invert `target [N, C, H, W]` (in [-1, 1], the generator's resolution) into `G`, all N images at once.

    `config` (default `InversionConfig()`) and keyword `overrides` of its fields (`space='w+'`, `num_steps=100`,
    `loss='lpips-vgg+0.1*mse'`, `precision='bf16'`, ...) set the algorithm. `init`: starting latent, `[N, w_dim]` or
    `[N, num_ws, w_dim]` for 'w'/'w+' (per-layer ws are averaged for 'w'), `[N, z_dim]` for 'z'; default `w_avg`
    (random z for 'z'). `degradation` (`ganinv.inversion.degradations`): `target` is then the observation
    (`[N, C, 16, 16]` for `Downsample(4)` at 64 px) and the loss and metrics compare `degradation.degraded_view(G(w))`
    with `degradation.observed_view(target)`; `result.images` is the restored image. `mask` (0/1, `[N, C, H, W]` or
    `[N, 1, H, W]`) is short for `degradation=Mask(mask)`: pixels where it is 0 have no influence (inpainting,
    partial observations). `seed`: one int (image i gets `seed + i`) or one seed per image. `loss_fn`: a ready loss object used instead of building `config.loss`
    (e.g. `ClassifierPerceptualLoss(my_classifier)`); `config.loss` then only labels the run.
    Deterministic: the same inputs, seeds and config give the same result (bitwise on CPU).
    """
    problem = build_problem(G, target, config, init=init, mask=mask, degradation=degradation, seed=seed,
                            loss_fn=loss_fn, **overrides)
    try:
        history, steps = problem.run()
        return problem.finish(history, steps)
    finally:
        problem.close()
