"""Pivotal tuning at dataset scale (issue 21): fidelity at equal step budgets, delta forms, edits, bytes, speed.

    # GPU, the embedded world taken by name (generator, encoder, attribute classifier); ~5 min on an H100:
    PYTHONPATH=. python -m benchmarks.pivotal --device cuda --out benchmarks/results/pivotal_faces64.json
    # CPU smoke run (tiny random generator, untrained encoder, synthetic attributes: the numbers mean nothing):
    PYTHONPATH=. python -m benchmarks.pivotal --tiny --device cpu

1. quality: held-out faces (world seed 1, never seen by the GAN) at each total step budget B: W+ from `w_avg` (B steps;
   with the generator's noise, and with optimised noise maps, which the store cannot keep), hybrid (encoder + B W+
   steps) and hybrid (B * share steps) + pivotal tuning (the rest); PSNR / SSIM / perceptual (LPIPS-VGG when its
   trunk is on disk, else `clf-perceptual`, which is not LPIPS), seconds, bytes per item (raw and Zstd-1 as the
   store compresses). Goal: hybrid + pivotal >= best W+ + 3 dB at the same budget, <= 1 MB per item.
2. forms: other delta forms (rank, bias, storage dtype) tuned from the same pivots: PSNR gain over the pivot, bytes,
   dB per KB, and how much G' differs from G at random codes (mean |G'(w) - G(w)|, locality).
3. edits: InterFaceGAN boundaries (`ganinv.directions`) fitted on sampled codes scored by the attribute classifier;
   flip rate and interference of edits on the untuned items (hybrid, B steps, rendered by G) and on the tuned ones
   (pivot + delta, rendered by G'), with `benchmarks.edit_evaluation`'s tables. Goal: flip within 5 points,
   interference no worse.
4. speed: image-steps/s of one batched tuning of `--speed-batch` images vs the same images one at a time, for the
   factored (shared conv + rank-r grouped conv) and fused (per-sample weights, grouped conv) forms.

Every item is seeded from its id (`seed_from_id('heldout/<i>')`), so reruns give the same numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    device_facts, heldout_faces, markdown_table, synchronize, tiny_generator, write_json,
)
from benchmarks.edit_evaluation import STRENGTHS, World, best_rows, demo_world, independent  # noqa: E402
from benchmarks.inversion_quality import TinyEncoder, perceptual_metric, run_batched, summarize  # noqa: E402
from ganinv.directions.evaluate import evaluate_edits  # noqa: E402
from ganinv.directions.interfacegan import fit_directions, sample_and_score  # noqa: E402
from ganinv.inversion import hybrid, invert  # noqa: E402
from ganinv.inversion.pivotal import (  # noqa: E402
    PivotalConfig, PivotalDeltas, PivotalProblem, pack, render, tune,
)
from ganinv.losses import trunk_weights_path  # noqa: E402
from ganinv.losses.registry import build_loss  # noqa: E402
from ganinv.metrics import reconstruction_metrics  # noqa: E402
from ganinv.utils.seeds import seed_from_id  # noqa: E402

QUALITY_COLUMNS = ["method", "steps", "schedule", "images", "psnr", "psnr_std", "ssim", "perceptual", "bytes_per_item",
                   "zstd_bytes_per_item", "seconds"]
FORM_COLUMNS = ["form", "psnr", "gain_db", "bytes_per_item", "db_per_kb", "far_change", "seconds"]
DEFAULT_FORMS = "rank=0,tune_bias=True;rank=1;rank=4;rank=16;rank=4,tune_bias=True;rank=4,learning_rate=0.001;" \
                "rank=4,locality_weight=0;rank=4,storage_dtype=bfloat16"
MB = 2 ** 20


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default="faces64", help="name or path for ganinv.generators.load_generator")
    p.add_argument("--encoder", default="faces64", help="name or path for ganinv.models.encoder.load_encoder")
    p.add_argument("--classifier", default="builtin", help="attribute classifier for the edit part")
    p.add_argument("--num-images", type=int, default=64)
    p.add_argument("--budgets", default="300,1000", help="total optimisation steps per image")
    p.add_argument("--pivot-share", type=float, default=0.5, help="share of a budget spent on the pivot (hybrid)")
    p.add_argument("--rank", type=int, default=PivotalConfig.rank)
    p.add_argument("--learning-rate", type=float, default=PivotalConfig.learning_rate)
    p.add_argument("--loss", default=None, help="registry spec for every method; default: lpips-vgg+mse when "
                                                "its trunk is on disk, else clf-perceptual+mse")
    p.add_argument("--forms", default=DEFAULT_FORMS, help="';'-separated PivotalConfig overrides ('' skips)")
    p.add_argument("--num-fit", type=int, default=20000, help="sampled codes for the edit boundaries ('0' skips)")
    p.add_argument("--speed-batch", type=int, default=32)
    p.add_argument("--speed-steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny random networks: a CPU smoke test")
    p.add_argument("--out", default=None)
    p.add_argument("--tables", type=Path, help="print the markdown tables of a JSON this script wrote, and exit")
    args = p.parse_args(argv)
    if args.tiny:
        args.num_images, args.batch_size, args.budgets = min(args.num_images, 4), 4, "8"
        args.num_fit, args.speed_batch, args.speed_steps = min(args.num_fit, 400), 4, 2
        args.forms = "rank=0,tune_bias=True;rank=1" if args.forms == DEFAULT_FORMS else args.forms
        args.loss = args.loss or "mse"
    args.budgets = [int(b) for b in args.budgets.split(",")]
    args.loss = args.loss or ("lpips-vgg+mse" if trunk_weights_path("vgg").is_file() else "clf-perceptual+mse")
    return args


def parse_forms(spec: str) -> list[dict[str, Any]]:
    """`'rank=0,tune_bias=True;rank=16'` -> PivotalConfig overrides, values parsed as the field's type."""
    types = {f.name: f.type for f in dataclasses.fields(PivotalConfig)}
    cast = {"int": int, "float": float, "bool": lambda v: v.lower() in ("1", "true", "yes"), "str": str}
    forms = []
    for form in filter(None, (f.strip() for f in spec.split(";"))):
        pairs = [kv.split("=", 1) for kv in form.split(",")]
        unknown = [k for k, _ in pairs if k not in types]
        if unknown:
            raise SystemExit(f"--forms: {unknown} are not PivotalConfig fields ({sorted(types)})")
        forms.append({k: cast[types[k]](v) for k, v in pairs})
    return forms


def load_world(args, device) -> tuple[World, torch.nn.Module, torch.Tensor]:
    """(world: G + attribute scorer, encoder, held-out targets)."""
    if args.tiny:
        world = demo_world(str(device))
        other = tiny_generator(32, seed=5).to(device)  # targets G cannot reach exactly: another net, random noise
        with torch.no_grad():
            torch.manual_seed(0)
            z = torch.randn([args.num_images, other.z_dim], generator=torch.Generator().manual_seed(1))
            targets = other(z.to(device), None, noise_mode="random").clamp(-1, 1)
        return world, TinyEncoder(world.G).to(device), targets
    from ganinv.generators import load_generator
    from ganinv.models.attributes import load_classifier
    from ganinv.models.encoder import load_encoder

    G = load_generator(args.generator, device).eval().requires_grad_(False)
    C = load_classifier(args.classifier, device)
    binary = [n for n, k in zip(C.attribute_names, C.attribute_kinds) if k == "binary"]
    world = World(G, C.predict, binary, ())  # no pair singled out: interference over every other attribute
    return world, load_encoder(args.encoder, device), heldout_faces(args.num_images, device)


def item_seeds(indices) -> list[int]:
    return [seed_from_id(f"heldout/{i}") for i in indices]


def _bytes(deltas: PivotalDeltas) -> tuple[float, float]:
    """(raw, Zstd-1 compressed: the store's codec) bytes per item of the packed deltas; NaN without numcodecs."""
    values, _ = pack(deltas)
    try:
        import numcodecs
    except ImportError:
        return values.nbytes / len(values), float("nan")
    return values.nbytes / len(values), len(numcodecs.Zstd(level=1).encode(values)) / len(values)


# ------------------------------------------------------------------------------------------------ 1. quality
@dataclasses.dataclass
class Tuned:
    """What the hybrid + pivotal runs of one budget left, for the later parts."""

    pivots: torch.Tensor
    deltas: list[PivotalDeltas]   # one per batch
    untuned_ws: torch.Tensor      # hybrid with the whole budget


def quality(G, E, targets, args, perceptual) -> tuple[list[dict], dict[int, Tuned]]:
    name = next(iter(perceptual), None)
    rows, kept = [], {}
    for budget in args.budgets:
        pivot_steps = max(1, round(budget * args.pivot_share))
        out = dict(pivots=[], deltas=[], untuned=[])

        def w_plus(x, s, noise):
            return invert(G, x, space="w+", num_steps=budget, loss=args.loss, optimize_noise=noise,
                          seed=item_seeds(s)).images

        def hybrid_full(x, s):
            result = hybrid(G, E, x, num_steps=budget, loss=args.loss, optimize_noise=False, seed=item_seeds(s))
            out["untuned"].append(result.ws)
            return result.images

        def hybrid_pivotal(x, s):
            pivots = hybrid(G, E, x, num_steps=pivot_steps, loss=args.loss, optimize_noise=False,
                            seed=item_seeds(s)).ws
            result = tune(G, x, pivots, seed=item_seeds(s), **pivotal_options(args, budget - pivot_steps))
            out["pivots"].append(pivots)
            out["deltas"].append(result.deltas)
            return result.images

        methods: list[tuple[str, str, Callable]] = [
            ("W+", str(budget), lambda x, s: w_plus(x, s, False)),
            ("W+ (noise maps, not storable)", str(budget), lambda x, s: w_plus(x, s, True)),
            ("hybrid (W+)", str(budget), hybrid_full),
            ("hybrid + pivotal", f"{pivot_steps}+{budget - pivot_steps}", hybrid_pivotal)]
        for label, steps, fn in methods:
            metrics, seconds = run_batched(fn, targets, args.batch_size, perceptual)
            rows.append(dict(summarize(label, budget, metrics, name, seconds), schedule=steps))
            print(markdown_table([rows[-1]], QUALITY_COLUMNS).splitlines()[-1], flush=True)
        raw, packed = np.mean([_bytes(d) for d in out["deltas"]], axis=0)
        rows[-1].update(bytes_per_item=raw, zstd_bytes_per_item=packed)
        kept[budget] = Tuned(torch.cat(out["pivots"]), out["deltas"], torch.cat(out["untuned"]))
    return rows, kept


def pivotal_options(args, steps: int, **form: Any) -> dict[str, Any]:
    return dict(dict(num_steps=steps, loss=args.loss, rank=args.rank, learning_rate=args.learning_rate), **form)


def goals(rows: list[dict], budgets: list[int]) -> list[dict]:
    """Per budget: hybrid + pivotal's PSNR over the best W+ row's, and its bytes per item, against the issue's goal."""
    out = []
    for budget in budgets:
        at = [r for r in rows if r["steps"] == budget]
        best_w = max((r for r in at if r["method"].startswith("W+")), key=lambda r: r["psnr"])
        tuned = next(r for r in at if r["method"] == "hybrid + pivotal")
        untuned = next(r for r in at if r["method"] == "hybrid (W+)")
        gain = tuned["psnr"] - best_w["psnr"]
        out.append(dict(budget=budget, best_w_plus=best_w["method"], gain_db=gain,
                        gain_over_hybrid_db=tuned["psnr"] - untuned["psnr"], bytes_per_item=tuned["bytes_per_item"],
                        goal="yes" if gain >= 3 and tuned["bytes_per_item"] <= MB else "no"))
    return out


# ------------------------------------------------------------------------------------------------ 2. forms
def forms(G, targets, tuned: Tuned, steps: int, args) -> list[dict]:
    """Each form tuned from the same pivots (the smallest budget's), on every image."""
    with torch.no_grad():
        base = reconstruction_metrics(render(G, tuned.pivots), targets)["psnr"].mean().item()
        gen = torch.Generator().manual_seed(0)
        far = G.mapping(torch.randn([len(targets), G.z_dim], generator=gen).to(targets.device), None)
    rows = [dict(form="pivot alone (hybrid)", psnr=base, gain_db=0.0, bytes_per_item=0)]
    for form in parse_forms(args.forms):
        start, parts, change = time.perf_counter(), [], []
        for lo in range(0, len(targets), args.batch_size):
            sl = slice(lo, lo + args.batch_size)
            result = tune(G, targets[sl], tuned.pivots[sl], seed=item_seeds(range(lo, lo + len(targets[sl]))),
                          **pivotal_options(args, steps, **form))
            parts.append(result)
            with torch.no_grad():
                change.append((render(G, far[sl], result.deltas) - render(G, far[sl])).abs().mean(dim=(1, 2, 3)))
        psnr = torch.cat([r.metrics["psnr"] for r in parts]).mean().item()
        size = parts[0].deltas.bytes_per_item()
        rows.append(dict(form=",".join(f"{k}={v}" for k, v in form.items()), psnr=psnr, gain_db=psnr - base,
                         bytes_per_item=size, db_per_kb=(psnr - base) / (size / 1024) if size else None,
                         far_change=torch.cat(change).mean().item(), seconds=time.perf_counter() - start))
        print(markdown_table([rows[-1]], FORM_COLUMNS).splitlines()[-1], flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ 3. edits
def edits(world: World, tuned: Tuned, args) -> dict[str, list[dict]]:
    """Rows of `evaluate_edits` on the untuned and tuned items, and their per-direction summary."""
    G = world.G
    latents, scores = sample_and_score(G, world.scorer, args.num_fit, seed=0, truncation_psi=0.7,
                                       batch_size=args.batch_size)
    directions = [d for d in fit_directions(latents, {k: scores[k] for k in world.binary}, chosen_num_or_ratio=0.02,
                                            provenance=dict(truncation_psi=0.7))]
    deltas = PivotalDeltas.cat(tuned.deltas)
    items = {"untuned (hybrid, G)": (tuned.untuned_ws, None), "tuned (pivot + delta, G')": (tuned.pivots, deltas)}
    out = {}
    for label, (ws, item_deltas) in items.items():
        def render_items(codes, rows, item_deltas=item_deltas):
            return render(G, codes, None if item_deltas is None else item_deltas.select(rows))

        out[label] = evaluate_edits(G, world.scorer, ws, directions, STRENGTHS, batch_size=args.batch_size,
                                    render=render_items)
    return out


def edit_summary(raw: dict[str, list[dict]], binary: list[str]) -> list[dict]:
    """Per direction and sign: flip and mean interference (share of items whose other binary attributes change),
    untuned vs tuned, at the strength `best_rows` picks on the untuned items, and averaged over every strength of that
    sign (robust when few items are eligible); and the strength the tuned items need by `best_rows`."""
    (_, untuned), (_, tuned) = raw.items()
    out = []
    for pick, own in zip(best_rows(untuned, binary, []), best_rows(tuned, binary, [])):
        name, sign = pick["direction"], np.sign(pick["strength"])
        same_sign = {label: [r for r in rows if r["direction"].removeprefix("interfacegan-") == name
                             and np.sign(r["strength"]) == sign] for label, rows in (("u", untuned), ("t", tuned))}
        row = next(r for r in same_sign["t"] if r["strength"] == pick["strength"])
        out.append(dict(direction=name, strength=pick["strength"], flip_untuned=pick["flip"],
                        flip_tuned=row["flip_rate"], interference_untuned=pick["interference_mean"],
                        interference_tuned=_interference(row, binary),
                        flip_avg_untuned=_mean(r["flip_rate"] for r in same_sign["u"]),
                        flip_avg_tuned=_mean(r["flip_rate"] for r in same_sign["t"]),
                        interference_avg_untuned=_mean(_interference(r, binary) for r in same_sign["u"]),
                        interference_avg_tuned=_mean(_interference(r, binary) for r in same_sign["t"]),
                        tuned_strength=own["strength"], tuned_flip=own["flip"]))
    return out


def _interference(row: dict, binary: list[str]) -> float:
    return float(np.mean(list(independent(row, binary, []).values())))


def _mean(values) -> float:
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


# ------------------------------------------------------------------------------------------------ 4. speed
def speed(G, targets, pivots, args) -> list[dict]:
    """image-steps/s: one problem of `speed_batch` images vs `speed_batch` problems of one image, same steps."""
    n = min(args.speed_batch, len(targets))
    x, ws, seeds = targets[:n], pivots[:n], item_seeds(range(n))
    loss = build_loss(args.loss, device=x.device)
    rows = []
    for fused in (False, True):
        config = PivotalConfig(**pivotal_options(args, args.speed_steps), fused_modconv=fused)
        batched = _image_steps_per_s([PivotalProblem(G, config, loss, x, ws, seeds)], args.speed_steps, n)
        single = _image_steps_per_s([PivotalProblem(G, config, loss, x[i:i + 1], ws[i:i + 1], seeds[i:i + 1])
                                     for i in range(n)], args.speed_steps, n)
        form = "fused (per-sample weights)" if fused else "factored (shared conv + rank-r)"
        rows += [dict(form=form, batch=1, image_steps_per_s=single, ratio=1.0),
                 dict(form=form, batch=n, image_steps_per_s=batched, ratio=batched / single)]
        print(markdown_table(rows[-2:], list(rows[0])).split("\n", 2)[-1], flush=True)
    return rows


def _image_steps_per_s(problems: list[PivotalProblem], steps: int, num_images: int) -> float:
    device = problems[0].ws.device
    for problem in problems:  # warm-up step (allocator, cuDNN autotuning)
        problem.step()
    synchronize(device)
    start = time.perf_counter()
    for problem in problems:
        for _ in range(steps):
            problem.step()
    synchronize(device)
    return num_images * steps / (time.perf_counter() - start)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.tables:
        payload = json.loads(args.tables.read_text())
        if payload.get("edits_raw"):  # JSON wrote NaN (no eligible item) as null
            raw = {label: [{k: float("nan") if v is None and k != "target" else v for k, v in r.items()} for r in rows]
                   for label, rows in payload["edits_raw"].items()}
            payload["edits"] = edit_summary(raw, payload["binary"])
        print(report(payload))
        return payload
    device = torch.device(args.device)
    world, E, targets = load_world(args, device)
    perceptual = perceptual_metric(args.tiny, device)
    facts = device_facts(device)
    print(facts, f"loss={args.loss}", f"perceptual={next(iter(perceptual), None)}", sep="\n", flush=True)
    quality_rows, kept = quality(world.G, E, targets, args, perceptual)
    smallest = kept[min(args.budgets)]
    payload = dict(facts, loss=args.loss, perceptual=next(iter(perceptual), None), budgets=args.budgets,
                   pivot_share=args.pivot_share, rank=args.rank, learning_rate=args.learning_rate,
                   quality=quality_rows, goals=goals(quality_rows, args.budgets))
    steps = min(args.budgets) - max(1, round(min(args.budgets) * args.pivot_share))
    payload["forms"] = forms(world.G, targets, smallest, steps, args) if args.forms else []
    if args.num_fit:
        payload["edits_raw"], payload["binary"] = edits(world, kept[max(args.budgets)], args), world.binary
        payload["edits"] = edit_summary(payload["edits_raw"], world.binary)
    payload["speed"] = speed(world.G, targets, smallest.pivots, args)
    print(report(payload))
    write_json(args.out, payload)
    return payload


def report(payload: dict) -> str:
    parts = [markdown_table(payload["quality"], QUALITY_COLUMNS),
             markdown_table(payload["goals"], list(payload["goals"][0]))]
    if payload["forms"]:
        parts.append(markdown_table(payload["forms"], FORM_COLUMNS))
    if payload.get("edits"):
        parts.append(markdown_table(payload["edits"], list(payload["edits"][0])))
    parts.append(markdown_table(payload["speed"], list(payload["speed"][0])))
    return "\n\n".join(parts)


if __name__ == "__main__":
    main()
