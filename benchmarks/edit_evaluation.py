"""Edit evaluation (the "Directions and batch edits" issue, item 5): InterFaceGAN boundaries on a generator with an
attribute classifier, and what editing along them does.

1. sample z, map to w (truncation `--psi`), render and score `--num-fit` images; 2. fit one boundary per attribute
(the most extreme `--ratios` of each end), plus conditional ones: the deliberately correlated pair both ways
(`eyeglasses|blond_hair`, `blond_hair|eyeglasses`) and smiling conditioned on every other binary attribute; each
direction's `scale` is the std of the samples' projection on it, so strengths are in sigmas; 3. on `--num-eval`
fresh items (`--items-psi`, default 1) and on `--num-inverted` held-out faces (world seed 1, never seen by the GAN) inverted with the
encoder + `--steps` W+ steps (`--loss`, default mse; `--start`: `hybrid`, the default, is `HYBRID_CONFIG`,
`encoder-start` the hybrid preset `ENCODER_START_CONFIG` that `ganinv invert` and the demo use), edit at each
strength and measure flip rate of the target, change of every other attribute (interference) and pixel change;
4. write the raw rows as JSON; `--tables RAW.json` turns them into the markdown tables of BENCHMARKS.md.

A training run (`--gan-run RUN`) is measured on its own world (its G_ema, classifier and world version's held-out
faces); its inverted items need `--encoder` (an encoder file or encoder run folder trained for that G_ema), and a
clf-perceptual `--loss` reads the run's classifier. Issue 15's goal 3 (inverted held-out faces, the demo's budget):
    python -m benchmarks.edit_evaluation --faces64 --gan-run training/faces64v2 --encoder training/encoder_faces64v2 \
        --num-inverted 500 --steps 20 --start encoder-start --loss clf-perceptual --psi 1.0 --ratios 0.02 ...

Goal: flip >= 90 % with interference <= 10 % on the independent binary attributes (all but the target and its
correlated partner), and lower partner change for the conditional boundary than for the plain one. Continuous
attributes (skin_tone, yaw, ...) are reported as the mean shift of their value per unit strength.

faces64 on a GPU (200k samples: ~3 min on an H100):
    PYTHONPATH=$PWD python -m benchmarks.edit_evaluation --faces64 --device cuda --out results/edit_eval_faces64.json
    PYTHONPATH=$PWD python -m benchmarks.edit_evaluation --tables results/edit_eval_faces64.json
Plumbing check on a tiny random generator and a synthetic classifier (numbers mean nothing):
    PYTHONPATH=$PWD python -m benchmarks.edit_evaluation --demo --out /tmp/edit_evaluation.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import device_facts, heldout_faces, markdown_table, write_json
from ganinv.directions.evaluate import evaluate_edits
from ganinv.directions.interfacegan import fit_directions, sample_and_score
from ganinv.directions.sampling import iter_latents
from ganinv.directions.synthetic import SyntheticAttributes
from ganinv.generators.stylegan2 import Generator

FLIP_GOAL, INTERFERENCE_GOAL = 0.9, 0.1
PAIR_CUT_GOAL = 0.7  # the conditional boundary cuts the correlated partner's change by this much at equal flip
STRENGTHS = (-4, -3, -2, -1.5, -1, -0.5, 0.5, 1, 1.5, 2, 3, 4)


@dataclasses.dataclass
class World:
    G: torch.nn.Module
    scorer: object
    binary: list[str]
    correlated: tuple[str, str]
    inverted: torch.Tensor | None = None  # ws of held-out images, when the world has an encoder


def demo_world(device: str) -> World:
    torch.manual_seed(0)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=512, channel_max=32))
    G = G.eval().requires_grad_(False).to(device)
    _, ws = next(iter_latents(G, 512, seed=99, batch_size=512, truncation_psi=0.7))
    with torch.no_grad():
        attrs = SyntheticAttributes(["a", "b", "c", "d", "e"], G.synthesis(ws), correlated={"b": ("a", 0.8)})
    return World(G, attrs, attrs.names, ("a", "b"))


def faces64_world(device: str, args: argparse.Namespace) -> World:
    """The embedded world: faces64 (or a training run's G_ema), its classifier, and `args.num_inverted` held-out
    faces of its world inverted by encoder + W+ optimisation (`inverted_items`). The shipped encoder belongs to the
    shipped generator; a training run's items need `args.encoder`, or are left out."""
    world, version, classifier = judged_generator(device, args.gan_run, args.classifier)
    encoder = args.encoder or (None if args.gan_run else "faces64")
    if args.num_inverted and encoder:
        world.inverted = inverted_items(world.G, encoder, heldout_faces(args.num_inverted, device, version=version,
                                                                        size=world.G.img_resolution),
                                        args, classifier=classifier)
    return world


def judged_generator(device: str, gan_run: Path | None, classifier: str | None = None
                     ) -> tuple[World, int | None, str]:
    """(the world without inverted items, its world version (None: the shipped one), the classifier's source):
    faces64 and its classifier, or a training run's G_ema judged by the run's own classifier or by `classifier`
    (a classifier file of the run's world)."""
    from ganinv.generators import load_generator
    from ganinv.models.attributes import load_classifier
    from ganinv.training.train_gan import generator_from_checkpoint, run_world

    if classifier and not gan_run:
        raise SystemExit("--classifier judges a --gan-run's images; the shipped world has its own")
    version, classifier = run_world(gan_run, classifier) if gan_run else (None, "builtin")
    G = generator_from_checkpoint(gan_run).to(device) if gan_run else load_generator("faces64", device)
    C = load_classifier(classifier, device)
    binary = [n for n, k in zip(C.attribute_names, C.attribute_kinds) if k == "binary"]
    return World(G, C.predict, binary, ("eyeglasses", "blond_hair")), version, classifier


def inverted_items(G: torch.nn.Module, encoder: str, faces: torch.Tensor, args: argparse.Namespace, *,
                   classifier: str) -> torch.Tensor:
    """The codes of `faces` (held-out: the GAN never saw them) by `encoder` (a file, built-in name or encoder run
    folder, checked against G) + `args.steps` W+ steps from the `args.start` preset with `args.loss` (a
    clf-perceptual term on the world's `classifier`), the generator's constant noise; each image seeded by its
    index (the codes still move with `args.batch_size` in their last bits: the kernels differ by batch)."""
    from benchmarks.encoder_any_generator import encoder_of, world_loss
    from ganinv.inversion.hybrid import ENCODER_START_CONFIG, HYBRID_CONFIG, hybrid

    device = faces.device
    E = encoder_of(encoder, G, device)
    config = dataclasses.replace(ENCODER_START_CONFIG if args.start == "encoder-start" else HYBRID_CONFIG,
                                 num_steps=args.steps, loss=args.loss, optimize_noise=False)
    loss_fn = world_loss(args.loss, classifier, device)
    size = args.batch_size
    return torch.cat([hybrid(G, E, faces[i:i + size], config, seed=list(range(i, i + len(faces[i:i + size]))),
                             loss_fn=loss_fn).ws.detach() for i in range(0, len(faces), size)])


def collect(world: World, args: argparse.Namespace) -> dict:
    """Fit boundaries per (psi, ratio) and evaluate them on every item set: the raw rows."""
    a, b = world.correlated
    others = [x for x in world.binary if x not in (a, b)]
    conditions = {a: [b], b: [a], others[0]: [x for x in world.binary if x != others[0]]}
    items = {"sampled": torch.cat([ws for _, ws in iter_latents(world.G, args.num_eval, seed=1,
                                                               batch_size=args.batch_size,
                                                               truncation_psi=args.items_psi)])}
    if world.inverted is not None:
        items["inverted"] = world.inverted
    out = dict(args=vars(args) | {"out": str(args.out), "gan_run": str(args.gan_run)},
               strengths=list(args.strengths), binary=world.binary,
               correlated=list(world.correlated), fits={}, rows={}, times={}, rates={})
    for psi in args.psi:
        start = time.perf_counter()
        latents, scores = sample_and_score(world.G, world.scorer, args.num_fit, seed=0, truncation_psi=psi,
                                           batch_size=args.batch_size)
        out["times"][f"sample_psi{psi}"] = time.perf_counter() - start
        out["rates"][f"psi{psi}"] = {k: float(np.mean(v >= 0.5)) for k, v in scores.items()}
        for ratio in args.ratios:
            key = f"psi{psi}_r{ratio}"
            directions = fit_directions(latents, scores, conditions=conditions, chosen_num_or_ratio=ratio,
                                        provenance=dict(truncation_psi=psi))
            out["fits"][key] = [dict(name=d.name, scale=d.scale, vector=d.vector.tolist(), **d.provenance)
                                for d in directions]
            for name, ws in items.items():
                start = time.perf_counter()
                out["rows"][f"{key}_{name}"] = evaluate_edits(world.G, world.scorer, ws, directions,
                                                              args.strengths, batch_size=args.batch_size)
                out["times"][f"{key}_{name}"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------------------------------------- tables
def independent(row: dict, binary: list[str], correlated: list[str]) -> dict[str, float]:
    """Change of each binary attribute that is neither the target nor its correlated partner."""
    partner = _partner(row["target"], correlated)
    return {x: row[f"change:{x}"] for x in binary if x not in (row["target"], partner)}


def _partner(target: str, correlated: list[str]) -> str | None:
    return next((x for x in correlated if x != target), None) if target in correlated else None


def one_side(rows: list[dict], direction: str, sign: int) -> list[dict]:
    """The rows of `direction` at strengths of `sign`, weakest first."""
    return sorted((r for r in rows if r["direction"] == direction and r["strength"] * sign > 0),
                  key=lambda r: abs(r["strength"]))


def best_rows(rows: list[dict], binary: list[str], correlated: list[str]) -> list[dict]:
    """Per binary direction and sign: the smallest |strength| with flip >= goal, else the highest flip."""
    out = []
    for name in dict.fromkeys(r["direction"] for r in rows if r["target"] in binary):
        for sign in (1, -1):
            tried = one_side(rows, name, sign)
            reach = [r for r in tried if r["flip_rate"] >= FLIP_GOAL]
            row = reach[0] if reach else max(tried, key=lambda r: r["flip_rate"])
            ind = independent(row, binary, correlated)
            worst = max(ind, key=ind.get)
            partner = _partner(row["target"], correlated)
            out.append(dict(direction=name.removeprefix("interfacegan-"), strength=row["strength"],
                            flip=row["flip_rate"], eligible=row["num_eligible"],
                            interference_mean=float(np.mean(list(ind.values()))),
                            interference_max=f"{ind[worst]:.2f} ({worst})",
                            partner_change=row[f"change:{partner}"] if partner else None,
                            pixel_change=row["pixel_change"],
                            goal="yes" if row["flip_rate"] >= FLIP_GOAL and ind[worst] <= INTERFERENCE_GOAL else "no"))
    return out


def pair_rows(rows: list[dict], correlated: list[str]) -> list[dict]:
    """The correlated pair: plain vs conditional boundary of the first attribute, every strength."""
    a, b = correlated
    plain, cond = f"interfacegan-{a}", f"interfacegan-{a}|{b}"
    by = {(r["direction"], r["strength"]): r for r in rows}
    return [dict(strength=s, flip_plain=by[plain, s]["flip_rate"], flip_conditional=by[cond, s]["flip_rate"],
                 **{f"{b}_change_plain": by[plain, s][f"change:{b}"],
                    f"{b}_change_conditional": by[cond, s][f"change:{b}"]})
            for s in sorted({r["strength"] for r in rows}) if (plain, s) in by]


def pair_cut_rows(rows: list[dict], correlated: list[str]) -> list[dict]:
    """The correlated pair's goal, each attribute of the pair and each sign: its partner's change at FLIP_GOAL flip
    (linear between the strengths tried, along |strength|), plain vs conditional boundary, and the cut
    1 - conditional / plain. None where a boundary never reaches the flip."""
    def change_at_goal(direction: str, partner: str, sign: int) -> float | None:
        tried = one_side(rows, direction, sign)
        flips = np.maximum.accumulate([r["flip_rate"] for r in tried]) if tried else np.array([])
        if not len(flips) or flips[-1] < FLIP_GOAL:
            return None
        return float(np.interp(FLIP_GOAL, flips, [r[f"change:{partner}"] for r in tried]))

    out = []
    for target, partner in (correlated, correlated[::-1]):
        for sign in (1, -1):
            plain = change_at_goal(f"interfacegan-{target}", partner, sign)
            cond = change_at_goal(f"interfacegan-{target}|{partner}", partner, sign)
            cut = None if plain is None or cond is None or plain <= 0 else 1 - cond / plain
            out.append(dict(direction=f"{target}|{partner}", sign="+" if sign > 0 else "-",
                            partner_change_plain=plain, partner_change_conditional=cond, cut=cut,
                            goal="yes" if cut is not None and cut >= PAIR_CUT_GOAL else "no"))
    return out


def continuous_rows(rows: list[dict], binary: list[str]) -> list[dict]:
    """Continuous targets: mean change of the value per unit strength (slope through 0), and the largest mean
    |change| of another continuous attribute at strength +-1."""
    out = []
    for name in dict.fromkeys(r["direction"] for r in rows if r["target"] and r["target"] not in binary):
        mine = [r for r in rows if r["direction"] == name]
        s = np.array([r["strength"] for r in mine])
        slope = float(np.sum(s * np.array([r["target_delta"] for r in mine])) / np.sum(s * s))
        unit = [r for r in mine if abs(r["strength"]) == 1]
        others = {k[7:]: np.mean([r[k] for r in unit]) for k in unit[0] if k.startswith("dscore:")
                  and k[7:] not in binary}
        worst = max(others, key=others.get)
        out.append(dict(direction=name.removeprefix("interfacegan-"), shift_per_unit=slope,
                        max_other_shift_at_1=f"{others[worst]:.3f} ({worst})",
                        max_binary_change_at_1=max(np.mean([r[f"change:{x}"] for r in unit]) for x in binary),
                        pixel_change_at_1=float(np.mean([r["pixel_change"] for r in unit]))))
    return out


def fit_rows(fits: list[dict], correlated: list[str]) -> list[dict]:
    vectors = {f["name"]: np.array(f["vector"]) for f in fits}
    a, b = (f"interfacegan-{x}" for x in correlated)
    return [dict(direction=f["name"].removeprefix("interfacegan-"), val_accuracy=f["val_accuracy"],
                 scale=f["scale"], cos_to_partner=float(vectors[f["name"]] @ vectors[b if f["attribute"] ==
                                                                                      correlated[0] else a])
                 if f["attribute"] in correlated else None) for f in fits]


def tables(raw: dict) -> str:
    binary, correlated = raw["binary"], raw["correlated"]
    parts = []
    for key, fits in raw["fits"].items():
        parts.append(f"### {key}: boundaries\n\n" + markdown_table(fit_rows(fits, correlated),
                                                                 ["direction", "val_accuracy", "scale",
                                                                  "cos_to_partner"]))
        for items in ("sampled", "inverted"):
            rows = raw["rows"].get(f"{key}_{items}")
            if not rows:
                continue
            best = best_rows(rows, binary, correlated)
            parts.append(f"### {key}, {items} items: smallest strength reaching {FLIP_GOAL:.0%} flip (else the "
                         f"best)\n\n" + markdown_table(best, list(best[0])))
            pair = pair_rows(rows, correlated)
            parts.append(f"### {key}, {items} items: {correlated[0]} plain vs conditional\n\n"
                         + markdown_table(pair, list(pair[0])))
            cuts = pair_cut_rows(rows, correlated)
            parts.append(f"### {key}, {items} items: the pair's cut at {FLIP_GOAL:.0%} flip (goal "
                         f">= {PAIR_CUT_GOAL:.0%})\n\n" + markdown_table(cuts, list(cuts[0])))
            cont = continuous_rows(rows, binary)
            if cont:
                parts.append(f"### {key}, {items} items: continuous attributes\n\n"
                             + markdown_table(cont, list(cont[0])))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="tiny random generator + synthetic classifier")
    parser.add_argument("--faces64", action="store_true", help="faces64, its classifier and encoder")
    parser.add_argument("--gan-run", type=Path, help="with --faces64: a train-gan run's G_ema instead of the shipped "
                                                      "generator (inverted items only with --encoder)")
    parser.add_argument("--classifier", help="with --gan-run: another classifier file of the run's world as the judge "
                                             "(the fit's scores, the flips, the inverted items' clf-perceptual loss)")
    parser.add_argument("--encoder", help="the encoder of the inverted items (file or encoder run folder; default: "
                                          "faces64's for the shipped world, none for --gan-run)")
    parser.add_argument("--start", choices=("hybrid", "encoder-start"), default="hybrid",
                        help="the inverted items' optimisation: HYBRID_CONFIG or the hybrid preset of `ganinv invert`")
    parser.add_argument("--loss", default="mse", help="the inverted items' loss spec (clf-perceptual: the world's "
                                                      "classifier)")
    parser.add_argument("--items-psi", type=float, default=1.0, help="truncation of the sampled items edited")
    parser.add_argument("--strengths", type=float, nargs="+", default=list(STRENGTHS), help="in sigmas")
    parser.add_argument("--tables", type=Path, help="print the markdown tables of a raw JSON and exit")
    parser.add_argument("--num-fit", type=int, default=200_000)
    parser.add_argument("--num-eval", type=int, default=500)
    parser.add_argument("--num-inverted", type=int, default=500)
    parser.add_argument("--steps", type=int, default=100, help="W+ steps after the encoder for held-out faces")
    parser.add_argument("--psi", type=float, nargs="+", default=[0.7, 1.0], help="truncation of the fit samples")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.02, 0.05], help="chosen_num_or_ratio")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("edit_evaluation.json"))
    args = parser.parse_args(argv)
    if args.tables:
        raw = json.loads(args.tables.read_text())
        print(tables(raw))
        return raw
    if args.demo == args.faces64:
        raise SystemExit("pass exactly one of --demo, --faces64 (or --tables RAW.json)")
    start = time.perf_counter()
    world = demo_world(args.device) if args.demo else faces64_world(args.device, args)
    raw = collect(world, args) | device_facts(torch.device(args.device))
    raw["times"]["total"] = time.perf_counter() - start
    write_json(args.out, raw, indent=None)
    print(tables(raw))
    return raw


if __name__ == "__main__":
    main()
