"""One batch of a dataset inversion: invert the targets in a mode, then keep what a corpus keeps of each image (its
ws, its per-item metrics, a thumbnail of its reconstruction). Pure torch; the shard worker above calls it.

Modes (users pick by name, `--mode`):
- `optimize`: `invert` from `w_avg` (the StyleGAN2 projector);
- `encoder`: one pass of an encoder (`encode`), no optimisation (steps = 0);
- `hybrid`: the encoder's output, then optimisation from there (`hybrid`; Zhu et al. 2020).

The metrics are those the codes alone reproduce: when noise maps were optimised (they are not stored), or when the
mode optimises nothing, the ws are rendered again with the generator's constant noise and scored.

Three optional stages (metric names `<stage>_<metric>`, ganinv/item_metrics.py):
- hybrid also scores the encoder's own reconstruction (`encoder_*`): what the out-of-distribution score reads;
- through a `degradation` (restoration, `ganinv.inversion.degradations`) the targets are observations, the metrics
  compare in observation space, and with `clean` images the restored image, the restoration with the observation
  kept and the plain baseline are scored against them (`restored_*`, `kept_*`, `baseline_*`);
- with `refine` (pivotal tuning, `ganinv.inversion.pivotal`) each item's delta is tuned around its code: the metrics
  and thumbnails are the tuned generator's, the code's own metrics are kept as `pivot_*`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganinv.generators import layers
from ganinv.inversion.degradations import Degradation
from ganinv.inversion.encode import encode
from ganinv.inversion.hybrid import encoder_view, hybrid
from ganinv.inversion.optimize import InversionConfig, invert
from ganinv.inversion_names import MODES
from ganinv.item_metrics import OOD_SCORE, QUALITY, metric_names, stage_names
from ganinv.losses.registry import PIXEL_LOSSES, build_loss, parse_loss_spec
from ganinv.metrics.reconstruction import reconstruction_metrics
from ganinv.utils.images import to_uint8

RESTORATION_METRICS = ("psnr", "ssim")  # of the restored, kept and baseline images against the clean ones
Metrics = dict[str, torch.Tensor]


@dataclass(frozen=True)
class BatchResult:
    """Per image of the batch: ws `[n, num_ws, w_dim]` float32, metrics `{name: [n] float32}` (the names of
    `item_metric_names`), thumbnails `[n, t, t, 3]` uint8 or None; with refinement, `deltas` `[n, P]` (each item's
    packed pivotal delta, `pivotal.pack`) and `pivot_thumbnails` (the untuned code's image)."""

    ws: np.ndarray
    metrics: dict[str, np.ndarray]
    thumbnails: np.ndarray | None = None
    deltas: np.ndarray | None = None
    pivot_thumbnails: np.ndarray | None = None

    def first(self, n: int) -> BatchResult:
        """The results of the batch's first `n` images."""
        cut = lambda a: None if a is None else a[:n]  # noqa: E731
        return BatchResult(ws=self.ws[:n], metrics={k: v[:n] for k, v in self.metrics.items()},
                           thumbnails=cut(self.thumbnails), deltas=cut(self.deltas),
                           pivot_thumbnails=cut(self.pivot_thumbnails))


def item_metric_names(loss: str, *, mode: str | None = None, restoration: bool = False,
                      refine: bool = False) -> tuple[str, ...]:
    """The per-item metrics a run with `loss` records: mse, psnr, ssim, the loss's perceptual terms, final_loss,
    steps, seconds (ganinv/item_metrics.py); hybrid and encoder runs add the out-of-distribution score (hybrid: and
    the encoder's own metrics it is computed from), restoration runs the restored / kept / baseline PSNR and SSIM,
    refined runs the pivot's metrics."""
    names = metric_names(name for _, name in parse_loss_spec(loss) if name not in PIXEL_LOSSES)
    measured = tuple(n for n in names if n in QUALITY)
    if restoration:
        return names + tuple(n for stage in ("restored", "kept", "baseline")
                             for n in stage_names(stage, RESTORATION_METRICS))
    extra = stage_names("pivot", measured) if refine else ()
    if mode == "hybrid":
        extra += stage_names("encoder", measured)
    return names + extra + ((OOD_SCORE,) if mode in ("hybrid", "encoder") else ())


def refine_batch(G: nn.Module, target: torch.Tensor, ws: torch.Tensor, *, config: InversionConfig, more_steps: int,
                 seeds: Sequence[int], thumbnail_size: int | None = None,
                 E: nn.Module | None = None) -> BatchResult:
    """`more_steps` more steps of the inversion that made the codes `ws [n, num_ws, w_dim]` of `target [n, 3, R, R]`
    with `config` (whose `num_steps` = the steps they have had; `ganinv.inversion.refine`): the continued codes, the
    same metrics as `invert_batch` records for them (final_loss, steps = the total, seconds = this call's per image)
    and thumbnails. `E`: the encoder whose output the in-domain term keeps the codes near, when the config has one
    (`regularize_encoder_weight` > 0)."""
    from ganinv.inversion.refine import refine

    assert target.ndim == 4 and ws.ndim == 3 and len(ws) == len(target) == len(seeds), \
        f"target [n, 3, R, R], ws [n, num_ws, w_dim] and n seeds, got {list(target.shape)}, {list(ws.shape)}"
    device = next(G.parameters()).device
    target = target.to(device)
    t0 = time.perf_counter()
    anchor = encode(E, target) if config.regularize_encoder_weight > 0 else None
    result = refine(G, target, ws.to(device, torch.float32), config, more_steps=more_steps, seed=list(seeds),
                    anchor_ws=anchor)
    n = len(seeds)
    out = {name: value.float().cpu().numpy() for name, value in {**result.metrics,
                                                                 "final_loss": result.losses}.items()}
    out.update(steps=np.full(n, result.config.num_steps, np.float32),
               seconds=np.full(n, (time.perf_counter() - t0) / n, np.float32))
    return BatchResult(ws=result.ws.float().cpu().numpy(), metrics=out,
                       thumbnails=None if not thumbnail_size else thumbnails(result.images, thumbnail_size))


def invert_batch(G: nn.Module, target: torch.Tensor, *, mode: str, config: InversionConfig, seeds: Sequence[int],
                 E: nn.Module | None = None, thumbnail_size: int | None = None,
                 degradation: Degradation | None = None, clean: torch.Tensor | None = None,
                 keep_observed: bool = False, refine=None, independent_rows: bool = False) -> BatchResult:
    """`target [n, 3, R, R]` in [-1, 1] -> the batch's ws, metrics and thumbnails. `seeds`: one per image (each
    image's random stream, `ganinv.utils.seeds.seed_from_id`); `E`: the encoder, for modes encoder and hybrid.

    `degradation`: the targets are its observations (`[n, 3, r, r]`, r = what `degradation.observed_shape` says);
    `clean [n, 3, R, R]` (NaN rows where unknown): the truth the restorations are scored against; `keep_observed`:
    thumbnails show the restoration with the observation kept. `refine`: a `pivotal.PivotalConfig`.
    `independent_rows` (CPU, fp32): every image's results are bitwise those it gets in any other batch
    (`ganinv.generators.layers.independent_rows`; a lone image is inverted beside a copy of itself, whose results
    are dropped); not with a degradation or refinement."""
    assert target.ndim == 4, f"target must be [n, 3, R, R], got {list(target.shape)}"
    if independent_rows:
        if degradation is not None or refine is not None:
            raise ValueError("independent_rows covers plain inversion: not with a degradation or refinement")
        pair = len(seeds) == 1  # a batch of one takes other CPU kernels than any larger batch
        target = target.contiguous()  # so does a channels_last batch (an indexed NHWC array stays NHWC)
        with layers.independent_rows():
            batch = invert_batch(G, target.repeat(2, 1, 1, 1) if pair else target, mode=mode, config=config,
                                 seeds=list(seeds) * 2 if pair else seeds, E=E, thumbnail_size=thumbnail_size)
        return batch.first(1) if pair else batch
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    if mode != "optimize" and E is None:
        raise ValueError(f"mode {mode!r} needs an encoder E")
    device = next(G.parameters()).device
    target = target.to(device)
    degradation = None if degradation is None else degradation.to(device)
    t0 = time.perf_counter()
    ws, images, final_loss, metrics, init_ws = _invert(G, E, target, mode, config, seeds, degradation)
    metrics.update(final_loss=final_loss)
    if init_ws is not None and degradation is None:  # what the encoder alone made of the image
        metrics.update(_staged("encoder", evaluate(G, init_ws, target, config.loss)[2]))
    shown = images
    if degradation is not None:
        shown = degradation.keep_observed(images, target) if keep_observed else images
        if clean is not None:
            metrics.update(restoration_metrics(images, target, clean.to(device), degradation))
    deltas = pivot_thumbs = None
    if refine is not None:
        shown, deltas, pivot_thumbs, metrics = _refine(G, target, ws, images, metrics, refine, seeds, config.loss,
                                                      thumbnail_size)
    n = len(seeds)
    out = {name: value.float().cpu().numpy() for name, value in metrics.items()}
    out.update(steps=np.full(n, config.num_steps * (mode != "encoder") + (refine.num_steps if refine else 0),
                             np.float32),
               seconds=np.full(n, (time.perf_counter() - t0) / n, np.float32))
    return BatchResult(ws=ws.float().cpu().numpy(), metrics=out,
                       thumbnails=None if not thumbnail_size else thumbnails(shown, thumbnail_size),
                       deltas=deltas, pivot_thumbnails=pivot_thumbs)


def _invert(G: nn.Module, E: nn.Module | None, target: torch.Tensor, mode: str, config: InversionConfig,
            seeds: Sequence[int], degradation: Degradation | None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Metrics, torch.Tensor | None]:
    """(ws, images, final loss, metrics, the encoder's ws or None) of one batch in `mode`."""
    if mode == "encoder":
        ws = encode(E, target if degradation is None else encoder_view(degradation, target))
        return (ws, *evaluate(G, ws, target, config.loss, degradation), None)
    if mode == "hybrid":
        result = hybrid(G, E, target, config, seed=list(seeds), degradation=degradation)
    else:
        result = invert(G, target, config, seed=list(seeds), degradation=degradation)
    if config.optimize_noise:  # what the stored codes reproduce on their own (const noise), not the noise maps
        return (result.ws, *evaluate(G, result.ws, target, config.loss, degradation), result.init_ws)
    return result.ws, result.images, result.losses, dict(result.metrics), result.init_ws


@torch.no_grad()
def evaluate(G: nn.Module, ws: torch.Tensor, target: torch.Tensor, loss_spec: str,
             degradation: Degradation | None = None) -> tuple[torch.Tensor, torch.Tensor, Metrics]:
    """(images, loss [n], metrics) of `ws` rendered with the generator's const noise, as `invert` reports them:
    through `degradation`, the loss and metrics compare its degraded view with the observation's view."""
    images = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    seen, wanted = images, target
    if degradation is not None:
        seen, wanted = degradation.degraded_view(images), degradation.observed_view(target)
    loss = build_loss(loss_spec, device=target.device)
    return images, loss(seen, loss.prepare(wanted)), reconstruction_metrics(seen, wanted,
                                                                            perceptual=loss.perceptual_terms())


@torch.no_grad()
def restoration_metrics(restored: torch.Tensor, observed: torch.Tensor, clean: torch.Tensor,
                        degradation: Degradation) -> Metrics:
    """PSNR and SSIM against `clean` of the restoration, of the restoration with the observation kept, and of the
    degradation's plain baseline (`restored_*`, `kept_*`, `baseline_*`); NaN for items whose clean image is NaN."""
    candidates = {"restored": restored, "kept": degradation.keep_observed(restored, observed),
                  "baseline": degradation.baseline(degradation.project(observed))}
    known = torch.isfinite(clean).flatten(1).all(dim=1)
    truth = torch.where(known[:, None, None, None], clean, torch.zeros_like(clean))
    out: Metrics = {}
    for stage, images in candidates.items():
        scores = reconstruction_metrics(images.clamp(-1, 1), truth)
        out.update({f"{stage}_{name}": torch.where(known, scores[name], torch.nan) for name in RESTORATION_METRICS})
    return out


def _refine(G: nn.Module, target: torch.Tensor, ws: torch.Tensor, pivots: torch.Tensor, metrics: Metrics, refine,
            seeds: Sequence[int], loss_spec: str, thumbnail_size: int | None
            ) -> tuple[torch.Tensor, np.ndarray, np.ndarray | None, Metrics]:
    """Pivotal tuning around `ws`: (tuned images, packed deltas [n, P], pivot thumbnails, metrics): the tuned images
    scored with the inversion's measures, the pivot's kept as `pivot_*`."""
    from ganinv.inversion import pivotal

    tuned = pivotal.tune(G, target, ws, refine, seed=list(seeds))
    loss = build_loss(loss_spec, device=target.device)
    scored = reconstruction_metrics(tuned.images, target, perceptual=loss.perceptual_terms())
    out = {**metrics, **_staged("pivot", metrics), **scored}
    values, _ = pivotal.pack(tuned.deltas)
    pivot_thumbs = None if not thumbnail_size else thumbnails(pivots, thumbnail_size)
    return tuned.images, values, pivot_thumbs, out


def _staged(stage: str, metrics: Metrics) -> Metrics:
    """The measures in `metrics` renamed `<stage>_<name>` (losses and run counters left out)."""
    measured = [name for name in metrics if name in QUALITY]
    return dict(zip(stage_names(stage, measured), (metrics[name] for name in measured)))


def thumbnails(images: torch.Tensor, size: int) -> np.ndarray:
    """`images [n, 3, R, R]` in about [-1, 1] -> uint8 `[n, size, size, 3]` (area-downsampled)."""
    small = F.interpolate(images.detach().clamp(-1, 1), size=(size, size), mode="area")
    return to_uint8(small).permute(0, 2, 3, 1).numpy()
