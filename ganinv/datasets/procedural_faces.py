"""Procedural faces: a small, fully known world of cartoon faces for offline training, inversion and editing tests.

Each image is a deterministic function of `(seed, index)`. Ten ground-truth attributes (`ATTRIBUTES`) are sampled
first; nuisance factors (position and scale jitter, hair style, eye/mouth/nose details, shirt, background
saturation) come from a separate random stream (`sample_style`), so changing one attribute and re-rendering keeps
everything else fixed. Faces are drawn with Pillow at 4x the output size and downsampled with Lanczos antialiasing.

Attributes are independent except for two deliberate correlations, so that conditional InterFaceGAN boundaries
(Shen et al. 2020, sec. 2.3) have something to disentangle:

1. `eyeglasses` depends on `blond_hair`: P(glasses | blond) = 0.6, P(glasses | not blond) = 0.15 in version 1
   (marginal 0.3075 with P(blond) = 0.35), 0.5 and 0.2 in version 2 (marginal 0.305).
2. `skin_tone` depends on `blond_hair`: u ~ U(0, 1); skin_tone = u**2 for blond faces (mean 1/3), u otherwise
   (mean 1/2).

Two versions of the world share the attribute table, the sampling streams and most of the drawing (`WORLDS`,
`version=`; `SHIPPED_VERSION` is the one the built-in models were trained on):
- version 1 draws each binary attribute as one of a few fixed looks;
- version 2 gives smiling, eyes_open and blond_hair a continuous *level* in [0, 1] with a gap around the threshold
  0.5 (`LEVEL_GAP`): the binary attribute says on which side the level lies, a nuisance draw how far from it, and the
  look changes continuously with the level (a frown flattens, then a grin opens wider; a lid line, then a wider open
  eye; black through brown, then golden to pale hair). A generator can then move across an attribute along a
  path of images, which is what a linear boundary in its latent space needs. Features are larger and frames
  thicker (64 px), and the eyeglasses-blond correlation is milder.

Determinism: every random draw uses `numpy.random.default_rng(SeedSequence([seed, index, stream]))`; geometry is
plain float arithmetic; Pillow rasterises it; the lighting is integer fixed-point. No reductions, no threads, no
global state. Pixels are bit-identical for a given Pillow version (tested in a spawned process); Pillow has changed
its ellipse rasteriser between major versions, so pin Pillow when datasets must match byte for byte.
"""

from __future__ import annotations

import colorsys
import csv
import math
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class Attribute:
    name: str
    kind: Literal["binary", "continuous"]
    range: tuple[float, float]
    description: str


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("smiling", "binary", (0, 1), "open grin or upturned arc (1) vs flat or downturned closed mouth (0)"),
    Attribute("eyeglasses", "binary", (0, 1), "dark round or square frames around both eyes, with bridge and temples"),
    Attribute("blond_hair", "binary", (0, 1), "pale-to-golden yellow hair and brows (1) vs black/brown/auburn (0)"),
    Attribute("hat", "binary", (0, 1), "a saturated beanie or brimmed hat covering the top of the head"),
    Attribute("eyes_open", "binary", (0, 1), "white eyes with irises (1) vs closed eyes drawn as dark arcs (0)"),
    Attribute("skin_tone", "continuous", (0.0, 1.0), "0 = lightest ... 1 = darkest skin colour"),
    Attribute("face_width", "continuous", (0.65, 0.95), "width / height of the face ellipse (before yaw)"),
    Attribute("yaw", "continuous", (-1.0, 1.0), "head turn: features shift to the image right for +1 (about 35 deg)"),
    Attribute("background_hue", "continuous", (0.0, 0.7), "HSV hue of the background: 0 red ... 0.7 violet-blue"),
    Attribute("lighting", "continuous", (-1.0, 1.0), "horizontal light direction: +1 = the image-right side is lit"),
)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES)
BY_NAME: dict[str, Attribute] = {a.name: a for a in ATTRIBUTES}

@dataclass(frozen=True)
class WorldSpec:
    """What a world version draws: the binary rates and the deliberate eyeglasses-blond correlation."""
    version: int
    p_blond: float
    p_glasses_given_blond: float
    p_glasses_given_not_blond: float
    p_smiling: float = 0.5
    p_hat: float = 0.3
    p_eyes_open: float = 0.75

    @property
    def binary_rates(self) -> dict[str, float]:
        return {"smiling": self.p_smiling,
                "eyeglasses": self.p_blond * self.p_glasses_given_blond
                + (1 - self.p_blond) * self.p_glasses_given_not_blond,
                "blond_hair": self.p_blond, "hat": self.p_hat, "eyes_open": self.p_eyes_open}


WORLDS: dict[int, WorldSpec] = {
    1: WorldSpec(1, p_blond=0.35, p_glasses_given_blond=0.6, p_glasses_given_not_blond=0.15),  # eyeglasses 0.3075
    2: WorldSpec(2, p_blond=0.35, p_glasses_given_blond=0.5, p_glasses_given_not_blond=0.2),  # eyeglasses 0.305
}
SHIPPED_VERSION = 1  # the world the built-in generator, encoder and classifier (ganinv/assets/faces64) learnt
LEVEL_GAP = 0.15  # version 2: levels lie in [0, 0.5 - gap] or [0.5 + gap, 1]
LEVELLED = ("smiling", "eyes_open", "blond_hair")  # version 2's binary attributes with a continuous level


def world(version: int | None = None) -> WorldSpec:
    """The `WorldSpec` of `version` (None: `SHIPPED_VERSION`); an unknown version is a ValueError naming them."""
    version = SHIPPED_VERSION if version is None else version
    if version not in WORLDS:
        raise ValueError(f"procedural-faces world version {version!r} does not exist; versions: {sorted(WORLDS)}")
    return WORLDS[version]


CONTINUOUS_DECIMALS = 4  # sampled values are rounded so that attributes.csv round-trips exactly
LIGHTING_STRENGTH = 0.32  # brightness factor 1 +- 0.32 across the head at |lighting| = 1

_ATTRIBUTE_STREAM, _STYLE_STREAM, _COUNTERFACTUAL_STREAM, _COUNTERFACTUAL_ANY_STREAM = 0, 1, 2, 3


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), stream]))


# ---------------------------------------------------------------------------------------------------------------
# Sampling


def sample_attributes(seed: int, index: int, *, version: int | None = None) -> dict[str, int | float]:
    """The ground-truth attributes of face `index` of world `seed`: binary as int 0/1, continuous as float."""
    spec = world(version)
    u = _rng(seed, index, _ATTRIBUTE_STREAM).random(len(ATTRIBUTES))
    blond = int(u[2] < spec.p_blond)
    p_glasses = spec.p_glasses_given_blond if blond else spec.p_glasses_given_not_blond
    skin_u = u[5] ** 2 if blond else u[5]  # deliberate correlation 2 (module docstring)
    attrs: dict[str, int | float] = {
        "smiling": int(u[0] < spec.p_smiling),
        "eyeglasses": int(u[1] < p_glasses),
        "blond_hair": blond,
        "hat": int(u[3] < spec.p_hat),
        "eyes_open": int(u[4] < spec.p_eyes_open),
    }
    for name, v in zip(ATTRIBUTE_NAMES[5:], [skin_u, *u[6:]]):
        lo, hi = BY_NAME[name].range
        attrs[name] = round(float(lo + (hi - lo) * v), CONTINUOUS_DECIMALS)
    return attrs


def sample_style(seed: int, index: int) -> dict[str, float]:
    """Nuisance factors of face `index` (independent of its attributes): jitter, hair style, details, colours, and
    how far from the threshold version 2's levels lie (`*_depth`; version 1 ignores them). The same for every
    version: the draws version 2 added come after version 1's."""
    r = _rng(seed, index, _STYLE_STREAM)
    u = r.random(24)
    style = {
        "dx": (u[0] - 0.5) * 0.06, "dy": (u[1] - 0.5) * 0.06, "scale": 0.93 + 0.14 * u[2],
        "hair_style": int(u[3] * 6), "hair_shade": u[4], "dark_hair": int(u[5] * 4), "hairline": u[6],
        "hairline_tilt": (u[7] - 0.5) * (0.5 if u[8] < 0.4 else 0.0),
        "hat_style": int(u[9] < 0.5), "hat_hue": u[10], "eye_size": 0.9 + 0.2 * u[11], "iris": int(u[12] * 4),
        "brow": u[13], "brow_tilt": (u[14] - 0.5) * 0.5, "nose": int(u[15] * 3), "mouth_width": 0.85 + 0.3 * u[16],
        "mouth_variant": u[17], "blush": float(u[18] < 0.3), "glasses_style": int(u[19] < 0.5),
        "glasses_color": int(u[20] * 4), "shirt_hue": u[21], "bg_sat": 0.35 + 0.25 * u[22], "bg_val": u[23],
        "curl_seed": int(r.integers(0, 2**31)),
    }
    depth = r.random(len(LEVELLED))
    style.update({f"{name}_depth": float(d) for name, d in zip(LEVELLED, depth)})
    return style


def attribute_level(attrs: Mapping[str, float], style: Mapping[str, float], name: str) -> float:
    """Version 2's level of a binary attribute in `LEVELLED`: 0.5 +- (gap + (0.5 - gap) * depth), on the side the
    binary value says. Flipping the attribute mirrors the level across 0.5 and keeps its distance."""
    side = 1.0 if attrs[name] else -1.0
    return 0.5 + side * (LEVEL_GAP + (0.5 - LEVEL_GAP) * float(style[f"{name}_depth"]))


DEFAULT_STYLE: dict[str, float] = {
    "dx": 0.0, "dy": 0.0, "scale": 1.0, "hair_style": 0, "hair_shade": 0.5, "dark_hair": 1, "hairline": 0.5,
    "hairline_tilt": 0.0, "hat_style": 0, "hat_hue": 0.5, "eye_size": 1.0, "iris": 0, "brow": 0.5,
    "brow_tilt": 0.0, "nose": 0, "mouth_width": 1.0, "mouth_variant": 0.0, "blush": 0.0, "glasses_style": 0,
    "glasses_color": 0, "shirt_hue": 0.6, "bg_sat": 0.5, "bg_val": 0.5, "curl_seed": 0,
    **{f"{name}_depth": 0.5 for name in LEVELLED},
}


def parse_procedural_spec(spec: str) -> tuple[int, int, int | None]:
    """`procedural:N:SEED[:vVERSION]` -> (N, SEED, VERSION or None for the shipped one); a malformed spec is a
    ValueError naming it and the form."""
    parts = spec.split(":")
    try:
        if parts[0] != "procedural" or len(parts) not in (3, 4) or (len(parts) == 4 and parts[3][:1] != "v"):
            raise ValueError
        n, seed = int(parts[1]), int(parts[2])
        version = world(int(parts[3][1:])).version if len(parts) == 4 else None
        if n < 1 or seed < 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"{spec!r}: expected procedural:N:SEED or procedural:N:SEED:vVERSION (N >= 1 faces of world "
                         f"SEED >= 0, VERSION one of {sorted(WORLDS)})") from None
    return n, seed, version


# ---------------------------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class _Head:
    """Geometry in canvas pixels: face ellipse centre and radii, feature centre `fx`, pixel scale `k`."""
    cx: float
    cy: float
    rx: float
    ry: float
    fx: float
    yaw: float
    k: float

    def w(self, width: float) -> int:
        return max(1, round(width * self.k))


def _ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, **kw: Any) -> None:
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], **kw)


def _box(cx: float, cy: float, rx: float, ry: float) -> list[float]:
    return [cx - rx, cy - ry, cx + rx, cy + ry]


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def _scale(c: Sequence[float], f: float) -> tuple[int, int, int]:
    return tuple(min(255, round(x * f)) for x in c)  # type: ignore[return-value]


_SKIN = ((244, 214, 190), (205, 156, 116), (112, 74, 52))
_BLOND = ((250, 228, 140), (222, 178, 72))
_DARK_HAIR = ((34, 28, 28), (72, 46, 30), (104, 66, 40), (146, 66, 34))
_IRIS = ((92, 58, 30), (60, 110, 170), (70, 120, 70), (40, 32, 30))
_GLASSES = ((20, 20, 24), (70, 40, 25), (110, 20, 30), (25, 35, 90))
_HAT_HUES = (0.0, 0.33, 0.5, 0.6, 0.75, 0.88)


def _skin_color(tone: float) -> tuple[int, int, int]:
    return _mix(_SKIN[0], _SKIN[1], tone * 2) if tone < 0.5 else _mix(_SKIN[1], _SKIN[2], tone * 2 - 1)


def _hair_color(blond: int, style: Mapping[str, float]) -> tuple[int, int, int]:
    if blond:
        return _mix(_BLOND[0], _BLOND[1], style["hair_shade"])
    return _scale(_DARK_HAIR[int(style["dark_hair"])], 0.9 + 0.2 * style["hair_shade"])


def _head_geometry(attrs: Mapping[str, float], style: Mapping[str, float], canvas: int) -> _Head:
    k = canvas / 256
    ry = 76 * style["scale"] * k
    yaw = float(attrs["yaw"])
    rx = ry * float(attrs["face_width"]) * (1 - 0.12 * abs(yaw))  # foreshortening of a turned head
    cx = (128 + 256 * style["dx"]) * k
    cy = (122 + 256 * style["dy"]) * k
    return _Head(cx=cx, cy=cy, rx=rx, ry=ry, fx=cx + 0.3 * yaw * rx, yaw=yaw, k=k)


def _draw_background(attrs: Mapping[str, float], style: Mapping[str, float], canvas: int) -> Image.Image:
    """A vertical value ramp (nuisance) in the background hue."""
    v = 0.74 + 0.18 * style["bg_val"]
    hue = float(attrs["background_hue"])
    top, bottom = (np.asarray(_hsv(hue, style["bg_sat"], v * f), np.float64) for f in (1.0, 0.88))
    ramp = np.linspace(0.0, 1.0, canvas)[:, None]
    column = np.rint(top + (bottom - top) * ramp).astype(np.uint8)
    return Image.fromarray(column[:, None, :], "RGB").resize((canvas, canvas), Image.Resampling.NEAREST)


def _draw_body(d: ImageDraw.ImageDraw, h: _Head, skin: tuple, style: Mapping[str, float]) -> None:
    shirt = _hsv(style["shirt_hue"], 0.55, 0.35 + 0.4 * style["bg_val"])
    bx = h.cx - 0.1 * h.yaw * h.rx
    _ellipse(d, bx, h.cy + 2.35 * h.ry, 2.1 * h.rx, 1.05 * h.ry, fill=shirt)
    d.rectangle([bx - 0.42 * h.rx, h.cy + 0.4 * h.ry, bx + 0.42 * h.rx, h.cy + 1.4 * h.ry], fill=_scale(skin, 0.88))
    _ellipse(d, bx, h.cy + 1.38 * h.ry, 0.42 * h.rx, 0.16 * h.ry, fill=_scale(skin, 0.88))


def _draw_back_hair(d: ImageDraw.ImageDraw, h: _Head, hair: tuple, style: Mapping[str, float]) -> None:
    """Long (style 1) and bob (style 2) hair hangs behind the neck."""
    hx = h.cx - 0.08 * h.yaw * h.rx
    if style["hair_style"] == 1:
        d.rounded_rectangle([hx - 1.28 * h.rx, h.cy - 0.5 * h.ry, hx + 1.28 * h.rx, h.cy + 1.3 * h.ry],
                            radius=0.5 * h.rx, fill=hair)
    elif style["hair_style"] == 2:
        d.rounded_rectangle([hx - 1.3 * h.rx, h.cy - 0.5 * h.ry, hx + 1.3 * h.rx, h.cy + 0.72 * h.ry],
                            radius=0.3 * h.rx, fill=hair)


def _draw_ears(d: ImageDraw.ImageDraw, h: _Head, skin: tuple) -> None:
    for side in (-1, 1):
        turn = side * h.yaw  # > 0: this ear turns away from the viewer
        width = 0.2 * h.rx * (1 - 0.8 * max(turn, 0.0) + 0.3 * max(-turn, 0.0))
        _ellipse(d, h.cx + side * 0.97 * h.rx, h.cy - 0.02 * h.ry, width, 0.24 * h.ry, fill=_scale(skin, 0.93))


def _draw_hair_cap(d: ImageDraw.ImageDraw, h: _Head, hair: tuple, style: Mapping[str, float]) -> None:
    hx, hy = h.cx - 0.08 * h.yaw * h.rx, h.cy - 0.16 * h.ry
    _ellipse(d, hx, hy, 1.2 * h.rx, 1.0 * h.ry, fill=hair)
    if style["hair_style"] == 3:  # curly: a ring of curls around the cap
        r = np.random.default_rng(int(style["curl_seed"]))
        for a in np.linspace(150, 390, 13):
            t = math.radians(a + 6 * r.random())
            _ellipse(d, hx + 1.15 * h.rx * math.cos(t), hy + 0.95 * h.ry * math.sin(t), 0.26 * h.rx,
                     0.26 * h.rx, fill=hair)
    elif style["hair_style"] == 4:  # bun
        _ellipse(d, hx, hy - 1.02 * h.ry, 0.38 * h.rx, 0.3 * h.ry, fill=hair)


def _draw_face(d: ImageDraw.ImageDraw, h: _Head, skin: tuple, hair: tuple, style: Mapping[str, float]) -> None:
    face = _box(h.cx, h.cy, h.rx, h.ry)
    d.ellipse(face, fill=skin)
    # fringe: a chord of the face ellipse, so it never spills outside the head; unequal angles tilt the hairline
    s = 0.5 + 0.25 * style["hairline"]
    s_left = min(0.95, max(0.3, s + style["hairline_tilt"]))
    s_right = min(0.95, max(0.3, s - style["hairline_tilt"]))
    d.chord(face, 180 + math.degrees(math.asin(s_left)), 360 - math.degrees(math.asin(s_right)), fill=hair)
    if style["blush"]:
        for side in (-1, 1):
            _ellipse(d, h.fx + side * 0.5 * h.rx, h.cy + 0.25 * h.ry, 0.15 * h.rx, 0.09 * h.ry,
                     fill=_mix(skin, (236, 96, 110), 0.35))


def _eye_centres(h: _Head, style: Mapping[str, float], scale: float = 1.0) -> list[tuple[float, float, float]]:
    """(x, y, half-width) per eye; the eye on the side the head turns to is compressed (foreshortening)."""
    d, y, ew = 0.42 * h.rx, h.cy - 0.08 * h.ry, 0.26 * h.rx * style["eye_size"] * scale
    return [(h.fx + side * d * (1 - 0.2 * side * h.yaw), y, ew * (1 - 0.25 * max(side * h.yaw, 0.0)))
            for side in (-1, 1)]


def _draw_eyes(d: ImageDraw.ImageDraw, h: _Head, attrs: Mapping[str, float], hair: tuple,
               style: Mapping[str, float]) -> None:
    brow = _scale(hair, 0.85)
    for side, (x, y, ew) in zip((-1, 1), _eye_centres(h, style)):
        eh = 0.62 * ew
        tilt = style["brow_tilt"] * side * eh
        d.line([(x - ew, y - 1.9 * eh + tilt), (x + ew, y - 1.9 * eh - tilt)], fill=brow,
               width=h.w(5 + 4 * style["brow"]))
        if attrs["eyes_open"]:
            _ellipse(d, x, y, ew, eh, fill=(252, 252, 250), outline=(40, 30, 30), width=h.w(3))
            ix = x + 0.3 * h.yaw * ew
            _ellipse(d, ix, y, 0.72 * eh, 0.72 * eh, fill=_IRIS[int(style["iris"])])
            _ellipse(d, ix, y, 0.36 * eh, 0.36 * eh, fill=(10, 10, 10))
            _ellipse(d, ix + 0.25 * eh, y - 0.25 * eh, 0.14 * eh, 0.14 * eh, fill=(255, 255, 255))
        else:  # closed: a downturned lid line with a few lashes
            d.arc(_box(x, y - 0.5 * eh, ew, eh), 20, 160, fill=(40, 30, 30), width=h.w(5))


def _draw_nose(d: ImageDraw.ImageDraw, h: _Head, skin: tuple, style: Mapping[str, float]) -> None:
    nx, ny, shade = h.cx + 0.45 * h.yaw * h.rx, h.cy + 0.18 * h.ry, _scale(skin, 0.78)
    if style["nose"] == 0:
        _ellipse(d, nx, ny, 0.1 * h.rx, 0.07 * h.ry, fill=shade)
    elif style["nose"] == 1:
        d.line([(nx, ny - 0.2 * h.ry), (nx - 0.08 * h.rx, ny + 0.04 * h.ry), (nx + 0.06 * h.rx, ny + 0.04 * h.ry)],
               fill=shade, width=h.w(4), joint="curve")
    else:
        d.arc(_box(nx, ny - 0.03 * h.ry, 0.11 * h.rx, 0.07 * h.ry), 0, 180, fill=shade, width=h.w(4))


def _draw_mouth(d: ImageDraw.ImageDraw, h: _Head, attrs: Mapping[str, float], skin: tuple,
                style: Mapping[str, float]) -> None:
    mx, my = h.cx + 0.3 * h.yaw * h.rx, h.cy + 0.47 * h.ry
    mw = 0.4 * h.rx * style["mouth_width"] * (1 - 0.15 * abs(h.yaw))
    lip = _mix(skin, (120, 22, 34), 0.85)
    variant = style["mouth_variant"] < 0.7
    if attrs["smiling"] and variant:  # open grin: lower half-ellipse, teeth on top
        mouth = _box(mx, my - 0.1 * mw, mw, 0.7 * mw)
        d.chord(mouth, 0, 180, fill=(250, 250, 245))
        d.chord(mouth, 35, 145, fill=(110, 20, 30))
        d.arc(mouth, 0, 180, fill=lip, width=h.w(3))
        d.line([(mx - mw, my - 0.1 * mw), (mx + mw, my - 0.1 * mw)], fill=lip, width=h.w(3))
    elif attrs["smiling"]:  # closed smile: an upturned arc
        d.arc(_box(mx, my - 0.55 * mw, 1.05 * mw, 0.85 * mw), 20, 160, fill=lip, width=h.w(7))
    elif variant:  # neutral: a flat line
        d.line([(mx - 0.75 * mw, my), (mx + 0.75 * mw, my)], fill=lip, width=h.w(7))
    else:  # slight frown: a downturned arc
        d.arc(_box(mx, my + 0.4 * mw, 0.75 * mw, 0.5 * mw), 205, 335, fill=lip, width=h.w(7))


def _draw_glasses(d: ImageDraw.ImageDraw, h: _Head, style: Mapping[str, float], *, eye_scale: float = 1.0,
                  lens: float = 1.4, frame: float = 0.45) -> None:
    eyes = _eye_centres(h, style, eye_scale)
    color, width = _GLASSES[int(style["glasses_color"])], max(1, round(frame * eyes[0][2] * (1 - 0.15 * abs(h.yaw))))
    for side, (x, y, ew) in zip((-1, 1), eyes):
        r = lens * ew  # the lens clears the eye (half-height 0.62 ew) even with the frame width inside it
        if style["glasses_style"]:
            d.rounded_rectangle(_box(x, y, r, 0.8 * r), radius=0.3 * r, outline=color, width=width)
        else:
            _ellipse(d, x, y, r, 0.9 * r, outline=color, width=width)
        d.line([(x + 0.25 * r, y - 0.6 * r), (x + 0.6 * r, y - 0.25 * r)], fill=(240, 246, 255),
               width=max(1, round(0.7 * width)))  # a cartoon glint keeps the lens visible on dark skin
        edge = h.cx + side * 0.98 * h.rx
        d.line([(x + side * r, y), (edge, y - 0.05 * h.ry)], fill=color, width=max(1, width - 1))
    (xl, y, ewl), (xr, _, ewr) = eyes
    d.line([(xl + lens * ewl, y - 0.1 * h.ry), (xr - lens * ewr, y - 0.1 * h.ry)], fill=color, width=width)


def _draw_hat(d: ImageDraw.ImageDraw, h: _Head, style: Mapping[str, float]) -> None:
    hue = _HAT_HUES[int(style["hat_hue"] * len(_HAT_HUES))]
    color, band = _hsv(hue, 0.75, 0.8), _hsv(hue, 0.8, 0.45)
    hx, base = h.cx - 0.05 * h.yaw * h.rx, h.cy - 0.55 * h.ry
    if style["hat_style"]:  # brimmed hat: crown, band and a flat brim
        d.rounded_rectangle([hx - 0.9 * h.rx, h.cy - 1.6 * h.ry, hx + 0.9 * h.rx, base], radius=0.25 * h.rx,
                            fill=color)
        d.rectangle([hx - 0.9 * h.rx, base - 0.22 * h.ry, hx + 0.9 * h.rx, base - 0.08 * h.ry], fill=band)
        _ellipse(d, hx, base, 1.5 * h.rx, 0.13 * h.ry, fill=color)
    else:  # beanie: a dome with a folded cuff and a pompom
        d.chord(_box(hx, base, 1.24 * h.rx, 1.02 * h.ry), 180, 360, fill=color)
        d.rounded_rectangle([hx - 1.26 * h.rx, base - 0.18 * h.ry, hx + 1.26 * h.rx, base + 0.08 * h.ry],
                            radius=0.08 * h.rx, fill=band)
        _ellipse(d, hx, base - 1.05 * h.ry, 0.22 * h.rx, 0.18 * h.ry, fill=band)


# Version 2: levels (module docstring). Larger eyes and mouth, thicker frames.
_V2_EYE_SCALE, _V2_LENS, _V2_FRAME = 1.3, 1.2, 0.55
_V2_HAIR = ((0.0, (26, 22, 24)), (0.35, (120, 74, 40)), (0.65, (214, 168, 68)), (1.0, (250, 236, 156)))


def _hair_color_v2(level: float, style: Mapping[str, float]) -> tuple[int, int, int]:
    """Black (level 0) through brown (0.35), then golden (0.65) to pale blond (1), tinted +-6 % by `hair_shade`."""
    for (l0, c0), (l1, c1) in zip(_V2_HAIR, _V2_HAIR[1:]):
        if level <= l1:
            return _scale(_mix(c0, c1, (level - l0) / (l1 - l0)), 0.94 + 0.12 * style["hair_shade"])
    return _scale(_V2_HAIR[-1][1], 0.94 + 0.12 * style["hair_shade"])


def _draw_eyes_v2(d: ImageDraw.ImageDraw, h: _Head, level: float, hair: tuple, style: Mapping[str, float]) -> None:
    """Open eyes (level > 0.5) open wider with the level; closed ones are a lid line that droops more with it."""
    brow = _scale(hair, 0.85)
    for side, (x, y, ew) in zip((-1, 1), _eye_centres(h, style, _V2_EYE_SCALE)):
        tilt = style["brow_tilt"] * side * 0.62 * ew
        d.line([(x - ew, y - 1.2 * ew + tilt), (x + ew, y - 1.2 * ew - tilt)], fill=brow,
               width=h.w(5 + 4 * style["brow"]))
        if level > 0.5:
            eh = ew * (0.3 + 0.55 * (level - 0.5) / 0.5)  # 0.47 ew at the gap's edge .. 0.85 ew
            _ellipse(d, x, y, ew, eh, fill=(252, 252, 250), outline=(40, 30, 30), width=h.w(3))
            ix, ir = x + 0.3 * h.yaw * ew, min(0.38 * ew, 0.8 * eh)  # small irises: the whites show at 64 px
            _ellipse(d, ix, y, ir, ir, fill=_IRIS[int(style["iris"])])
            _ellipse(d, ix, y, 0.5 * ir, 0.5 * ir, fill=(10, 10, 10))
            _ellipse(d, ix + 0.35 * ir, y - 0.35 * ir, 0.2 * ir, 0.2 * ir, fill=(255, 255, 255))
        else:
            droop = ew * (0.1 + 0.5 * (0.5 - level) / 0.5)  # 0.25 ew at the gap's edge .. 0.6 ew
            lid = [(x + ew * t, y - 0.2 * ew + droop * (1 - t * t)) for t in np.linspace(-1, 1, 9)]
            d.line(lid, fill=(40, 30, 30), width=h.w(6), joint="curve")


def _draw_mouth_v2(d: ImageDraw.ImageDraw, h: _Head, level: float, skin: tuple, style: Mapping[str, float]) -> None:
    """A grin (level > 0.5) whose opening and lifted corners grow with the level; below, a closed mouth that bends
    from nearly flat into a frown as the level falls."""
    mx, my = h.cx + 0.3 * h.yaw * h.rx, h.cy + 0.47 * h.ry
    mw = 0.5 * h.rx * style["mouth_width"] * (1 - 0.15 * abs(h.yaw))
    lip = _mix(skin, (120, 22, 34), 0.85)
    t = np.linspace(-1.0, 1.0, 17)
    if level > 0.5:
        grin = (level - 0.5) / 0.5  # 0.3 .. 1
        depth, lift = mw * (0.25 + 0.55 * grin), mw * 0.3 * grin
        upper = [(mx + mw * x, my - lift * x * x) for x in t]
        lower = [(mx + mw * x, my - lift * x * x + depth * (1 - x * x)) for x in t[::-1]]
        teeth = [(mx + mw * x, my - lift * x * x + 0.35 * depth * (1 - x * x)) for x in t[::-1]]
        d.polygon(upper + lower, fill=(110, 20, 30))
        d.polygon(upper + teeth, fill=(250, 250, 245))
        d.line(upper + lower + upper[:1], fill=lip, width=h.w(3), joint="curve")
    else:
        bend = mw * 0.5 * ((0.5 - level) / 0.5 - 0.3)  # 0 at the gap's edge .. 0.35 mw
        d.line([(mx + 0.8 * mw * x, my + 0.1 * mw - bend * (1 - x * x)) for x in t], fill=lip, width=h.w(7),
               joint="curve")


def _apply_lighting(subject: Image.Image, lighting: float, h: _Head) -> Image.Image:
    """Horizontal shading over the head and body (not the background): brightness x (1 + s * lighting * x).

    Integer fixed-point (factor in 1/256 steps) so the result is bit-identical on every machine.
    """
    x = np.clip((np.arange(subject.width) - h.cx) / (1.2 * h.rx), -1.0, 1.0)
    factor = np.rint(256 * (1 + LIGHTING_STRENGTH * lighting * x)).astype(np.uint32)
    rgba = np.asarray(subject).copy()
    rgb = (rgba[..., :3].astype(np.uint32) * factor[None, :, None] + 128) >> 8
    rgba[..., :3] = np.minimum(rgb, 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def check_attributes(attrs: Mapping[str, Any]) -> dict[str, float]:
    """Validate an attribute dict (all names present, binary in {0, 1}, continuous within range)."""
    missing = [n for n in ATTRIBUTE_NAMES if n not in attrs]
    if missing:
        raise ValueError(f"attrs is missing {missing}; expected all of {list(ATTRIBUTE_NAMES)}")
    out = {}
    for a in ATTRIBUTES:
        v = float(attrs[a.name])
        lo, hi = a.range
        if (a.kind == "binary" and v not in (0.0, 1.0)) or not lo <= v <= hi:
            raise ValueError(f"attrs[{a.name!r}] = {attrs[a.name]!r} is outside {a.kind} range [{lo}, {hi}]")
        out[a.name] = v
    return out


def render(attrs: Mapping[str, Any], *, size: int = 64, style: Mapping[str, float] | None = None,
           version: int | None = None) -> Image.Image:
    """Draw one face: RGB `size x size` image. `style` (from `sample_style`) defaults to `DEFAULT_STYLE`;
    `version` (default `SHIPPED_VERSION`) picks the world's looks."""
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    v2 = world(version).version == 2
    a, s = check_attributes(attrs), DEFAULT_STYLE if style is None else style
    canvas = 4 * size
    h = _head_geometry(a, s, canvas)
    skin = _skin_color(a["skin_tone"])
    hair = (_hair_color_v2(attribute_level(a, s, "blond_hair"), s) if v2 else _hair_color(int(a["blond_hair"]), s))
    subject = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    d = ImageDraw.Draw(subject)
    _draw_back_hair(d, h, hair, s)
    _draw_body(d, h, skin, s)
    _draw_ears(d, h, skin)
    _draw_hair_cap(d, h, hair, s)
    _draw_face(d, h, skin, hair, s)
    if v2:
        _draw_eyes_v2(d, h, attribute_level(a, s, "eyes_open"), hair, s)
    else:
        _draw_eyes(d, h, a, hair, s)
    _draw_nose(d, h, skin, s)
    if v2:
        _draw_mouth_v2(d, h, attribute_level(a, s, "smiling"), skin, s)
    else:
        _draw_mouth(d, h, a, skin, s)
    if a["eyeglasses"]:
        _draw_glasses(d, h, s, **(dict(eye_scale=_V2_EYE_SCALE, lens=_V2_LENS, frame=_V2_FRAME) if v2 else {}))
    if a["hat"]:
        _draw_hat(d, h, s)
    image = _draw_background(a, s, canvas)
    subject = _apply_lighting(subject, a["lighting"], h)
    image.paste(subject, (0, 0), subject)  # shapes are drawn without antialiasing: alpha is 0 or 255
    return image.resize((size, size), Image.Resampling.LANCZOS)


def render_item(seed: int, index: int, *, size: int = 64, version: int | None = None
                ) -> tuple[Image.Image, dict[str, int | float]]:
    """Face `index` of world `seed` and its ground-truth attributes."""
    attrs = sample_attributes(seed, index, version=version)
    return render(attrs, size=size, style=sample_style(seed, index), version=version), attrs


def attributes_to_vector(attrs: Mapping[str, Any]) -> np.ndarray:
    """[A] float32 in `ATTRIBUTE_NAMES` order."""
    return np.asarray([float(attrs[n]) for n in ATTRIBUTE_NAMES], dtype=np.float32)


def render_batch(seed: int, indices: Iterable[int], *, size: int = 64, workers: int | None = 1,
                 version: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render faces without touching disk: (images uint8 [N, size, size, 3], attributes float32 [N, A]).

    `workers` > 1 renders contiguous runs of `indices` in that many spawned processes (`None`: all CPUs). Each face
    is a function of `(seed, index)` alone, so the arrays are identical for every worker count.
    """
    return _render_jobs(seed, [int(i) for i in indices], None, size=size, workers=workers, version=version)


def counterfactual_toggle(seed: int, index: int, *, continuous: bool = False) -> str:
    """The attribute that face `index` of world `seed` has changed in its counterfactual twin: a binary attribute
    drawn uniformly from its own stream, or with `continuous` any attribute (binary or continuous) drawn uniformly
    from another stream; the same for every world version and independent of the face's attributes and style."""
    if continuous:
        return ATTRIBUTE_NAMES[int(_rng(seed, index, _COUNTERFACTUAL_ANY_STREAM).integers(len(ATTRIBUTES)))]
    binary = [a.name for a in ATTRIBUTES if a.kind == "binary"]
    return binary[int(_rng(seed, index, _COUNTERFACTUAL_STREAM).integers(len(binary)))]


def counterfactual_value(name: str, value: int | float) -> int | float:
    """The twin's value of the changed attribute: a binary one flipped; a continuous one moved half its range,
    wrapping around (`lo + (hi - lo) * ((u + 0.5) mod 1)` for `value = lo + (hi - lo) * u`), so every twin differs
    by a large change and stays a face the world could draw."""
    attr = BY_NAME[name]
    if attr.kind == "binary":
        return 1 - int(value)
    lo, hi = attr.range
    return round(float(lo + (hi - lo) * (((value - lo) / (hi - lo) + 0.5) % 1.0)), CONTINUOUS_DECIMALS)


def render_counterfactual(seed: int, index: int, toggle: str, *, size: int = 64, version: int | None = None
                          ) -> tuple[Image.Image, dict[str, int | float]]:
    """Face `index` of world `seed` with attribute `toggle` changed (`counterfactual_value`) and every other attribute
    and the style kept: the exact counterfactual, a valid face even where the change breaks a sampling
    correlation."""
    if toggle not in BY_NAME:
        raise ValueError(f"unknown attribute {toggle!r}; attributes: {ATTRIBUTE_NAMES}")
    attrs = sample_attributes(seed, index, version=version)
    attrs[toggle] = counterfactual_value(toggle, attrs[toggle])
    return render(attrs, size=size, style=sample_style(seed, index), version=version), attrs


def render_counterfactual_batch(seed: int, indices: Iterable[int], toggles: Sequence[str], *, size: int = 64,
                                workers: int | None = 1, version: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`render_batch` of the counterfactual twins: face `indices[k]` with `toggles[k]` changed (images uint8
    [N, size, size, 3], attributes float32 [N, A], the twins' own). The same for every worker count."""
    indices = [int(i) for i in indices]
    if len(toggles) != len(indices):
        raise ValueError(f"one toggle per index: got {len(toggles)} toggles for {len(indices)} indices")
    return _render_jobs(seed, indices, list(toggles), size=size, workers=workers, version=version)


def _render_jobs(seed: int, indices: list[int], toggles: list[str] | None, *, size: int, workers: int | None,
                 version: int | None) -> tuple[np.ndarray, np.ndarray]:
    workers, version = _resolve_workers(workers), world(version).version
    run = max(1, math.ceil(len(indices) / (4 * workers)))  # ~4 runs per worker: even load, few large messages
    jobs = [(seed, indices[i:i + run], size, version, None if toggles is None else toggles[i:i + run])
            for i in range(0, len(indices), run)]
    parts = _map_in_processes(_render_run, jobs, workers)
    if not parts:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, len(ATTRIBUTES)), np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _render_run(job: tuple[int, list[int], int, int, list[str] | None]) -> tuple[np.ndarray, np.ndarray]:
    seed, indices, size, version, toggles = job
    images, rows = [], []
    for k, index in enumerate(indices):
        image, attrs = (render_item(seed, index, size=size, version=version) if toggles is None else
                        render_counterfactual(seed, index, toggles[k], size=size, version=version))
        images.append(np.asarray(image))
        rows.append(attributes_to_vector(attrs))
    return np.stack(images), np.stack(rows)


def _resolve_workers(workers: int | None) -> int:
    if workers is None:
        return os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1 (or None for all CPUs), got {workers}")
    return int(workers)


def _map_in_processes(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int, *, chunksize: int = 1
                      ) -> list[Any]:
    """`[fn(job) for job in jobs]`, on `workers` processes when there is more than one job. The one place this module
    starts processes: spawned, so it is safe even when the caller holds threads (torch, CUDA, Prefect), and the
    renderer is cheap to import."""
    if workers == 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        return pool.map(fn, jobs, chunksize=chunksize)


# ---------------------------------------------------------------------------------------------------------------
# Dataset on disk


def image_id(index: int) -> str:
    return f"{index:06d}.png"


def _format_row(index: int, attrs: Mapping[str, Any]) -> list[str]:
    return [image_id(index)] + [str(int(attrs[a.name])) if a.kind == "binary" else repr(float(attrs[a.name]))
                                for a in ATTRIBUTES]


def _write_one(job: tuple[str, int, int, int, int]) -> list[str]:
    images_dir, seed, index, size, version = job
    image, attrs = render_item(seed, index, size=size, version=version)
    image.save(os.path.join(images_dir, image_id(index)), compress_level=6)
    return _format_row(index, attrs)


def _read_existing_rows(csv_path: Path) -> dict[str, list[str]]:
    if not csv_path.exists():
        return {}
    with csv_path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != ["image_id", *ATTRIBUTE_NAMES]:
        raise ValueError(f"{csv_path} has an unexpected header; delete it or write to an empty folder")
    return {row[0]: row for row in rows[1:]}


def write_dataset(out_dir: str | os.PathLike, n: int, *, seed: int = 0, workers: int | None = None,
                  start: int = 0, size: int = 64, version: int | None = None) -> Path:
    """Write faces `start .. start+n-1` as `out_dir/images/NNNNNN.png` and merge their rows into
    `out_dir/attributes.csv` (`image_id` then one column per attribute; binary 0/1, continuous floats).

    Re-running writes identical files; several calls with disjoint `start` ranges build one dataset.
    `workers` defaults to all CPUs. Each worker saves the PNGs it renders (encoding costs about a sixth of
    rendering; done in one process it would cap the rate at about six workers' worth). Returns the CSV path.
    """
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0, got n={n}, start={start}")
    out, workers, version = Path(out_dir), _resolve_workers(workers), world(version).version
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out / "attributes.csv"
    rows = _read_existing_rows(csv_path)
    jobs = [(str(images_dir), seed, i, size, version) for i in range(start, start + n)]
    new_rows = _map_in_processes(_write_one, jobs, workers, chunksize=max(1, min(256, n // (4 * workers))))
    rows.update({row[0]: row for row in new_rows})
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image_id", *ATTRIBUTE_NAMES])
        writer.writerows(rows[key] for key in sorted(rows))
    tmp.replace(csv_path)
    return csv_path


def read_attributes_csv(csv_path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(image ids, float32 [N, A] attributes in `ATTRIBUTE_NAMES` order) from an `attributes.csv`."""
    rows = _read_existing_rows(Path(csv_path))
    if not rows:
        raise FileNotFoundError(f"no attribute rows in {csv_path}; write it with `ganinv make-dataset`")
    ids = sorted(rows)
    return ids, np.asarray([[float(v) for v in rows[i][1:]] for i in ids], dtype=np.float32)
