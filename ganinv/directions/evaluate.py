"""How good is an edit? Render each item before and after, classify both, and measure:

- flip rate: of the items on the far side of the target attribute (prediction below `threshold` for a positive
  strength, above it for a negative one), the share that cross to the edit's side;
- interference: for every other attribute, the share of all items whose binary prediction changes (either way), and
  the mean |change of score|; summarised as their mean and max over the other attributes;
- pixel change: mean |difference| of the images ([-1, 1] scale), and optionally a perceptual distance (e.g. LPIPS)
  given as `perceptual(img_a, img_b) -> [N]`. No masks are available, so both cover the whole image, attribute
  included: compare edits of one attribute with each other, not across attributes.

Rows are plain dicts, one per (direction, strength), ready for a table. Memory is O(batch_size) images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ganinv import edit
from ganinv.directions.direction import Direction
from ganinv.directions.sampling import Scorer, generator_device, score_dict

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Renderer = Callable[[torch.Tensor, slice], torch.Tensor]  # (ws of a batch, which items they are) -> images


@dataclass
class _Tally:
    """Running sums for one (direction, strength)."""

    num_items: int = 0
    eligible: int = 0
    flipped: int = 0
    target_delta: float = 0.0
    changed: dict[str, int] = field(default_factory=dict)
    abs_delta: dict[str, float] = field(default_factory=dict)
    pixel: float = 0.0
    perceptual: float = 0.0


@torch.no_grad()
def evaluate_edits(G: torch.nn.Module, classifier: Scorer, ws: torch.Tensor | np.ndarray,
                   directions: Sequence[Direction], strengths: Sequence[float], *,
                   targets: Mapping[str, str] | None = None, attributes: Sequence[str] | None = None,
                   threshold: float = 0.5, perceptual: Perceptual | None = None, batch_size: int = 32,
                   noise_mode: str = "const", render: Renderer | None = None) -> list[dict]:
    """Evaluate every direction at every strength on the items `ws`.

    ws:         `[N, num_ws, w_dim]` or `[N, w_dim]` codes of the items (sampled or inverted).
    classifier: images -> `{attribute: [N]}` scores (or a tensor, named by `attributes`); a score >= `threshold`
                means the attribute is present (probabilities: 0.5; logits: pass threshold=0).
    targets:    `{direction name: attribute}`; defaults to each direction's `provenance['attribute']` (InterFaceGAN).
                Directions without a target (SeFa, GANSpace) get flip_rate NaN and interference over all attributes.
    render:     `render(ws, items) -> images` in place of `G.synthesis(ws, noise_mode=noise_mode)`, told which items
                (a slice of `ws`) the batch's codes belong to: for items with a generator of their own (pivotal
                tuning: `lambda ws, items: pivotal.render(G, ws, deltas.select(items))`).
    """
    if render is None:
        render = lambda codes, items: G.synthesis(codes, noise_mode=noise_mode)  # noqa: E731
    x = _as_wplus(G, ws)
    z_space = [d.name for d in directions if d.space == "z"]
    if z_space:
        raise ValueError(f"directions {z_space} live in Z; edits here move ws: fit them in W or W+")
    targets = {d.name: (targets or {}).get(d.name, d.provenance.get("attribute")) for d in directions}
    tallies = {(d.name, float(s)): _Tally() for d in directions for s in strengths}
    names: list[str] | None = None
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        items = slice(start, start + len(batch))
        base_img = render(batch, items)
        base = score_dict(classifier(base_img), attributes)
        names = names or _check_targets(list(base), targets)
        for d in directions:
            edited = edit.apply(batch, d, list(map(float, strengths)))  # [B, S, num_ws, w_dim]
            for j, s in enumerate(strengths):
                img = render(edited[:, j], items)
                after = score_dict(classifier(img), attributes)
                _update(tallies[d.name, float(s)], base, after, targets[d.name], float(s), threshold,
                        base_img, img, perceptual)
    return [_row(d, float(s), targets[d.name], names or [], tallies[d.name, float(s)], perceptual is not None)
            for d in directions for s in strengths]


def _as_wplus(G: torch.nn.Module, ws: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(ws, dtype=torch.float32).to(generator_device(G))
    if x.ndim == 2:
        x = x.unsqueeze(1).repeat(1, G.num_ws, 1)
    if x.ndim != 3 or x.shape[1:] != (G.num_ws, G.w_dim):
        raise ValueError(f"ws must be [N, {G.num_ws}, {G.w_dim}] or [N, {G.w_dim}], got {list(x.shape)}")
    return x


def _check_targets(names: list[str], targets: Mapping[str, str | None]) -> list[str]:
    unknown = {d: t for d, t in targets.items() if t is not None and t not in names}
    if unknown:
        raise KeyError(f"target attributes {unknown} are not among the classifier's attributes {names}")
    return names


def _update(tally: _Tally, base: dict[str, np.ndarray], after: dict[str, np.ndarray], target: str | None,
            strength: float, threshold: float, base_img: torch.Tensor, img: torch.Tensor,
            perceptual: Perceptual | None) -> None:
    tally.num_items += len(base_img)
    for name in base:
        before_on, after_on = base[name] >= threshold, after[name] >= threshold
        tally.changed[name] = tally.changed.get(name, 0) + int(np.sum(before_on != after_on))
        tally.abs_delta[name] = tally.abs_delta.get(name, 0.0) + float(np.abs(after[name] - base[name]).sum())
    if target is not None and strength != 0:
        before_on, after_on = base[target] >= threshold, after[target] >= threshold
        eligible = ~before_on if strength > 0 else before_on
        tally.eligible += int(eligible.sum())
        tally.flipped += int(np.sum(eligible & (after_on != before_on)))
        tally.target_delta += float((after[target] - base[target]).sum())
    tally.pixel += float((img - base_img).abs().mean(dim=(1, 2, 3)).sum())
    if perceptual is not None:
        tally.perceptual += float(torch.as_tensor(perceptual(base_img, img)).sum())


def _row(d: Direction, strength: float, target: str | None, names: list[str], tally: _Tally,
         with_perceptual: bool) -> dict:
    n = max(tally.num_items, 1)
    others = [name for name in names if name != target]
    change = {name: tally.changed[name] / n for name in others}
    dprob = {name: tally.abs_delta[name] / n for name in others}
    row = dict(direction=d.name, method=d.method, target=target, strength=strength,
               flip_rate=tally.flipped / tally.eligible if tally.eligible else float("nan"),
               num_eligible=tally.eligible, num_items=tally.num_items,
               target_delta=tally.target_delta / n if target is not None else float("nan"),
               interference=float(np.mean(list(change.values()))) if change else float("nan"),
               interference_max=max(change.values(), default=float("nan")),
               interference_score=float(np.mean(list(dprob.values()))) if dprob else float("nan"),
               pixel_change=tally.pixel / n)
    if with_perceptual:
        row["perceptual_change"] = tally.perceptual / n
    row.update({f"change:{name}": value for name, value in change.items()})
    row.update({f"dscore:{name}": value for name, value in dprob.items()})
    return row
