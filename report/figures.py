"""Step 4a of a report: matplotlib plots (Agg, no display) and image grids, written as PNG files into the report
folder. Each function returns the file name it wrote (relative to the folder), or None when there is nothing to
draw."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from ganinv.item_metrics import PERCEPTUAL, QUALITY  # noqa: E402
from ganinv.item_metrics import better as metric_better  # noqa: E402
from ganinv.item_metrics import label as metric_label  # noqa: E402
from report.collect import RunData  # noqa: E402

DPI = 110
CURRENT, PREVIOUS, BAD = "#2563eb", "#9ca3af", "#dc2626"
TILE = 128          # grid tiles are upscaled to this many pixels (nearest: the pixels are the data)
CAPTION = 34        # caption band under each pair, px


def _save(fig: plt.Figure, folder: Path, name: str) -> str:
    fig.savefig(folder / name, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return name


def _short_label(name: str) -> str:
    return "clf-perceptual (not LPIPS)" if name.startswith("clf") else metric_label(name)


def histograms(data: RunData, folder: Path, previous: Mapping[str, Any] | None = None) -> str | None:
    """One histogram per quality metric over done items; solid line = this run's mean, dashed = previous run's."""
    names = [m for m in QUALITY if m in data.metrics and np.isfinite(data.metrics[m][data.done]).any()]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        values = data.metrics[name][data.done]
        values = values[np.isfinite(values)]
        ax.hist(values, bins=min(30, max(5, len(values) // 3)), color=CURRENT, alpha=0.8)
        ax.axvline(values.mean(), color="black", lw=1.2, label="mean")
        prev = ((previous or {}).get("quality", {}).get(name) or {}).get("mean")
        if prev is not None:
            ax.axvline(prev, color=BAD, lw=1.2, ls="--", label="previous mean")
        better = metric_better(name)
        ax.set_title(f"{_short_label(name)}" + (f"  ({better} is better)" if better else ""), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylabel("items", fontsize=7)
    axes[0][0].legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return _save(fig, folder, "histograms.png")


def label_bars(by_label: Mapping[str, Any], folder: Path, metric: str = "psnr") -> str | None:
    """Mean `metric` per label group (0/1 or low/mid/high tertiles), one group of bars per label."""
    labels = [name for name, entry in by_label.items() if any(g.get(metric) is not None for g in entry["groups"])]
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 2.8))
    x, ticks, names = 0.0, [], []
    colors = {"0": "#93c5fd", "1": CURRENT, "low": "#bfdbfe", "mid": "#60a5fa", "high": "#1d4ed8"}
    for label in labels:
        groups = by_label[label]["groups"]
        for k, g in enumerate(groups):
            value = g.get(metric)
            if value is not None:
                ax.bar(x + k * 0.27, value, width=0.25, color=colors.get(g["group"], CURRENT))
                ax.text(x + k * 0.27, value, g["group"], ha="center", va="bottom", fontsize=6)
        ticks.append(x + 0.27 * (len(groups) - 1) / 2)
        names.append(label)
        x += 0.27 * len(groups) + 0.4
    values = [g[metric] for name in labels for g in by_label[name]["groups"] if g.get(metric) is not None]
    low, high = min(values), max(values)
    pad = max((high - low) * 0.5, abs(high) * 0.01, 1e-6)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xticks(ticks, names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(f"mean {_short_label(metric)}", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"mean {_short_label(metric)} by label group (binary 0/1; continuous: tertiles low/mid/high)",
                 fontsize=8)
    fig.tight_layout()
    return _save(fig, folder, f"by_label_{metric}.png")


TREND_PANELS = (("quality", "psnr", "mean", "mean PSNR (dB)"), ("quality", "ssim", "mean", "mean SSIM"),
                *(("quality", m, "mean", f"mean {m.replace('_', '-')}") for m in PERCEPTUAL),
                ("counts", "failure_rate", None, "failure rate"),
                ("distribution", "fd_clf", "value", "FD-clf"),
                ("throughput", "device_seconds_per_image", None, "device-s / image"))


def _trend_value(body: Mapping[str, Any], section: str, key: str, field: str | None) -> float | None:
    value = (body.get(section) or {}).get(key)
    if field is not None:
        value = (value or {}).get(field)
    return value if isinstance(value, (int, float)) else None


def trends(history: Sequence[Mapping[str, Any]], current: Mapping[str, Any], folder: Path) -> str | None:
    """Each headline number over the earlier runs (oldest first) and this one (last point, highlighted)."""
    runs = [*history, current]
    if len(runs) < 2:
        return None
    panels = [p for p in TREND_PANELS if sum(_trend_value(r, *p[:3]) is not None for r in runs) >= 2]
    if not panels:
        return None
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.3 * rows), squeeze=False)
    names = [str(r.get("run")) for r in runs]
    for ax, panel in zip(axes.flat, panels):
        values = [_trend_value(r, *panel[:3]) for r in runs]
        xs = [i for i, v in enumerate(values) if v is not None]
        ax.plot(xs, [values[i] for i in xs], "o-", color=CURRENT, ms=3, lw=1.2)
        if values[-1] is not None:
            ax.plot([len(runs) - 1], [values[-1]], "o", color="black", ms=5)
        ax.set_title(panel[3], fontsize=8)
        ax.set_xticks(range(len(runs)), names, rotation=30, ha="right", fontsize=6)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, folder, "trends.png")


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def pair_grid(originals: np.ndarray, reconstructions: np.ndarray, captions: Sequence[str], folder: Path, name: str,
              *, columns: int = 4) -> str | None:
    """Pairs side by side (original | reconstruction), `columns` pairs per row, a caption under each pair.

    originals, reconstructions: uint8 `[n, t, t, 3]`."""
    n = len(originals)
    if n == 0:
        return None
    assert originals.shape == reconstructions.shape and originals.ndim == 4, "pairs must be uint8 [n, t, t, 3] alike"
    columns = min(columns, n)
    rows = -(-n // columns)
    gap = 10
    cell_w, cell_h = 2 * TILE + 2, TILE + CAPTION
    canvas = Image.new("RGB", (columns * cell_w + (columns - 1) * gap, rows * cell_h + (rows - 1) * gap), "white")
    draw, font = ImageDraw.Draw(canvas), _font(12)
    for k in range(n):
        x, y = (k % columns) * (cell_w + gap), (k // columns) * (cell_h + gap)
        for j, image in enumerate((originals[k], reconstructions[k])):
            tile = Image.fromarray(image).resize((TILE, TILE), Image.NEAREST)
            canvas.paste(tile, (x + j * (TILE + 2), y))
        draw.text((x + 2, y + TILE + 3), captions[k], fill="black", font=font)
    canvas.save(folder / name, optimize=True)
    return name
