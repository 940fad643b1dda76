"""Latent edits: move codes along a direction, interpolate between items, mix styles.

Codes are `[N, D]` (Z or W) or `[N, num_ws, w_dim]` (W+), torch tensors or numpy arrays; results come back as the same
type. Layer ranges index ws rows. In StyleGAN2, ws row k feeds synthesis conv k (0 = b4.conv1, 1 = b8.conv0,
2 = b8.conv1, ...), the toRGB of the block before (odd k), and the last row only the final toRGB; row k's resolution
is that of its conv (the last row's: the image resolution). Named ranges follow the StyleGAN paper's split by
resolution (Karras et al. 2019, Sec. 3.1): coarse 4-8 px, middle 16-32 px, fine 64 px and up. For a 1024 px
generator (num_ws 18): coarse 0-2, middle 3-6, fine 7-17; for 64 px (num_ws 10): coarse 0-2, middle 3-6, fine 7-9.
Generators below 64 px have no fine rows.

StyleGAN3 rows do not follow from num_ws: row 0 steers the input's geometry, row i + 1 layer i, and each controls the
band its layer's cutoff allows (`G.ws_resolutions`, the power of two nearest 2 fc; 1024 px: coarse 0-3, middle 4-6,
fine 7-15). Named ranges of a StyleGAN3 generator need `resolutions=G.ws_resolutions`; without it the StyleGAN2 rule
is assumed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ganinv.directions.direction import Direction

RANGES = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, None)}
Codes = torch.Tensor | np.ndarray
LayerSpec = str | Sequence[int] | None


def ws_resolutions(num_ws: int) -> list[int]:
    """Resolution of each ws row of a StyleGAN2 generator with `num_ws` = 2 * log2(img_resolution) - 2 rows."""
    if num_ws < 2 or num_ws % 2:
        raise ValueError(f"num_ws must be even and >= 2 (StyleGAN2: 2 * log2(resolution) - 2), got {num_ws}")
    img_resolution = 2 ** ((num_ws + 2) // 2)
    return [2 ** (2 + (k + 1) // 2) for k in range(num_ws - 1)] + [img_resolution]


def layer_ranges(num_ws: int, resolutions: Sequence[int] | None = None) -> dict[str, tuple[int, ...]]:
    """`{'coarse': rows, 'middle': rows, 'fine': rows}` by resolution (see the module doc); a range may be empty.
    `resolutions`: each row's resolution (`G.ws_resolutions`); default StyleGAN2's `ws_resolutions(num_ws)`."""
    resolutions = _row_resolutions(num_ws, resolutions)
    return {name: tuple(k for k, res in enumerate(resolutions) if lo <= res and (hi is None or res <= hi))
            for name, (lo, hi) in RANGES.items()}


def _row_resolutions(num_ws: int, resolutions: Sequence[int] | None) -> list[int]:
    if resolutions is None:
        return ws_resolutions(num_ws)
    if len(resolutions) != num_ws:
        raise ValueError(f"resolutions must give one resolution per ws row ({num_ws}), got {len(resolutions)}")
    return [int(r) for r in resolutions]


def resolve_layers(layers: LayerSpec, num_ws: int, resolutions: Sequence[int] | None = None) -> tuple[int, ...]:
    """ws rows from `None` / `'all'` (every row), `'coarse'` / `'middle'` / `'fine'`, or explicit indices.
    `resolutions`: see `layer_ranges` (needed for StyleGAN3's named ranges)."""
    if layers is None or layers == "all":
        return tuple(range(num_ws))
    if isinstance(layers, str):
        ranges = layer_ranges(num_ws, resolutions)
        if layers not in ranges:
            raise ValueError(f"layers must be 'all', one of {sorted(ranges)} or a list of ws indices, got {layers!r}")
        if not ranges[layers]:
            px = _row_resolutions(num_ws, resolutions)[-1]
            raise ValueError(f"a generator with num_ws={num_ws} ({px} px) has no {layers!r} "
                             f"layers ({_describe(layers)}): pass explicit ws indices")
        return ranges[layers]
    rows = tuple(sorted({int(i) for i in layers}))
    if not rows or rows[0] < 0 or rows[-1] >= num_ws:
        raise ValueError(f"layers must be non-empty ws indices in [0, {num_ws - 1}], got {list(layers)}")
    return rows


def apply(ws: Codes, direction: Direction | Codes, strengths: float | Sequence[float] | Codes, *,
          layers: LayerSpec = None, resolutions: Sequence[int] | None = None) -> Codes:
    """`ws + strength * direction`, on the ws rows in `layers` only.

    ws:        `[N, D]` or `[N, num_ws, w_dim]`.
    direction: a `Direction` (its `vector * scale`; its `layers` unless `layers` is given), or a vector `[D]`,
               `[1, D]`, `[num_ws, w_dim]` or `[1, num_ws, w_dim]`; a `[D]` vector edits every chosen row alike.
    strengths: a scalar (result shaped like ws) or `[S]` (result `[N, S, ...]`, one edit per strength).
    layers:    see `resolve_layers`; needs W+ codes. resolutions: `G.ws_resolutions` for StyleGAN3's named ranges.
    """
    x, as_numpy = _as_tensor(ws, "ws")
    vector, default_layers = _direction_vector(direction)
    layers = default_layers if layers is None else layers
    delta = _delta(x, vector.to(x), layers, resolutions)
    s = torch.as_tensor(np.asarray(strengths, dtype=np.float32) if not isinstance(strengths, torch.Tensor)
                        else strengths).to(x)
    if s.ndim == 0:
        out = x + s * delta
    elif s.ndim == 1:
        out = x.unsqueeze(1) + s.view(1, -1, *([1] * (x.ndim - 1))) * delta
    else:
        raise ValueError(f"strengths must be a scalar or [S], got shape {list(s.shape)}")
    return _back(out, as_numpy)


def interpolate(ws_a: Codes, ws_b: Codes, num_steps: int = 8, *, method: str = "linear") -> Codes:
    """`[N, num_steps, ...]` codes from ws_a (step 0) to ws_b (last step), item by item.

    method: `linear` (W / W+, where StyleGAN's perceptual path length uses lerp) or `slerp` (spherical, for Gaussian
            Z; angle between the codes, applied to the unnormalised codes).
    """
    a, as_numpy = _as_tensor(ws_a, "ws_a")
    b, _ = _as_tensor(ws_b, "ws_b")
    if a.shape != b.shape:
        raise ValueError(f"ws_a and ws_b must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2 (both endpoints), got {num_steps}")
    t = torch.linspace(0, 1, num_steps, dtype=a.dtype, device=a.device).view(1, -1, *([1] * (a.ndim - 1)))
    a, b = a.unsqueeze(1), b.unsqueeze(1)
    if method == "linear":
        return _back(a + t * (b - a), as_numpy)
    if method != "slerp":
        raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")
    dims = tuple(range(2, a.ndim))
    cos = ((a * b).sum(dims, keepdim=True) / (a.norm(dim=dims, keepdim=True) * b.norm(dim=dims, keepdim=True)))
    omega = torch.arccos(cos.clamp(-1, 1))
    sin = torch.sin(omega)
    safe = sin.abs() > 1e-6  # (anti)parallel codes: fall back to lerp
    wa = torch.where(safe, torch.sin((1 - t) * omega) / torch.where(safe, sin, 1), 1 - t)
    wb = torch.where(safe, torch.sin(t * omega) / torch.where(safe, sin, 1), t)
    return _back(wa * a + wb * b, as_numpy)


def style_mix(ws: Codes, ws_style: Codes, layers: LayerSpec, *, resolutions: Sequence[int] | None = None) -> Codes:
    """ws with the rows in `layers` taken from ws_style (StyleGAN style mixing, Karras et al. 2019, Sec. 3.1).

    ws, ws_style: `[..., num_ws, w_dim]`, broadcastable against each other: `ws[:, None]` and `ws_style[None]` give
                  the paper's grid of every content row mixed with every style column.
    layers:       `'coarse'` (pose, face shape), `'middle'`, `'fine'` (colour scheme), or ws indices.
    resolutions:  `G.ws_resolutions` for StyleGAN3's named ranges (see `layer_ranges`).
    """
    x, as_numpy = _as_tensor(ws, "ws")
    style, _ = _as_tensor(ws_style, "ws_style")
    if x.ndim < 2 or style.ndim < 2 or x.shape[-2:] != style.shape[-2:]:
        raise ValueError(f"ws and ws_style must be [..., num_ws, w_dim] with the same num_ws and w_dim, "
                         f"got {list(x.shape)} and {list(style.shape)}")
    rows = resolve_layers(layers, x.shape[-2], resolutions)
    mask = torch.zeros(x.shape[-2], dtype=torch.bool, device=x.device)
    mask[list(rows)] = True
    return _back(torch.where(mask[:, None], style.to(x), x), as_numpy)


def _direction_vector(direction: Direction | Codes) -> tuple[torch.Tensor, LayerSpec]:
    if isinstance(direction, Direction):
        return torch.from_numpy(direction.vector * np.float32(direction.scale)), direction.layers
    vector, _ = _as_tensor(direction, "direction")
    if vector.ndim in (2, 3) and vector.shape[0] == 1:
        vector = vector[0]
    return vector, None


def _delta(x: torch.Tensor, vector: torch.Tensor, layers: LayerSpec,
           resolutions: Sequence[int] | None) -> torch.Tensor:
    """The edit of one unit of strength, shaped like one code."""
    if x.ndim == 2:
        if vector.shape != x.shape[1:]:
            raise ValueError(f"direction of shape {list(vector.shape)} does not fit codes {list(x.shape)}"
                             + ("; per-layer (W+) directions need ws [N, num_ws, w_dim]" if vector.ndim == 2 else ""))
        if layers is not None:
            raise ValueError("layer ranges need W+ codes: pass ws as [N, num_ws, w_dim] "
                             "(W codes broadcast with ws.unsqueeze(1).repeat(1, num_ws, 1))")
        return vector
    if x.ndim != 3:
        raise ValueError(f"ws must be [N, D] or [N, num_ws, w_dim], got {list(x.shape)}")
    num_ws, w_dim = x.shape[1:]
    if vector.shape not in ((w_dim,), (num_ws, w_dim)):
        raise ValueError(f"direction of shape {list(vector.shape)} does not fit ws {list(x.shape)}: "
                         f"want [{w_dim}] or [{num_ws}, {w_dim}]")
    mask = torch.zeros(num_ws, dtype=x.dtype, device=x.device)
    mask[list(resolve_layers(layers, num_ws, resolutions))] = 1
    return vector.expand(num_ws, w_dim) * mask[:, None]


def _as_tensor(value: Codes, name: str) -> tuple[torch.Tensor, bool]:
    if isinstance(value, torch.Tensor):
        return (value if value.is_floating_point() else value.float()), False
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.asarray(value, dtype=np.float32)), True
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")


def _back(value: torch.Tensor, as_numpy: bool) -> Codes:
    return value.detach().cpu().numpy() if as_numpy else value


def _describe(name: str) -> str:
    lo, hi = RANGES[name]
    return f"{lo} px and up" if hi is None else f"{lo}-{hi} px"
