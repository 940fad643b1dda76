"""Optimization-based inversion ("projection") of a batch of images into a StyleGAN2 generator, in Z, W or W+.

For `space='w'` the algorithm and its defaults are those of the StyleGAN2 projector (Karras et al. 2020, "Analyzing
and Improving the Image Quality of StyleGAN", appendix D; behaviour of the StyleGAN2-ADA `projector.py`):

- start from `w_avg`, the mean of `w_avg_samples` mapped z; `w_std` is those samples' RMS distance to `w_avg`;
- Adam (betas 0.9, 0.999) on w and on one noise map per synthesis conv layer, with learning rate
  `initial_learning_rate * ramp(t)`, `t = step / num_steps`: a cosine ramp-down over the last `lr_rampdown_length`
  of the run times a linear ramp-up over the first `lr_rampup_length` (so step 0 has learning rate 0);
- Gaussian noise added to w before synthesis, std `w_std * initial_noise_factor * max(0, 1 - t / noise_ramp_length)^2`,
  which explores early and vanishes after `noise_ramp_length` of the run;
- loss = perceptual distance (VGG LPIPS by default, images area-downsampled to 256 px when larger)
  + `regularize_noise_weight` * the noise maps' multi-scale autocorrelation (`ganinv.losses.noise_regularization`);
- noise maps start N(0, 1) and are renormalised to zero mean and unit variance after every step; synthesis uses
  them as the per-layer noise inputs (`noise_mode='const'` semantics with the optimised maps).

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

import dataclasses
import math
import numbers
import weakref
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from ganinv.losses.base import ImageLoss
from ganinv.losses.noise_regularization import noise_regularization, normalize_noise_
from ganinv.losses.registry import PIXEL_LOSSES, WeightedLoss, as_weighted_loss, build_loss, canonical_loss_spec
from ganinv.metrics.reconstruction import available_lpips, reconstruction_metrics

SPACES = ("z", "w", "w+")
W_NOISE_CHUNK = 50  # latent noise is drawn per image in blocks of this many steps (part of the stream's definition)
W_STATS_SEED = 123  # z samples for w_avg / w_std come from this fixed seed, as in the official projector


@dataclass(frozen=True)
class InversionConfig:
    """How an inversion is run; saved verbatim next to its results. Defaults: the StyleGAN2 projector's."""

    space: str = "w"                        # 'z', 'w' (one w for all layers) or 'w+' (one w per layer)
    num_steps: int = 1000
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05      # latent noise std at step 0, as a fraction of w_std
    lr_rampdown_length: float = 0.25        # fraction of the run with a cosine learning-rate ramp-down
    lr_rampup_length: float = 0.05          # fraction of the run with a linear learning-rate ramp-up
    noise_ramp_length: float = 0.75         # fraction of the run over which the latent noise decays to 0
    regularize_noise_weight: float = 1e5
    regularize_encoder_weight: float = 0.0  # weight of mean((latent - init)^2): in-domain term for hybrid inversion
    w_avg_samples: int = 10000
    loss: str = "lpips-vgg"                 # registry spec, e.g. 'lpips-vgg', 'clf-perceptual+0.1*mse'
    optimize_noise: bool = True             # False: keep the generator's own constant noise, ws alone reproduce
    history_every: int = 10                 # record the per-image loss every this many steps (and at the last)

    def __post_init__(self):
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")
        if self.num_steps < 1 or self.history_every < 1 or self.w_avg_samples < 2:
            raise ValueError("num_steps and history_every must be >= 1 and w_avg_samples >= 2, got "
                             f"{self.num_steps}, {self.history_every}, {self.w_avg_samples}")
        object.__setattr__(self, "loss", canonical_loss_spec(self.loss))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "InversionConfig":
        return cls(**values)


@dataclass
class InversionResult:
    """Per-image outcome of `invert`; every tensor's first axis is the image index."""

    ws: torch.Tensor                   # [N, num_ws, w_dim]
    z: torch.Tensor | None             # [N, z_dim] for space 'z', else None
    noise: list[torch.Tensor] | None   # optimised noise maps [N, 1, r, r] in `G.synthesis.noise_layers()` order
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
    it is in. Draws are made on the CPU (identical streams on every device) and copied to `device`."""

    def __init__(self, seeds: Sequence[int], device: torch.device):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.device = device

    def randn(self, *shape: int) -> torch.Tensor:
        """`[N, *shape]`, row i drawn from image i's generator."""
        draws = torch.stack([torch.randn(shape, generator=g) for g in self.generators])
        if self.device.type == "cuda":
            return draws.pin_memory().to(self.device, non_blocking=True)
        return draws.to(self.device)


class _LatentNoise:
    """The projector's exploration noise on the latent, drawn per image in blocks of `W_NOISE_CHUNK` steps."""

    def __init__(self, rng: PerImageRandom, shape: Sequence[int]):
        self.rng, self.shape, self.block, self.pos = rng, tuple(shape), None, W_NOISE_CHUNK

    def next(self) -> torch.Tensor:
        if self.pos == W_NOISE_CHUNK:
            self.block, self.pos = self.rng.randn(W_NOISE_CHUNK, *self.shape), 0
        self.pos += 1
        return self.block[:, self.pos - 1]


_W_STATS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def projector_w_stats(G: nn.Module, num_samples: int = 10000) -> tuple[torch.Tensor, float]:
    """`w_avg [w_dim]` and scalar `w_std` from `num_samples` mapped z, cached per generator object (the weights
    are assumed frozen while the generator is used for inversion)."""
    device = next(G.parameters()).device
    cache = _W_STATS.setdefault(G, {})
    key = (num_samples, str(device))
    if key not in cache:
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


def _check_inputs(G: nn.Module, target: torch.Tensor, mask: torch.Tensor | None, init: torch.Tensor | None,
                  config: InversionConfig) -> None:
    expected = (G.img_channels, G.img_resolution, G.img_resolution)
    if target.ndim != 4 or tuple(target.shape[1:]) != expected or not target.is_floating_point():
        raise ValueError(f"target must be a float tensor [N, {', '.join(map(str, expected))}] matching the generator, "
                         f"got {target.dtype} {list(target.shape)}; resize images to {G.img_resolution} px first")
    if target.min() < -1.05 or target.max() > 1.05:
        raise ValueError("target must be in [-1, 1] (uint8 pixels p map to p / 127.5 - 1), got values in "
                         f"[{target.min().item():.3g}, {target.max().item():.3g}]")
    if mask is not None and (mask.ndim != 4 or mask.shape[0] != target.shape[0] or mask.shape[2:] != target.shape[2:]
                             or mask.shape[1] not in (1, target.shape[1]) or not ((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"mask must be 0/1 of shape {list(target.shape)} or [N, 1, H, W], got {list(mask.shape)}")
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


@dataclass
class _Problem:
    """Everything the optimisation loop touches: N independent problems stacked along the first axis."""

    G: nn.Module
    config: InversionConfig
    loss: WeightedLoss
    prepared: Any
    mask: torch.Tensor | None
    latent: torch.Tensor
    latent_init: torch.Tensor
    noise_bufs: list[torch.Tensor] | None
    latent_noise: _LatentNoise
    latent_std: float
    optimizer: torch.optim.Optimizer = field(init=False)

    def __post_init__(self):
        params = [self.latent] + (self.noise_bufs or [])
        self.optimizer = torch.optim.Adam(params, lr=self.config.initial_learning_rate, betas=(0.9, 0.999))

    def synthesize(self, ws: torch.Tensor) -> torch.Tensor:
        # Unfused modulation runs one shared convolution for the whole batch (fused groups per image).
        images = self.G.synthesis(ws, noise_mode="const", fused_modconv=False, noise=self.noise_bufs)
        return images if self.mask is None else images * self.mask

    def step_loss(self, step: int) -> torch.Tensor:
        """Per-image objective `[N]` at `step`, with the latent perturbed by the exploration noise."""
        cfg = self.config
        noise_std = latent_noise_std(step, cfg, self.latent_std)
        latent = self.latent + self.latent_noise.next() * noise_std if noise_std > 0 else self.latent
        loss = self.loss(self.synthesize(_latent_to_ws(self.G, cfg.space, latent)), self.prepared)
        if self.noise_bufs is not None and cfg.regularize_noise_weight > 0:
            loss = loss + cfg.regularize_noise_weight * noise_regularization(self.noise_bufs)
        if cfg.regularize_encoder_weight > 0:
            dims = tuple(range(1, self.latent.ndim))
            loss = loss + cfg.regularize_encoder_weight * (self.latent - self.latent_init).square().mean(dim=dims)
        return loss

    def step(self, step: int) -> torch.Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(step, self.config)
        loss = self.step_loss(step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # a sum, not a mean: image i's gradient is that of its own loss alone
        self.optimizer.step()
        if self.noise_bufs is not None:
            normalize_noise_(self.noise_bufs)
        return loss.detach()


def _build_problem(G: nn.Module, target: torch.Tensor, config: InversionConfig, init: torch.Tensor | None,
                   mask: torch.Tensor | None, rng: PerImageRandom, loss: WeightedLoss) -> _Problem:
    n = target.shape[0]
    w_avg, w_std = projector_w_stats(G, config.w_avg_samples)
    # Draw order per image (fixes each image's stream): z init (space z, no init), noise maps, then latent noise.
    latent = _initial_latent(G, config.space, init, w_avg, rng, n).requires_grad_(True)
    noise_bufs = None
    if config.optimize_noise:
        noise_bufs = [rng.randn(1, layer.resolution, layer.resolution).requires_grad_(True)
                      for layer in G.synthesis.noise_layers()]
    prepared = loss.prepare(target if mask is None else target * mask)
    return _Problem(G=G, config=config, loss=loss, prepared=prepared, mask=mask, latent=latent,
                    latent_init=latent.detach().clone(), noise_bufs=noise_bufs,
                    latent_noise=_LatentNoise(rng, latent.shape[1:]),
                    latent_std=1.0 if config.space == "z" else w_std)


def history_steps(config: InversionConfig) -> list[int]:
    return sorted(set(range(0, config.num_steps, config.history_every)) | {config.num_steps - 1})


def _optimize(problem: _Problem, num_images: int, device: torch.device) -> tuple[torch.Tensor, list[int]]:
    """Run all steps; the loss history stays on the device (no host sync inside the loop)."""
    steps = history_steps(problem.config)
    slot = {s: k for k, s in enumerate(steps)}
    history = torch.zeros(len(steps), num_images, device=device)
    with torch.enable_grad():
        for step in range(problem.config.num_steps):
            loss = problem.step(step)
            if step in slot:
                history[slot[step]] = loss
    return history, steps


@torch.no_grad()
def _finish(problem: _Problem, target: torch.Tensor, history: torch.Tensor, steps: list[int],
            seeds: list[int]) -> InversionResult:
    cfg = problem.config
    ws = _latent_to_ws(problem.G, cfg.space, problem.latent.detach()).contiguous()
    images = problem.G.synthesis(ws, noise_mode="const", fused_modconv=False, noise=problem.noise_bufs)
    masked = images if problem.mask is None else images * problem.mask
    perceptual = {name: t for name, t in problem.loss.named_terms().items() if name not in PIXEL_LOSSES}
    perceptual = {**available_lpips(target.device), **perceptual}  # LPIPS-VGG whenever its trunk is on disk
    return InversionResult(
        ws=ws, z=problem.latent.detach() if cfg.space == "z" else None,
        noise=None if problem.noise_bufs is None else [b.detach() for b in problem.noise_bufs],
        images=images, losses=problem.loss(masked, problem.prepared),
        metrics=reconstruction_metrics(images, target, perceptual=perceptual),
        history=history, history_steps=steps, seeds=seeds, config=cfg)


def invert(G: nn.Module, target: torch.Tensor, config: InversionConfig | None = None, *,
           init: torch.Tensor | None = None, mask: torch.Tensor | None = None, seed: int | Sequence[int] = 0,
           loss_fn: ImageLoss | None = None, **overrides: Any) -> InversionResult:
    """Invert `target [N, C, H, W]` (in [-1, 1], the generator's resolution) into `G`, all N images at once.

    `config` (default `InversionConfig()`) and keyword `overrides` of its fields (`space='w+'`, `num_steps=100`,
    `loss='lpips-vgg+0.1*mse'`, ...) set the algorithm. `init`: starting latent, `[N, w_dim]` or
    `[N, num_ws, w_dim]` for 'w'/'w+' (per-layer ws are averaged for 'w'), `[N, z_dim]` for 'z'; default `w_avg`
    (random z for 'z'). `mask`: 0/1, `[N, C, H, W]` or `[N, 1, H, W]`; the loss compares `synth * mask` with
    `target * mask` (inpainting, partial observations); metrics compare the full images. `seed`: one int (image i
    gets `seed + i`) or one seed per image. `loss_fn`: a ready loss object used instead of building `config.loss`
    (e.g. `ClassifierPerceptualLoss(my_classifier)`); `config.loss` then only labels the run.
    Deterministic: the same inputs, seeds and config give the same result (bitwise on CPU).
    """
    config = dataclasses.replace(config or InversionConfig(), **overrides)
    device = next(G.parameters()).device
    target = target.to(device, torch.float32)
    mask = None if mask is None else mask.to(device, torch.float32)
    init = None if init is None else init.to(device, torch.float32)
    _check_inputs(G, target, mask, init, config)
    seeds = image_seeds(seed, target.shape[0])
    rng = PerImageRandom(seeds, device)
    problem = _build_problem(G, target, config, init, mask, rng, _resolve_loss(config, loss_fn, device))
    history, steps = _optimize(problem, target.shape[0], device)
    return _finish(problem, target, history, steps, seeds)
