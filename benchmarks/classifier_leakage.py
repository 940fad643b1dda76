"""Attribute leakage of the procedural-faces classifier: does one attribute's score move with another attribute?

    PYTHONPATH=. python -m benchmarks.classifier_leakage --classifier run/classifier.safetensors --world-version 2 \\
        --out benchmarks/results/classifier_leakage.json

The classifier judges every benchmark and fits InterFaceGAN's boundaries, which use only the extreme 2 % of its
scores. A score that shifts with an unrelated attribute reorders that tail, and the fitted direction then carries
the unrelated attribute along.

- **Counterfactual shifts**: `--n` faces of world seed `--seed` are rendered twice per binary attribute t, with t = 0
  and t = 1 and every other attribute and the style kept (the renderer's exact counterfactual,
  `procedural_faces.render_counterfactual`). For every other attribute b: the mean and sd over faces of the change of
  b's raw output (logit, or normalised value for continuous b) when t goes 0 -> 1, in units of b's within-class sd
  (binary b: the sd of its logit within faces of the same true b, pooled; continuous b: the sd of its output over the
  faces), the same in raw units, and for binary b the share of faces whose decision (logit > 0) changes.
- **Score tails**: over `--n-tail` faces of world seed `--tail-seed` (the training data's world by default), for each
  ordered pair (a, b) of binary attributes, the ground-truth rate of b among the `--tail-share` lowest and highest
  a-scores, against b's overall rate and its rate among faces whose true a is 0 (resp. 1). The world draws the
  binary attributes independently except eyeglasses with blond_hair, so for other pairs the tail rates should match
  the overall rate; `excess_low`/`excess_high` compare with the rate given a's true value, which holds for every pair.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks.common import device_facts, markdown_table, to_unit_range, write_json
from ganinv.builtin_models import recorded_world_version
from ganinv.datasets import procedural_faces as world
from ganinv.models.attributes import AttributeClassifier, load_classifier, read_metadata

BINARY = [a.name for a in world.ATTRIBUTES if a.kind == "binary"]


@torch.no_grad()
def raw_outputs(clf: AttributeClassifier, images: np.ndarray, *, batch: int = 500) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float64 [N, A] raw outputs (logits; normalised continuous values)."""
    device = next(clf.parameters()).device
    return np.concatenate([clf(to_unit_range(images[i:i + batch]).to(device)).double().cpu().numpy()
                           for i in range(0, len(images), batch)])


def within_class_sd(raw: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[A] the unit of each attribute's shift: binary, the logit sd within faces of the same true value (pooled);
    continuous, the output's sd over the faces."""
    sd = raw.std(axis=0)
    for j, attr in enumerate(world.ATTRIBUTES):
        if attr.kind == "binary":
            centred = [raw[truth[:, j] == v, j] - raw[truth[:, j] == v, j].mean() for v in (0, 1)
                       if (truth[:, j] == v).any()]
            sd[j] = np.concatenate(centred).std()
    return sd


def render_counterfactuals(*, n: int, seed: int, version: int | None, workers: int | None) -> dict:
    """Faces 0..n-1 of world `seed` and, per binary attribute, their twins with it flipped (uint8 [n, H, W, 3])."""
    images, truth = world.render_batch(seed, range(n), workers=workers, version=version)
    # every attribute's twins in one batch: one process pool, not one per attribute
    twins = world.render_counterfactual_batch(seed, list(range(n)) * len(BINARY), [t for t in BINARY for _ in range(n)],
                                              workers=workers, version=version)[0]
    return dict(images=images, truth=truth, twins={t: twins[k * n:(k + 1) * n] for k, t in enumerate(BINARY)})


def counterfactual_shifts(clf: AttributeClassifier, faces: dict) -> list[dict]:
    """One row per (toggled binary attribute, other attribute) of `render_counterfactuals`' faces: how the other's raw
    output moves when the toggled one goes 0 -> 1 on the same face."""
    truth, raw = faces["truth"], raw_outputs(clf, faces["images"])
    unit = within_class_sd(raw, truth)
    rows = []
    for toggled, twins in faces["twins"].items():
        t = world.ATTRIBUTE_NAMES.index(toggled)
        raw_twin = raw_outputs(clf, twins)
        sign = np.where(truth[:, t] == 0, 1.0, -1.0)[:, None]  # orient every pair as t: 0 -> 1
        delta = sign * (raw_twin - raw)
        for j, attr in enumerate(world.ATTRIBUTES):
            if j == t:
                continue
            d = delta[:, j]
            rows.append(dict(
                toggled=toggled, attribute=attr.name, kind=attr.kind, mean_shift_sd=float(d.mean() / unit[j]),
                sd_shift_sd=float(d.std() / unit[j]), mean_shift_raw=float(d.mean()), sd_shift_raw=float(d.std()),
                unit_sd=float(unit[j]),
                decisions_changed=float(((raw[:, j] > 0) != (raw_twin[:, j] > 0)).mean())
                if attr.kind == "binary" else None))
    return rows


def score_tails(clf: AttributeClassifier, images: np.ndarray, truth: np.ndarray, *, share: float) -> list[dict]:
    """One row per ordered pair (a, b) of binary attributes: the true rate of b among the `share` lowest and highest
    a-scores of `images` (uint8 [N, H, W, 3]; true attributes [N, A]), overall, and given a's true value."""
    raw = raw_outputs(clf, images)
    n = len(images)
    k = max(1, round(share * n))
    rows = []
    for a in BINARY:
        i = world.ATTRIBUTE_NAMES.index(a)
        order = np.argsort(raw[:, i], kind="stable")
        low, high = order[:k], order[-k:]
        for b in BINARY:
            if b == a:
                continue
            j = world.ATTRIBUTE_NAMES.index(b)
            given = {v: float(truth[truth[:, i] == v, j].mean()) if (truth[:, i] == v).any() else None for v in (0, 1)}
            rate_low, rate_high = float(truth[low, j].mean()), float(truth[high, j].mean())
            rows.append(dict(score=a, attribute=b, rate_low=rate_low, rate_high=rate_high,
                             rate_overall=float(truth[:, j].mean()), rate_given_0=given[0], rate_given_1=given[1],
                             excess_low=None if given[0] is None else rate_low - given[0],
                             excess_high=None if given[1] is None else rate_high - given[1]))
    return rows


def measure(clf: AttributeClassifier, faces: dict, tail_images: np.ndarray, tail_truth: np.ndarray, *,
            share: float) -> dict:
    """{'summary', 'counterfactual_shifts', 'score_tails'} of one classifier."""
    shifts = counterfactual_shifts(clf, faces)
    tails = score_tails(clf, tail_images, tail_truth, share=share)
    binary_shifts = [r for r in shifts if r["kind"] == "binary"]
    excess = [abs(r[k]) for r in tails for k in ("excess_low", "excess_high") if r[k] is not None]
    summary = dict(
        max_abs_mean_shift_sd=max(abs(r["mean_shift_sd"]) for r in shifts),
        max_abs_mean_shift_sd_binary=max(abs(r["mean_shift_sd"]) for r in binary_shifts),
        mean_abs_mean_shift_sd_binary=float(np.mean([abs(r["mean_shift_sd"]) for r in binary_shifts])),
        max_decisions_changed=max(r["decisions_changed"] for r in binary_shifts),
        max_abs_tail_excess=max(excess), mean_abs_tail_excess=float(np.mean(excess)))
    return dict(summary=summary, counterfactual_shifts=shifts, score_tails=tails)


def _world_of(classifier: str) -> int | None:
    """The world version a classifier file records (`recorded_world_version`: world 1 when it records none; None for
    the built-in classifier: the shipped world)."""
    if classifier == "builtin":
        return None
    return recorded_world_version(read_metadata(classifier)["metrics"])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classifier", action="append", help="a .safetensors classifier or 'builtin' (default); "
                   "repeat it to measure several on the same rendered faces")
    p.add_argument("--world-version", type=int, default=None,
                   help="the world to render (default: the one the first classifier's record names, else the "
                   "shipped one)")
    p.add_argument("--n", type=int, default=400, help="faces whose counterfactuals are rendered")
    p.add_argument("--seed", type=int, default=1, help="world seed of those faces (held out from training)")
    p.add_argument("--n-tail", type=int, default=20000, help="faces whose score tails are read")
    p.add_argument("--tail-seed", type=int, default=0, help="world seed of those (default: the data's)")
    p.add_argument("--tail-share", type=float, default=0.02, help="share of faces in each tail (InterFaceGAN's 2 %%)")
    p.add_argument("--workers", type=int, default=None, help="render processes (default all CPUs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out")
    args = p.parse_args(argv)
    t0 = time.time()
    device = torch.device(args.device)
    classifiers = args.classifier or ["builtin"]
    version = args.world_version if args.world_version is not None else _world_of(classifiers[0])
    faces = render_counterfactuals(n=args.n, seed=args.seed, version=version, workers=args.workers)
    tail_images, tail_truth = world.render_batch(args.tail_seed, range(args.n_tail), workers=args.workers,
                                                 version=version)
    results = []
    for name in classifiers:
        result = dict(classifier=name, **measure(load_classifier(name, device=device), faces, tail_images,
                                                 tail_truth, share=args.tail_share))
        print(f"## {name}\n")
        print(markdown_table([r for r in result["counterfactual_shifts"] if r["kind"] == "binary"],
                             ["toggled", "attribute", "mean_shift_sd", "sd_shift_sd", "mean_shift_raw",
                              "sd_shift_raw", "decisions_changed"]))
        print()
        print(markdown_table(result["score_tails"], ["score", "attribute", "rate_low", "rate_high", "rate_overall",
                                                     "excess_low", "excess_high"]))
        print()
        results.append(result)
    print(markdown_table([dict(classifier=r["classifier"], **r["summary"]) for r in results],
                         ["classifier", *results[0]["summary"]]))
    payload = dict(**device_facts(device), world_version=world.world(version).version, n=args.n, seed=args.seed,
                   n_tail=args.n_tail, tail_seed=args.tail_seed, tail_share=args.tail_share, results=results,
                   seconds=round(time.time() - t0, 1))
    write_json(args.out, payload, indent=1)
    return payload


if __name__ == "__main__":
    main()
