"""The report's sections of the stages beyond a plain inversion (issues 20, 21): restoration (how well the restored
images match the clean ones, beside the plain baselines), pivotal refinement (what tuning gained over the pivots,
at how many bytes an item), refinement passes (issue 23: what more steps gained) and the out-of-distribution scores
(the most unusual items). Each returns None for a
store without that stage; `write_figures` draws their pictures.

Which way a measure is better comes from `ganinv.item_metrics.HIGHER_IS_BETTER` (PSNR, SSIM: higher;
every distance: lower), so a "gain" is always an improvement.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ganinv.item_metrics import HIGHER_IS_BETTER, OOD_SCORE, PERCEPTUAL
from ganinv.item_metrics import label as metric_label
from report import figures
from report.collect import RunData
from storage import code_refinements, refinements

TOP_UNUSUAL = 12
FIGURE_ITEMS = 6
RESTORATION_MEASURES = ("psnr", "ssim")


def _mean_std(values: np.ndarray) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    return dict(n=int(finite.size), mean=float(finite.mean()) if finite.size else None,
                std=float(finite.std(ddof=1)) if finite.size > 1 else (0.0 if finite.size else None))


def gain(name: str, before: float | None, after: float | None) -> float | None:
    """How much better `after` is than `before` (positive = better), by the metric's direction."""
    if before is None or after is None:
        return None
    return after - before if name in HIGHER_IS_BETTER else before - after


def restoration(data: RunData) -> dict[str, Any] | None:
    """The store's restoration task, its degradation, and per stage (restored, kept, baseline) n and mean +- std of
    PSNR and SSIM against the clean images (when a clean folder was given), plus the observation-space metrics."""
    record = data.attributes.inversion.get("restoration")
    if not record:
        return None
    done = data.done
    stages = {stage: {m: _mean_std(data.metrics[f"{stage}_{m}"][done]) for m in RESTORATION_MEASURES
                      if f"{stage}_{m}" in data.metrics}
              for stage in ("restored", "kept", "baseline")}
    observed = {m: _mean_std(data.metrics[m][done]) for m in RESTORATION_MEASURES if m in data.metrics}
    restored_psnr = stages["restored"].get("psnr", {}).get("mean")
    baseline_psnr = stages["baseline"].get("psnr", {}).get("mean")
    return dict(task=record["task"], degradation=record["degradation"], keep_observed=bool(record["keep_observed"]),
                clean=record.get("clean"), n=int(done.sum()), against_clean=stages, observation=observed,
                gain_over_baseline_db=gain("psnr", baseline_psnr, restored_psnr))


def pivotal(data: RunData) -> dict[str, Any] | None:
    """Pivot vs tuned means of each measure the store has both of, the gain, and the bytes a delta takes."""
    attrs = refinements.pivotal_attrs(data.store)
    if attrs is None:
        return None
    done = data.done
    rows = []
    for name in ("psnr", "ssim", *PERCEPTUAL, "mse"):
        if name in data.metrics and f"pivot_{name}" in data.metrics:
            pivot, tuned = (_mean_std(data.metrics[key][done])["mean"] for key in (f"pivot_{name}", name))
            rows.append(dict(metric=name, label=metric_label(name), pivot=pivot, tuned=tuned,
                             gain=gain(name, pivot, tuned)))
    config = attrs.get("config", {})
    per_item = int(attrs["values_per_item"] * np.dtype(attrs["numpy_dtype"]).itemsize)
    return dict(n=int(done.sum()), rank=attrs["rank"], num_steps=config.get("num_steps"), loss=config.get("loss"),
                dtype=attrs["dtype"], bytes_per_item=per_item, rows=rows)


def ood(data: RunData) -> dict[str, Any] | None:
    """Quantiles of the out-of-distribution scores, how many are above 0.99, and the `TOP_UNUSUAL` highest."""
    scores = data.metrics.get(OOD_SCORE)
    if scores is None:
        return None
    scored = np.flatnonzero(data.done & np.isfinite(scores))
    top = scored[np.argsort(-scores[scored], kind="stable")[:TOP_UNUSUAL]]
    basis = "the encoder's reconstructions" if any(n.startswith("encoder_") for n in data.metrics) else \
        "the stored reconstructions"
    quantiles = {f"p{q}": float(np.percentile(scores[scored], q)) for q in (50, 90, 99)} if scored.size else {}
    return dict(scored=int(scored.size), basis=basis, quantiles=quantiles,
                above_099=int((scores[scored] > 0.99).sum()),
                top=[dict(image_id=str(data.image_ids[i]), score=float(scores[i]), index=int(i)) for i in top])


def refinement_passes(data: RunData) -> list[dict[str, Any]] | None:
    """Each refinement pass (`ganinv refine`): its steps, state, and per measure the mean over the items it refined
    before and after (their current values: a later pass may have moved them further)."""
    found = code_refinements.passes(data.store)
    if not found:
        return None
    out = []
    for entry in found:
        measures = [n for n in ("psnr", "ssim", *PERCEPTUAL, "mse") if n in data.metrics]
        before = code_refinements.previous_metrics(data.store, entry["name"], measures)
        refined = data.done & np.isfinite(before[measures[0]]) if measures else data.done
        rows = []
        for name in measures:
            was, now = (_mean_std(values[refined])["mean"] for values in (before[name], data.metrics[name]))
            rows.append(dict(metric=name, label=metric_label(name), before=was, after=now, gain=gain(name, was, now)))
        out.append(dict(name=entry["name"], target_steps=entry["target_steps"], more_steps=entry["more_steps"],
                        from_steps=entry["from_steps"], space=entry["space"], complete=bool(entry["complete"]),
                        refined=int(refined.sum()), rows=rows))
    return out


def summarize(data: RunData) -> dict[str, Any]:
    """metrics.json's `restoration`, `pivotal`, `refinement_passes` and `ood` (each None when the store has no such
    stage)."""
    return dict(restoration=restoration(data), pivotal=pivotal(data), refinement_passes=refinement_passes(data),
                ood=ood(data))


# ---------------------------------------------------------------------------------------------------- figures
def write_figures(data: RunData, stages: Mapping[str, Any], folder: Path) -> dict[str, str]:
    """The stages' pictures in `folder`: {figure name: file}."""
    made = {}
    if stages.get("restoration") and data.thumbnail_size:
        made["restoration"] = _restoration_figure(data, stages["restoration"], folder)
    if stages.get("pivotal") and data.thumbnail_size:
        made["pivotal"] = _pivotal_figure(data, folder)
    if stages.get("ood") and stages["ood"]["top"] and data.thumbnail_size:
        made["ood"] = _ood_figure(data, stages["ood"], folder)
    return {name: file for name, file in made.items() if file}


def _pivotal_figure(data: RunData, folder: Path) -> str | None:
    rows = np.flatnonzero(data.done)[:8]
    psnr, pivot_psnr = data.metrics.get("psnr"), data.metrics.get("pivot_psnr")
    captions = [f"{str(data.image_ids[i])[:24]}\n{pivot_psnr[i]:.1f} -> {psnr[i]:.1f} dB"
                if psnr is not None and pivot_psnr is not None else str(data.image_ids[i])[:24] for i in rows]
    return figures.pair_grid(refinements.read_pivot_thumbnails(data.store, rows), data.thumbnails(rows), captions,
                             folder, "pivotal.png")


def _ood_figure(data: RunData, entry: Mapping[str, Any], folder: Path) -> str | None:
    rows = np.asarray([row["index"] for row in entry["top"]], np.int64)
    originals, _ = data.originals(rows, data.thumbnail_size)
    captions = [f"{row['image_id'][:24]}\nscore {row['score']:.3f}" for row in entry["top"]]
    return figures.pair_grid(originals, data.thumbnails(rows), captions, folder, "ood_top.png")


def _restoration_figure(data: RunData, entry: Mapping[str, Any], folder: Path) -> str | None:
    """observed | baseline | restored (the stored thumbnail) | truth (with a clean folder), a row per item."""
    from ganinv.datasets.folder import DecodePolicy, decode_image
    from ganinv.edit_media import save_comparison_figure
    from ganinv.inversion.degradations import degradation_from_config

    rows = np.flatnonzero(data.done)[:FIGURE_ITEMS]
    if rows.size == 0:
        return None
    ids = [str(data.image_ids[i]) for i in rows]
    resolution, t = int(data.attributes.generator.config["img_resolution"]), data.thumbnail_size
    recorded = data.attributes.inversion["decode"]
    decode = dict(recorded, background=tuple(recorded["background"]))
    try:
        degradation = degradation_from_config(entry["degradation"], image_ids=ids, resolution=resolution)
        side = degradation.observed_shape((3, resolution, resolution))[1]
        observed = torch.stack([decode_image(data.paths[i], DecodePolicy(**{**decode, "resolution": side}))
                                for i in rows])
    except Exception:  # noqa: BLE001 - a moved input or mask folder costs the figure, not the report
        return None

    def small(images: torch.Tensor) -> torch.Tensor:
        return F.interpolate(images.clamp(-1, 1), size=(t, t), mode="area")

    columns = {"observed": small(degradation.show(observed)),
               "baseline": small(degradation.baseline(degradation.project(observed))),
               "restored": torch.from_numpy(data.thumbnails(rows)).permute(0, 3, 1, 2).float() / 127.5 - 1}
    if entry.get("clean"):
        try:
            columns["truth"] = torch.stack([decode_image(f"{entry['clean']}/{image_id}", DecodePolicy(
                **{**decode, "resolution": t})) for image_id in ids])
        except Exception:  # noqa: BLE001 - no truth for these items: the figure goes without it
            pass
    name = "restoration.png"
    save_comparison_figure(columns, folder / name, title=f"{entry['task']}: {len(rows)} items")
    return name

