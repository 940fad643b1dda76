"""Pivotal tuning (Roich et al. 2021, "Pivotal Tuning for Latent-based Editing of Real Images"), many images at once.

PTI inverts an image to a pivot code, then tunes the generator so that G'(pivot) matches the image, while a locality
regulariser keeps G' equal to G away from the pivot (so edits of the pivot still mean what they meant). The paper
tunes all of G per image (a 127 MB copy each). Here each image gets a small *delta* on the frozen, shared G:

- for every modulated layer (3x3 convs and toRGB), a rank-r change of its weight, `weight + up[n] @ down[n]`
  (`up [O, r]` starts at 0, `down [r, I*k*k]` at N(0, init_std^2) from the image's own seed, as in LoRA), and
  optionally a change of its bias `[O]`. The form was chosen by measurement (docs/inversion.md, "Pivotal tuning"):
  rank 4 without bias offsets, ~90 KB a faces64 item in fp16. Per-layer offsets of the *styles* are not offered: the
  affine map w -> styles is onto (w_dim >= in channels), so they equal a move of the W+ pivot, which the inversion
  before already optimises;
- all deltas of a batch are stacked `[N, ...]` and trained by one Adam (elementwise), on the sum of per-image losses,
  with per-image random streams: an image gets the same delta alone or in any batch (to float rounding);
- losses (PTI eq. 1-4): `loss(G'(w_p), x)` with the registry loss (PTI: LPIPS + L2, `'lpips-vgg+mse'`), plus
  `locality_weight * loss(G'(w_r), G(w_r))` at `w_r = w_p + alpha * (w_z - w_p) / ||w_z - w_p||` for one random
  `w_z = mapping(z)` per image and step (PTI's alpha = 30 is in FFHQ's W; here alpha = `locality_distance * w_std`);
- the synthesis is StyleGAN2's with `noise_mode='const'` (the generator's own noise): the pivot must be a code that
  reproduces alone, i.e. inverted with `optimize_noise=False`.

At the end the deltas are rounded to `storage_dtype` (fp16 by default: 2 bytes a value) and the reconstructions and
metrics are made with the rounded values, so `render(G, ws, unpack(*pack(deltas)))` gives the reported images.
`pack` / `unpack` turn a batch of deltas into one `[N, P]` array plus a small attributes dict, bit-exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ganinv.generators.layers import SampleDelta
from ganinv.inversion.optimize import PerImageRandom, image_seeds, projector_w_stats
from ganinv.losses.base import ImageLoss
from ganinv.losses.registry import WeightedLoss, as_weighted_loss, build_loss, canonical_loss_spec
from ganinv.metrics.reconstruction import available_lpips, reconstruction_metrics
from ganinv.utils.seeds import seed_from_id

DELTA_FORMAT, DELTA_FORMAT_VERSION = "ganinv.pivotal-deltas", 1
STORAGE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_NUMPY_DTYPES = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32}  # bf16: raw bit patterns
PARTS = ("up", "down", "bias_delta")


@dataclass(frozen=True)
class PivotalConfig:
    """How pivotal tuning is run; saved verbatim next to its deltas. Defaults: PTI's where it has one."""

    num_steps: int = 350                # PTI
    learning_rate: float = 3e-3         # Adam on the factors (PTI: 3e-4 on whole weights); constant, as in PTI
    rank: int = 4                       # rank of each layer's weight delta (capped at the layer's own); 0: none
    tune_bias: bool = False             # also a per-layer bias offset [O] (measured: worse with rank >= 1)
    init_std: float = 1.0               # std of `down` at the start (weights are stored at unit variance)
    loss: str = "lpips-vgg+mse"         # PTI: LPIPS + L2, weight 1 each
    locality_weight: float = 0.1        # PTI's lambda_R (its L2 and LPIPS terms 0.1 each)
    locality_distance: float = 1.0      # alpha, in units of the generator's w_std
    storage_dtype: str = "float16"      # what pack stores; tuning ends by rounding to it
    history_every: int = 10
    fused_modconv: bool = False         # execution only: per-sample weights + grouped conv (True) or factored form

    def __post_init__(self):
        if self.num_steps < 1 or self.history_every < 1 or self.rank < 0 or self.learning_rate <= 0:
            raise ValueError(f"num_steps and history_every must be >= 1, rank >= 0 and learning_rate > 0, got "
                             f"{self.num_steps}, {self.history_every}, {self.rank}, {self.learning_rate}")
        if self.rank == 0 and not self.tune_bias:
            raise ValueError("rank=0 and tune_bias=False leave nothing to tune")
        if self.storage_dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage_dtype must be one of {sorted(STORAGE_DTYPES)}, got {self.storage_dtype!r}")
        if self.locality_weight < 0 or self.locality_distance < 0:
            raise ValueError("locality_weight and locality_distance must be >= 0")
        object.__setattr__(self, "loss", canonical_loss_spec(self.loss))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "PivotalConfig":
        return cls(**values)


@dataclass
class PivotalDeltas:
    """Per-item changes of a generator's modulated layers: `layers[name]` = `SampleDelta(up [N, O, r],
    down [N, r, I, k, k], bias_delta [N, O])`, fp32 tensors holding values exact in `storage_dtype`."""

    layers: dict[str, SampleDelta]
    storage_dtype: str = "float32"

    def __len__(self) -> int:
        return len(next(t for d in self.layers.values() for t in d if t is not None))

    def _map(self, fn) -> "PivotalDeltas":
        return PivotalDeltas({name: SampleDelta(*(None if t is None else fn(t) for t in d))
                              for name, d in self.layers.items()}, self.storage_dtype)

    @classmethod
    def cat(cls, parts: Sequence["PivotalDeltas"]) -> "PivotalDeltas":
        """The items of `parts` (deltas of the same form, e.g. one per batch), in order."""
        first = parts[0]
        return cls({name: SampleDelta(*(None if t is None else torch.cat([p.layers[name][k] for p in parts])
                                        for k, t in enumerate(delta)))
                    for name, delta in first.layers.items()}, first.storage_dtype)

    def select(self, index: slice | Sequence[int] | torch.Tensor) -> "PivotalDeltas":
        """The items `index` (a slice or indices), in that order."""
        return self._map(lambda t: t[index] if isinstance(index, slice) else t[torch.as_tensor(index).to(t.device)])

    def repeat(self, times: int) -> "PivotalDeltas":
        """All items, `times` times over (items 0..N-1, then 0..N-1 again, ...)."""
        return self._map(lambda t: t.repeat(times, *([1] * (t.ndim - 1))))

    def repeat_interleave(self, repeats: int) -> "PivotalDeltas":
        """Each item `repeats` times in a row (one delta per edit of an item)."""
        return self._map(lambda t: t.repeat_interleave(repeats, dim=0))

    def to(self, device: torch.device | str) -> "PivotalDeltas":
        return self._map(lambda t: t.to(device))

    def detach(self) -> "PivotalDeltas":
        return self._map(torch.Tensor.detach)

    def values_per_item(self) -> int:
        return sum(math.prod(t.shape[1:]) for d in self.layers.values() for t in d if t is not None)

    def bytes_per_item(self) -> int:
        return self.values_per_item() * STORAGE_DTYPES[self.storage_dtype].itemsize


@dataclass
class PivotalResult:
    """Per-image outcome of `tune`; every tensor's first axis is the image index."""

    deltas: PivotalDeltas              # rounded to config.storage_dtype; what `pack` stores
    ws: torch.Tensor                   # [N, num_ws, w_dim] the pivots, unchanged
    images: torch.Tensor               # render(G, ws, deltas) [N, C, H, W]
    losses: torch.Tensor               # [N] final reconstruction loss (without the locality term)
    metrics: dict[str, torch.Tensor]   # each [N]: mse, psnr, ssim, the loss's perceptual terms, lpips-vgg if on disk
    history: torch.Tensor              # [K, N] total per-image objective at `history_steps`
    history_steps: list[int]
    seeds: list[int]
    config: PivotalConfig


# ------------------------------------------------------------------------------------------------ rendering
def render(G: nn.Module, ws: torch.Tensor, deltas: PivotalDeltas | None = None, *, fused_modconv: bool = False,
           noise_mode: str = "const") -> torch.Tensor:
    """Images of the tuned generators: item n's `ws[n]` through G with item n's delta (G itself where None).

    ws: `[N, num_ws, w_dim]` -> `[N, C, H, W]`, or `[N, S, num_ws, w_dim]` (S codes per item, e.g. the strengths of
    an edit `ganinv.edit.apply(ws, direction, strengths)`) -> `[N, S, C, H, W]`, all S through item n's delta.
    """
    if ws.ndim == 4:
        n, s = ws.shape[:2]
        repeated = None if deltas is None else deltas.repeat_interleave(s)
        images = render(G, ws.reshape(n * s, *ws.shape[2:]), repeated, fused_modconv=fused_modconv,
                        noise_mode=noise_mode)
        return images.reshape(n, s, *images.shape[1:])
    if deltas is not None:
        check_deltas(G, deltas, len(ws))
    return G.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv, force_fp32=True,
                       deltas=None if deltas is None else deltas.layers)


def check_deltas(G: nn.Module, deltas: PivotalDeltas, num_items: int) -> None:
    """A ValueError naming the layer and part unless `deltas` fit G's modulated layers and `num_items` items."""
    layers = G.synthesis.modulated_layers()
    for name, delta in deltas.layers.items():
        if name not in layers:
            raise ValueError(f"pivotal delta for layer {name!r}, which this generator lacks (layers: {list(layers)})")
        out_channels, in_channels, kh, kw = layers[name].weight.shape
        rank = -1 if delta.up is None else delta.up.shape[-1]
        want = dict(up=(num_items, out_channels, rank), down=(num_items, rank, in_channels, kh, kw),
                    bias_delta=(num_items, out_channels))
        for part, tensor in zip(PARTS, delta):
            if tensor is not None and tuple(tensor.shape) != want[part]:
                raise ValueError(f"pivotal delta {name}.{part} has shape {list(tensor.shape)}, this generator and "
                                 f"{num_items} items need {list(want[part])}")
        if (delta.up is None) != (delta.down is None):
            raise ValueError(f"pivotal delta {name}: up and down come together (a low-rank product)")


# ------------------------------------------------------------------------------------------------ tuning
def layer_rank(weight_shape: Sequence[int], rank: int) -> int:
    """The rank used for a layer: `rank`, capped at that of its `[O, I*k*k]` weight (toRGB has O = 3)."""
    out_channels, in_channels, kh, kw = weight_shape
    return min(rank, out_channels, in_channels * kh * kw)


def delta_shapes(G: nn.Module, config: PivotalConfig) -> dict[str, dict[str, tuple[int, ...]]]:
    """Per modulated layer, the per-item shape of each tuned part (`up [O, r]`, `down [r, I, k, k]`,
    `bias_delta [O]`), in `modulated_layers` order: the layout of every delta of (G, config)."""
    shapes = {}
    for name, layer in G.synthesis.modulated_layers().items():
        out_channels, in_channels, kh, kw = layer.weight.shape
        rank = layer_rank(layer.weight.shape, config.rank)
        parts = dict(up=(out_channels, rank), down=(rank, in_channels, kh, kw)) if rank > 0 else {}
        shapes[name] = parts | (dict(bias_delta=(out_channels,)) if config.tune_bias else {})
    return shapes


def initial_deltas(G: nn.Module, config: PivotalConfig, rng: PerImageRandom) -> PivotalDeltas:
    """Deltas of value 0 (`up` = 0, bias = 0) with `down` drawn from each image's stream, layer by layer in
    `modulated_layers` order; leaves that require grad."""
    n, device = len(rng.generators), rng.device
    layers = {}
    for name, shapes in delta_shapes(G, config).items():
        parts = {part: torch.zeros([n, *shape], device=device) for part, shape in shapes.items() if part != "down"}
        if "down" in shapes:
            parts["down"] = rng.randn(*shapes["down"]) * config.init_std
        layers[name] = SampleDelta(**{part: t.requires_grad_(True) for part, t in parts.items()})
    return PivotalDeltas(layers)


def locality_codes(G: nn.Module, ws: torch.Tensor, z: torch.Tensor, distance: float) -> torch.Tensor:
    """PTI eq. 3: `w_r = w_p + distance * (w_z - w_p) / ||w_z - w_p||` per ws row, with `w_z = mapping(z)`."""
    w_z = G.mapping(z, None, update_emas=False)
    step = w_z - ws
    return ws + distance * step / step.norm(dim=2, keepdim=True).clamp_min(1e-8)


def round_deltas(deltas: PivotalDeltas, storage_dtype: str) -> PivotalDeltas:
    """The deltas rounded to `storage_dtype` (kept as fp32 tensors: rendering uses exactly the stored values)."""
    dtype = STORAGE_DTYPES[storage_dtype]
    rounded = deltas.detach()._map(lambda t: t.to(dtype).float())
    return dataclasses.replace(rounded, storage_dtype=storage_dtype)


class PivotalProblem:
    """N pivotal tunings stacked along the first axis; `tune` is `run` then `finish`."""

    def __init__(self, G: nn.Module, config: PivotalConfig, loss: WeightedLoss, target: torch.Tensor,
                 ws: torch.Tensor, seeds: list[int]):
        self.G, self.config, self.loss, self.target, self.ws, self.seeds = G, config, loss, target, ws, seeds
        self.rng = PerImageRandom(stream_seeds(seeds), ws.device)
        self.deltas = initial_deltas(G, config, self.rng)
        self.prepared = loss.prepare(target)
        self.w_std = projector_w_stats(G)[1] if config.locality_weight > 0 else 0.0
        params = [t for d in self.deltas.layers.values() for t in d if t is not None]
        self.optimizer = torch.optim.Adam(params, lr=config.learning_rate, betas=(0.9, 0.999),
                                          fused=ws.device.type == "cuda" or None)

    def _render(self, ws: torch.Tensor, deltas: PivotalDeltas) -> torch.Tensor:
        return render(self.G, ws, deltas, fused_modconv=self.config.fused_modconv)

    def objective(self) -> torch.Tensor:
        """Per-image objective `[N]`: reconstruction + locality (one random w_r per image, drawn from its stream)."""
        cfg, n = self.config, len(self.ws)
        if cfg.locality_weight == 0:
            return self.loss(self._render(self.ws, self.deltas), self.prepared)
        z = self.rng.randn(self.G.z_dim)
        with torch.no_grad():
            w_r = locality_codes(self.G, self.ws, z, cfg.locality_distance * self.w_std)
            prepared_r = self.loss.prepare(render(self.G, w_r, None, fused_modconv=cfg.fused_modconv))
        # One pass through G' for the pivots and the locality codes (each item's delta twice).
        both = self._render(torch.cat([self.ws, w_r]), self.deltas.repeat(2))
        return self.loss(both[:n], self.prepared) + cfg.locality_weight * self.loss(both[n:], prepared_r)

    @torch.enable_grad()
    def step(self) -> torch.Tensor:
        loss = self.objective()
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # a sum, not a mean: image i's gradient is that of its own loss alone
        self.optimizer.step()
        return loss.detach()

    def run(self) -> tuple[torch.Tensor, list[int]]:
        steps = sorted(set(range(0, self.config.num_steps, self.config.history_every)) | {self.config.num_steps - 1})
        slot = {s: k for k, s in enumerate(steps)}
        history = torch.zeros(len(steps), len(self.ws), device=self.ws.device)
        for step in range(self.config.num_steps):
            loss = self.step()
            if step in slot:
                history[slot[step]] = loss
        return history, steps

    @torch.no_grad()
    def finish(self, history: torch.Tensor, steps: list[int]) -> PivotalResult:
        deltas = round_deltas(self.deltas, self.config.storage_dtype)
        images = self._render(self.ws, deltas)
        perceptual = {**available_lpips(self.ws.device), **self.loss.perceptual_terms()}
        return PivotalResult(deltas=deltas, ws=self.ws, images=images, losses=self.loss(images, self.prepared),
                             metrics=reconstruction_metrics(images, self.target, perceptual=perceptual),
                             history=history, history_steps=steps, seeds=self.seeds, config=self.config)


def stream_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds of tuning's random streams, derived from the items' seeds: callers pass the seeds the inversion got
    (e.g. `seed_from_id(image_id)`), and tuning must not replay the inversion's draws."""
    return [seed_from_id(f"pivotal:{int(s)}") for s in seeds]


def _check_inputs(G: nn.Module, target: torch.Tensor, ws: torch.Tensor, config: PivotalConfig) -> None:
    expected = (G.img_channels, G.img_resolution, G.img_resolution)
    if target.ndim != 4 or tuple(target.shape[1:]) != expected:
        raise ValueError(f"target must be [N, {', '.join(map(str, expected))}] in [-1, 1], got {list(target.shape)}")
    if tuple(ws.shape) != (len(target), G.num_ws, G.w_dim):
        raise ValueError(f"ws (the pivots) must be [{len(target)}, {G.num_ws}, {G.w_dim}], got {list(ws.shape)}")
    if not hasattr(G.synthesis, "modulated_layers"):
        raise ValueError(f"pivotal tuning needs a StyleGAN2 generator (per-layer modulated convolutions); got "
                         f"{type(G).__name__}")
    if config.locality_weight > 0 and G.c_dim > 0:
        raise ValueError("the locality regulariser samples w = mapping(z) without a class: for a conditional "
                         "generator set locality_weight=0")


def tune(G: nn.Module, target: torch.Tensor, ws: torch.Tensor, config: PivotalConfig | None = None, *,
         seed: int | Sequence[int] = 0, loss_fn: ImageLoss | None = None, **overrides: Any) -> PivotalResult:
    """Pivotal tuning of `target [N, C, H, W]` (in [-1, 1]) around the pivots `ws [N, num_ws, w_dim]`.

    `config` (default `PivotalConfig()`) and keyword `overrides` of its fields set the algorithm. `seed`: one int
    (image i gets `seed + i`) or one seed per image (e.g. `seed_from_id(image_id)`, as for the inversion): image i's
    stream (`stream_seeds`) draws, in order, the initial `down` factors (layer by layer), then one z per step for the
    locality term. `loss_fn`: a ready loss used
    instead of building `config.loss`. G is not changed. Deterministic: bitwise on CPU for the same inputs.
    """
    config = dataclasses.replace(config or PivotalConfig(), **overrides)
    device = next(G.parameters()).device
    target, ws = target.to(device, torch.float32), ws.to(device, torch.float32).detach()
    _check_inputs(G, target, ws, config)
    loss = build_loss(config.loss, device=device) if loss_fn is None else as_weighted_loss(loss_fn)
    problem = PivotalProblem(G, config, loss, target, ws, image_seeds(seed, len(target)))
    history, steps = problem.run()
    return problem.finish(history, steps)


# ------------------------------------------------------------------------------------------------ serialisation
def pack(deltas: PivotalDeltas, *, config: PivotalConfig | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """`(values [N, P], attrs)`: every item's delta as one row of `storage_dtype` values (numpy float16 / float32;
    bfloat16 as its uint16 bit patterns) and JSON attributes naming each layer part's shape and place in the row.
    Bit-exact: `unpack(*pack(d))` equals `d`. Raises if a value is not exact in the storage dtype."""
    dtype = STORAGE_DTYPES[deltas.storage_dtype]
    parts, columns = [], []
    for name, delta in deltas.layers.items():
        for part, tensor in zip(PARTS, delta):
            if tensor is None:
                continue
            stored = tensor.detach().to("cpu", dtype)
            if not torch.equal(stored.float(), tensor.detach().cpu().float()):
                raise ValueError(f"pivotal delta {name}.{part} is not exact in {deltas.storage_dtype}: round it "
                                 f"first (round_deltas), so that rendering uses the stored values")
            parts.append(dict(layer=name, part=part, shape=list(tensor.shape[1:])))
            columns.append(stored.reshape(len(stored), -1))
    values = torch.cat(columns, dim=1)
    array = (values.view(torch.uint16) if dtype == torch.bfloat16 else values).numpy()
    return array, _attrs(parts, deltas.storage_dtype, config)


def delta_attrs(G: nn.Module, config: PivotalConfig) -> dict[str, Any]:
    """The attributes `pack` writes for deltas tuned on G with `config`, known before any tuning: what a store needs
    to create the array (`values_per_item` columns of `dtype`, bfloat16 as uint16) that workers fill row by row."""
    parts = [dict(layer=name, part=part, shape=list(shape))
             for name, shapes in delta_shapes(G, config).items() for part, shape in shapes.items()]
    return _attrs(parts, config.storage_dtype, config)


def _attrs(parts: list[dict[str, Any]], dtype: str, config: PivotalConfig | None) -> dict[str, Any]:
    attrs = dict(format=DELTA_FORMAT, format_version=DELTA_FORMAT_VERSION, dtype=dtype,
                 numpy_dtype=np.dtype(_NUMPY_DTYPES[dtype]).name,
                 values_per_item=sum(math.prod(p["shape"]) for p in parts), parts=parts,
                 rank=max((p["shape"][-1] for p in parts if p["part"] == "up"), default=0))
    if config is not None:
        attrs["config"] = config.to_dict()
    return attrs


def unpack(values: np.ndarray, attrs: dict[str, Any], *, device: torch.device | str = "cpu") -> PivotalDeltas:
    """The deltas `pack` stored: `values [N, P]` (a store's rows, any N) and its `attrs`; a ValueError says what
    does not match."""
    if attrs.get("format") != DELTA_FORMAT or attrs.get("format_version") != DELTA_FORMAT_VERSION:
        raise ValueError(f"not pivotal deltas of format {DELTA_FORMAT!r} v{DELTA_FORMAT_VERSION}: attributes say "
                         f"{attrs.get('format')!r} v{attrs.get('format_version')}")
    dtype_name = attrs.get("dtype")
    if dtype_name not in STORAGE_DTYPES or values.dtype != _NUMPY_DTYPES[dtype_name] or values.ndim != 2:
        raise ValueError(f"pivotal deltas of dtype {dtype_name!r} must be a 2-D {_NUMPY_DTYPES.get(dtype_name)} "
                         f"array, got {values.dtype} {list(values.shape)}")
    sizes = [math.prod(p["shape"]) for p in attrs["parts"]]
    if sum(sizes) != values.shape[1] or values.shape[1] != attrs.get("values_per_item"):
        raise ValueError(f"pivotal deltas: rows of {values.shape[1]} values, attributes describe {sum(sizes)}")
    flat = torch.from_numpy(np.array(values))  # a copy: store reads may be read-only
    flat = (flat.view(torch.bfloat16) if dtype_name == "bfloat16" else flat).float().to(device)
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for part, chunk in zip(attrs["parts"], flat.split(sizes, dim=1)):
        layers.setdefault(part["layer"], {})[part["part"]] = chunk.reshape(len(flat), *part["shape"])
    return PivotalDeltas({name: SampleDelta(**parts) for name, parts in layers.items()}, dtype_name)
