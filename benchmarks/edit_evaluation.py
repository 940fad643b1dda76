"""Edit evaluation (the "Directions and batch edits" issue, item 5): InterFaceGAN boundaries on a generator with an
attribute classifier, and what editing along them does.

1. sample z, map to w (psi 0.7), render and score `--num-fit` images; 2. fit one boundary per attribute, plus the
conditional boundaries of the deliberately correlated pair (`--correlated a b`: a|b and b|a); 3. on `--num-eval`
fresh items, edit at each strength and measure flip rate of the target, change of every other attribute
(interference) and pixel change; 4. per boundary, report the smallest strength reaching the flip goal and the
interference there; write `edit_evaluation.md` and `edit_evaluation.json` to `--out`.

Goal: flip >= 90 % with interference <= 10 % on the independent attributes (all but the target and its correlated
partner), and a lower partner change for the conditional boundary than for the plain one.

faces64 (when the generator and classifier land; each flag is `module:function` returning the object):
    PYTHONPATH=$PWD python benchmarks/edit_evaluation.py --generator MOD:FN --classifier MOD:FN \
        --attributes smiling eyeglasses ... --correlated A B --device cuda --out results/edit_evaluation
Plumbing check on a tiny random generator and a synthetic classifier (numbers mean nothing):
    PYTHONPATH=$PWD python benchmarks/edit_evaluation.py --demo --out /tmp/edit_evaluation
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import time
from pathlib import Path

import torch

from ganinv.directions.evaluate import evaluate_edits
from ganinv.directions.interfacegan import fit_directions, sample_and_score
from ganinv.directions.sampling import iter_latents
from ganinv.directions.synthetic import SyntheticAttributes
from ganinv.generators.stylegan2 import Generator

FLIP_GOAL, INTERFERENCE_GOAL = 0.9, 0.1


def load(spec: str):
    """`package.module:function` -> function()."""
    module, _, name = spec.partition(":")
    if not name:
        raise SystemExit(f"expected module:function, got {spec!r}")
    return getattr(importlib.import_module(module), name)()


def demo_world(device: str) -> tuple[torch.nn.Module, SyntheticAttributes, list[str], tuple[str, str]]:
    torch.manual_seed(0)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=512, channel_max=32))
    G = G.eval().requires_grad_(False).to(device)
    _, ws = next(iter_latents(G, 512, seed=99, batch_size=512, truncation_psi=0.7))
    names = ["a", "b", "c", "d", "e"]
    with torch.no_grad():
        attrs = SyntheticAttributes(names, G.synthesis(ws), correlated={"b": ("a", 0.8)})
    return G, attrs, names, ("a", "b")


def summarise(rows: list[dict], correlated: tuple[str, str]) -> list[dict]:
    """Per direction: the smallest |strength| (each sign) with flip >= goal, else the largest tried."""
    out = []
    for name in dict.fromkeys(r["direction"] for r in rows):
        for sign in (-1, 1):
            tried = sorted((r for r in rows if r["direction"] == name and r["strength"] * sign > 0),
                           key=lambda r: abs(r["strength"]))
            if not tried:
                continue
            row = next((r for r in tried if r["flip_rate"] >= FLIP_GOAL), tried[-1])
            target = row["target"]
            partner = ({*correlated} - {target}).pop() if target in correlated else None
            independent = [v for k, v in row.items() if k.startswith("change:") and k[7:] != partner]
            out.append(dict(direction=name, strength=row["strength"], flip_rate=row["flip_rate"],
                            independent_interference=sum(independent) / len(independent) if independent else math.nan,
                            independent_interference_max=max(independent, default=math.nan),
                            partner=partner, partner_change=row.get(f"change:{partner}", math.nan),
                            pixel_change=row["pixel_change"],
                            meets_goal=row["flip_rate"] >= FLIP_GOAL
                            and max(independent, default=0) <= INTERFERENCE_GOAL))
    return out


def boundary_table(directions: list, correlated: tuple[str, str]) -> list[dict]:
    """Validation accuracy of each boundary, and for the correlated pair |cos| to the partner's plain boundary."""
    plain = {d.provenance["attribute"]: d.vector for d in directions if "conditions" not in d.provenance}
    table = []
    for d in directions:
        row = dict(direction=d.name, val_accuracy=d.provenance["val_accuracy"])
        if d.provenance["attribute"] in correlated:
            partner = ({*correlated} - {d.provenance["attribute"]}).pop()
            row["cos_to_partner"] = float(abs(d.vector @ plain[partner]))
        table.append(row)
    return table


def markdown(rows: list[dict], columns: list[str]) -> str:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="tiny random generator + synthetic classifier")
    parser.add_argument("--generator", help="module:function returning a ganinv Generator")
    parser.add_argument("--classifier", help="module:function returning images -> {attribute: probability [N]}")
    parser.add_argument("--attributes", nargs="+", help="attributes to fit and measure (default: all)")
    parser.add_argument("--correlated", nargs=2, metavar=("A", "B"), help="the deliberately correlated pair")
    parser.add_argument("--num-fit", type=int, default=10000)
    parser.add_argument("--num-eval", type=int, default=500)
    parser.add_argument("--chosen", type=float, default=0.1, help="InterFaceGAN chosen_num_or_ratio")
    parser.add_argument("--strengths", type=float, nargs="+", default=[-4, -3, -2, -1, 1, 2, 3, 4])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("edit_evaluation"))
    args = parser.parse_args()
    if args.demo:
        G, classifier, attributes, correlated = demo_world(args.device)
    else:
        if not (args.generator and args.classifier and args.correlated):
            raise SystemExit("pass --generator, --classifier and --correlated (or --demo)")
        G = load(args.generator).eval().requires_grad_(False).to(args.device)
        classifier, attributes, correlated = load(args.classifier), args.attributes, tuple(args.correlated)
    start = time.perf_counter()
    # 1. sample and score
    latents, scores = sample_and_score(G, classifier, args.num_fit, seed=0, batch_size=args.batch_size,
                                       attributes=attributes)
    # 2. fit boundaries, plain and conditional on the correlated pair
    a, b = correlated
    directions = fit_directions(latents, scores, conditions={a: [b], b: [a]}, chosen_num_or_ratio=args.chosen)
    # 3. edit fresh items and measure
    items = torch.cat([ws for _, ws in iter_latents(G, args.num_eval, seed=1, batch_size=args.batch_size,
                                                    truncation_psi=0.7)])
    rows = evaluate_edits(G, classifier, items, directions, args.strengths, batch_size=args.batch_size)
    # 4. summarise and write
    summary = summarise(rows, correlated)
    args.out.mkdir(parents=True, exist_ok=True)
    fits = boundary_table(directions, correlated)
    text = "\n\n".join([
        f"# Edit evaluation ({'demo: tiny random generator, synthetic classifier' if args.demo else args.generator})",
        f"{args.num_fit} scored samples, {args.num_eval} evaluation items, strengths {args.strengths}, "
        f"{time.perf_counter() - start:.0f} s.",
        "## Boundaries\n\n" + markdown(fits, ["direction", "val_accuracy", "cos_to_partner"]),
        "## Smallest strength reaching the flip goal\n\n" + markdown(summary, list(summary[0])),
        "## All rows\n\n" + markdown(rows, ["direction", "strength", "flip_rate", "num_eligible", "target_delta",
                                             "interference", "interference_max", "pixel_change"]),
    ])
    (args.out / "edit_evaluation.md").write_text(text + "\n")
    (args.out / "edit_evaluation.json").write_text(json.dumps(dict(fits=fits, summary=summary, rows=rows), indent=1))
    print(text)


if __name__ == "__main__":
    main()
