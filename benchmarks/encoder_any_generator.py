"""Cheaper corpora for any generator (issue 23): an encoder trained by `ganinv.training.train_encoder` from the
generator alone and from the generator + the user's images, against optimisation from `w_avg`; and refinement.

On the embedded world with the built-in encoder set aside: PSNR / SSIM / perceptual distance on held-out faces (world
seed 1) of the encoder alone and hybrid at 30 / 100 steps for each self-trained encoder, W+ optimisation from
`w_avg` at 100 / 300 / 1,000 steps, and refinement (100 steps, then 100 more with `ganinv.inversion.refine`) against
200 steps in one go, for W+ and for hybrid (and, to tell why they differ, the one-go W+ run's own state at step 100
continued by `refine`, i.e. with Adam restarted). Goals: hybrid at 100 steps within 0.5 dB of W+ at 1,000; the encoder
alone >= 24 dB (the embedded world's requirement); refinement within 1 %. Every run uses codes alone
(`optimize_noise=False`, what a corpus stores) and the same loss (`--loss`, default clf-perceptual); the perceptual
column is LPIPS-VGG when its trunk is on disk, else clf-perceptual (not LPIPS).

    # one training chunk on the GPU (repeat until the schedule ends; each fits a 10-minute command):
    python -m benchmarks.encoder_any_generator train --run-dir training/encoder_faces64_gen --generator faces64 \
        --minutes 8 --out $OUT
    # for a GAN run of ours (its G_ema; its own classifier is the clf-perceptual net), warm-started from the encoder
    # of an earlier checkpoint of that run (new run only; see training/README.md):
    python -m benchmarks.encoder_any_generator train --run-dir training/encoder_faces64v2 \
        --gan-run training/faces64v2 [--init-from OLD_ENCODER_RUN] --minutes 8 --out $OUT
    python -m benchmarks.encoder_any_generator install --source FILES_AT --run-dir training/encoder_faces64_gen
    python -m benchmarks.encoder_any_generator export --run-dir training/encoder_faces64_gen --to e.safetensors
    # the table (--gan-run RUN instead of --generator: the run's G_ema, held-out faces of the run's world version,
    # its classifier for clf-perceptual):
    python -m benchmarks.encoder_any_generator evaluate --generator faces64 \
        --encoder generator=training/encoder_faces64_gen --encoder generator+10k=training/encoder_faces64_10k \
        --out $OUT/encoder_any_generator.json
    # CPU smoke (tiny random generator, a few steps of everything; the numbers mean nothing):
    python -m benchmarks.encoder_any_generator smoke --out /tmp/encoder_smoke.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    EARLIER_RUNS, device_facts, export_run, heldout_faces, install_run, markdown_table, tiny_generator, write_json,
)
from benchmarks.inversion_quality import perceptual_metric, run_batched, summarize  # noqa: E402
from ganinv.datasets.procedural_faces import world  # noqa: E402
from ganinv.generators import generator_identity, load_generator, save_generator  # noqa: E402
from ganinv.inversion import (  # noqa: E402
    ENCODER_START_CONFIG, InversionConfig, build_problem, continued_config, encode, hybrid, invert, refine,
)
from ganinv.losses.registry import WeightedLoss, build_loss, canonical_loss_spec, parse_loss_spec  # noqa: E402
from ganinv.models.encoder import check_encoder_for, load_encoder, save_encoder  # noqa: E402
from ganinv.training.checkpoint import load_checkpoint_entry  # noqa: E402
from ganinv.training.train_encoder import EncoderTrainConfig, encoder_from_run, train_encoder  # noqa: E402

DEFAULT_GENERATOR = "faces64"
COLUMNS = ["encoder", "method", "steps", "images", "psnr", "ssim", "perceptual", "seconds"]
ENCODER_IMAGES_SEED = 2  # the encoder's images: world seed 2, neither the GAN's (0) nor the held-out faces' (1)


# ------------------------------------------------------------------------------------------------------- train

def train_chunk(args: argparse.Namespace) -> dict:
    """One chunk of an encoder run; with --out, the files to commit (checkpoint, log, run.json) copied flat."""
    start = time.time()
    if args.follow_gan:
        args.init_from = follow_gan(args.run_dir, args.gan_run) or args.init_from
    weights = {k: v for k, v in dict(pixel_weight=args.pixel_weight, perceptual_weight=args.perceptual_weight,
                                     latent_weight=args.latent_weight).items() if v is not None}
    trainer = train_encoder(args.run_dir, generator=args.generator, gan_run=args.gan_run, minutes=args.minutes,
                            steps=args.steps, data=args.images, batch_size=args.batch_size, device=args.device,
                            init_from=args.init_from, config=EncoderTrainConfig(**weights))
    summary = dict(step=trainer.step, total_steps=trainer.config.total_steps,
                   train_minutes=round(trainer.train_seconds / 60, 2), wall_seconds=round(time.time() - start, 1),
                   generator=trainer.generator_description, perceptual=trainer.config.perceptual,
                   init_from=trainer.config.init_from)
    print(json.dumps(summary), flush=True)
    if args.out:
        print("exported", [f.name for f in export_run(args.run_dir, args.out)], flush=True)
    return summary


def follow_gan(run_dir: str | Path, gan_run: str | Path | None) -> str | None:
    """When the encoder run `run_dir` belongs to an older G_ema than `gan_run`'s (the GAN moved on since), move it
    aside to `<run_dir>_prev` (replacing an earlier one) and return that path, for a new run to warm-start from;
    None when there is no run yet or it belongs to this G_ema (it resumes). The new run's `earlier_runs.jsonl` keeps
    the earlier runs' log entries (each with the generator identity it trained for), so that a run folder replaced
    chunk after chunk still holds its whole history."""
    import shutil

    from ganinv.training.train_gan import generator_from_checkpoint

    if gan_run is None:
        raise SystemExit("--follow-gan follows a GAN run: give --gan-run")
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoint" / "checkpoint.json").exists():
        return None
    earlier_identity = load_checkpoint_entry(run_dir / "checkpoint", "generator_identity")
    if earlier_identity == generator_identity(generator_from_checkpoint(gan_run)):
        return None
    previous = run_dir.with_name(run_dir.name + "_prev")
    shutil.rmtree(previous, ignore_errors=True)
    run_dir.rename(previous)
    history = (previous / EARLIER_RUNS).read_text() if (previous / EARLIER_RUNS).exists() else ""
    if (previous / "log.jsonl").exists():
        history += "".join(json.dumps(dict(json.loads(line), generator_identity=earlier_identity)) + "\n"
                           for line in (previous / "log.jsonl").read_text().splitlines() if line.strip())
    run_dir.mkdir()
    (run_dir / EARLIER_RUNS).write_text(history)
    print(f"{run_dir} belongs to an earlier G_ema of {gan_run}: a new run warm-starts from it ({previous})",
          flush=True)
    return str(previous)


def export_encoder(args: argparse.Namespace) -> dict:
    """The encoder file of a run folder (e.g. the shipped `ganinv/assets/faces64/encoder.safetensors`), with the
    generator identity it belongs to and the run's provenance (`run.json`)."""
    metadata = json.loads((Path(args.run_dir) / "run.json").read_text())
    path = save_encoder(encoder_from_run(args.run_dir), args.to, metadata=metadata)
    print(f"wrote {path} ({metadata['steps']} steps, {metadata['train_minutes']} train min)")
    return metadata


# ---------------------------------------------------------------------------------------------------- evaluate

def load_named_encoder(spec: str, G: torch.nn.Module, device: torch.device) -> tuple[str, torch.nn.Module, dict]:
    """`NAME=PATH` (an encoder file or an encoder run folder) -> (name, encoder checked against G, training facts)."""
    name, _, path = spec.partition("=")
    if not path:
        raise SystemExit(f"--encoder {spec!r}: expected NAME=PATH (an encoder .safetensors file or a run folder)")
    E = encoder_of(path, G, device)  # refuses an encoder of another generator before any timing starts
    facts = {}
    if Path(path).is_dir():
        facts = {k: load_checkpoint_entry(Path(path) / "checkpoint", k) for k in ("step", "train_seconds")}
        facts["train_minutes"] = round(facts.pop("train_seconds") / 60, 2)
    return name, E, dict(facts, path=path, parameters=sum(p.numel() for p in E.parameters()))


def encoder_of(path: str, G: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """The encoder at `path` (an encoder file, built-in name or encoder run folder), checked against G."""
    E = encoder_from_run(path, device) if Path(path).is_dir() else load_encoder(path, device)
    check_encoder_for(E, G, name=path)
    return E


def methods(G, encoders: dict, args: argparse.Namespace) -> list[tuple[str, str, int, object]]:
    """(encoder name, method, steps, fn(chunk, seeds) -> images)."""
    wplus = InversionConfig(space="w+", loss=args.loss, optimize_noise=False)
    start = dataclasses.replace(ENCODER_START_CONFIG, loss=args.loss, optimize_noise=False)
    loss_fn = args.loss_fn
    rows = [("-", "W+", steps, lambda x, s, steps=steps: invert(G, x, wplus, num_steps=steps, seed=s,
                                                                loss_fn=loss_fn).images)
            for steps in args.wplus_steps]
    for name, E in encoders.items():
        rows.append((name, "encoder", 0, lambda x, s, E=E: G.synthesis(encode(E, x), noise_mode="const")))
        rows += [(name, "hybrid (W+)", steps, lambda x, s, E=E, steps=steps: hybrid(
            G, E, x, start, num_steps=steps, seed=s, loss_fn=loss_fn).images) for steps in args.hybrid_steps]
    return rows


def refinement_rows(G, encoders: dict, args: argparse.Namespace) -> list[tuple[str, str, int, object]]:
    """S steps then S more with `refine`, against 2S in one go: W+ from w_avg, and hybrid with the first encoder."""
    S = args.refine_steps
    plans = [("-", "W+", InversionConfig(space="w+", num_steps=S, loss=args.loss, optimize_noise=False), None)]
    if encoders:
        name, E = next(iter(encoders.items()))
        plans.append((name, "hybrid (W+)", dataclasses.replace(ENCODER_START_CONFIG, num_steps=S, loss=args.loss,
                                                               optimize_noise=False), E))
    rows, loss_fn = [], args.loss_fn
    for name, label, config, E in plans:
        rows.append((name, f"{label}, {S} + {S} refined", 2 * S, lambda x, s, config=config, E=E: refine(
            G, x, first_run(G, E, x, s, config, loss_fn).ws, config, more_steps=S, seed=s, loss_fn=loss_fn).images))
        rows.append((name, f"{label}, {2 * S} in one go", 2 * S, lambda x, s, config=config, E=E: first_run(
            G, E, x, s, continued_config(config, S), loss_fn).images))
    # Diagnostic: the one-go run's own state at step S, continued by `refine` (Adam restarted, nothing else changed).
    rows.append(("-", f"W+, {2 * S} in one go, Adam restarted at {S}", 2 * S, lambda x, s: refine(
        G, x, state_at(G, x, s, continued_config(plans[0][2], S), S, loss_fn), plans[0][2], more_steps=S, seed=s,
        loss_fn=loss_fn).images))
    return rows


def state_at(G, target: torch.Tensor, seeds: list[int], config: InversionConfig, steps: int,
             loss_fn=None) -> torch.Tensor:
    """The W+ codes of a `config` run from `w_avg` after its first `steps` steps."""
    problem = build_problem(G, target, config, seed=seeds, loss_fn=loss_fn)
    try:
        for step in range(steps):
            problem.step(step)
        return problem.latent.detach().clone()
    finally:
        problem.close()


def first_run(G, E, target: torch.Tensor, seeds: list[int], config: InversionConfig, loss_fn=None):
    """Optimisation from `w_avg` (E None) or hybrid from E's output."""
    if E is None:
        return invert(G, target, config, seed=seeds, loss_fn=loss_fn)
    return hybrid(G, E, target, config, seed=seeds, loss_fn=loss_fn)


def goals(rows: list[dict], args: argparse.Namespace) -> dict:
    """The issue's goals, from the table."""
    def psnr(encoder: str, method: str, steps: int) -> float | None:
        hits = [r["psnr"] for r in rows if (r["encoder"], r["method"], r["steps"]) == (encoder, method, steps)]
        return hits[0] if hits else None

    out: dict = {}
    best_wplus = psnr("-", "W+", max(args.wplus_steps))
    for name in {r["encoder"] for r in rows} - {"-"}:
        hybrid_psnr = psnr(name, "hybrid (W+)", max(args.hybrid_steps))
        out[name] = dict(encoder_psnr=psnr(name, "encoder", 0), encoder_psnr_goal=args.encoder_goal_db,
                         hybrid_minus_wplus_db=None if None in (hybrid_psnr, best_wplus) else hybrid_psnr - best_wplus,
                         hybrid_goal_db=-0.5)
    S = args.refine_steps
    for label in ("W+", "hybrid (W+)"):
        by_method = {r["method"]: r for r in rows}
        refined, one_go = by_method.get(f"{label}, {S} + {S} refined"), by_method.get(f"{label}, {2 * S} in one go")
        if refined and one_go:  # relative differences, refined against one go (the goal: within 1 %)
            out[f"refinement {label}"] = {key: (refined[key] - one_go[key]) / abs(one_go[key])
                                          for key in ("psnr", "ssim", "perceptual") if key in refined}
    return out


def world_of(args: argparse.Namespace) -> tuple[torch.nn.Module, int | None, str]:
    """(G, world version of the held-out faces, attribute classifier): `--gan-run`'s G_ema, its data's world version
    and its own classifier when it has one (`run_world`), else `--generator` on the shipped world."""
    if args.gan_run is None:
        return load_generator(args.generator), None, "builtin"
    from ganinv.training.train_gan import generator_from_checkpoint, run_world

    return generator_from_checkpoint(args.gan_run), *run_world(args.gan_run)


def world_loss(spec: str, classifier: str, device: torch.device) -> WeightedLoss | None:
    """The optimisation loss `spec` with its clf-perceptual term on the world's own `classifier`; None (the registry
    builds `spec`) for the built-in classifier or a spec without that term."""
    if classifier == "builtin" or "clf-perceptual" not in [n for _, n in parse_loss_spec(canonical_loss_spec(spec))]:
        return None
    return build_loss(spec, device=device, classifier=classifier)


def evaluate(args: argparse.Namespace, G=None, targets=None) -> dict:
    device = torch.device(args.device)
    world_G, version, classifier = world_of(args) if G is None else (G, None, "builtin")
    G = world_G.to(device)
    if targets is None:  # the world's faces at G's size (64 px for the embedded world; smaller for test runs)
        targets = heldout_faces(args.num_images, version=version, size=G.img_resolution)
    targets = targets.to(device)
    args.loss_fn = world_loss(args.loss, classifier, device)
    loaded = [load_named_encoder(spec, G, device) for spec in args.encoder]
    encoders, training = {n: E for n, E, _ in loaded}, {n: facts for n, _, facts in loaded}
    perceptual = perceptual_metric(args.tiny, device, classifier=classifier)
    perceptual_name = next(iter(perceptual), None)
    facts = device_facts(device)
    print(facts, f"perceptual={perceptual_name}", json.dumps(training), sep="\n", flush=True)
    rows = []
    for name, method, steps, fn in methods(G, encoders, args) + refinement_rows(G, encoders, args):
        with torch.no_grad() if method == "encoder" else torch.enable_grad():
            metrics, seconds = run_batched(fn, targets, args.batch_size, perceptual)
        rows.append(dict(encoder=name, **summarize(method, steps, metrics, perceptual_name, seconds)))
        print(markdown_table([rows[-1]], COLUMNS).splitlines()[-1], flush=True)
    print(markdown_table(rows, COLUMNS))
    payload = dict(facts, generator=f"gan-run:{args.gan_run}" if args.gan_run else args.generator,
                   world_version=world(version).version, classifier=classifier, loss=args.loss,
                   perceptual=perceptual_name, training=training, rows=rows, goals=goals(rows, args))
    print(json.dumps(payload["goals"], indent=1))
    write_json(args.out, payload)
    return payload


# ------------------------------------------------------------------------------------------------------- smoke

def smoke(args: argparse.Namespace) -> dict:
    """Everything at tiny size on the CPU: a random 32 px generator from a file, two encoders trained 4 steps by
    `train_encoder` (generator alone; generator + 24 images of another random generator), the evaluation at 3 / 6
    steps. Checks the plumbing; the numbers mean nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        G = tiny_generator(32)
        path = save_generator(G, tmp / "g.safetensors")
        other = tiny_generator(32, seed=1)
        with torch.no_grad():
            images = other(torch.randn([24, other.z_dim], generator=torch.Generator().manual_seed(3)), None)
        np.save(tmp / "images.npy", ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
        for name, data in (("generator", None), ("generator+24", str(tmp / "images.npy"))):
            train_encoder(tmp / name, generator=str(path), steps=4, batch_size=4, data=data, device="cpu",
                          perceptual="none")
        targets = G(torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(1)), None).clamp(-1, 1)
        args.generator, args.gan_run = str(path), None
        args.encoder = [f"generator={tmp / 'generator'}", f"generator+24={tmp / 'generator+24'}"]
        return evaluate(args, G=load_generator(path), targets=targets)


def add_generator_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--generator", default=None, help=f"a built-in name, .pkl or .safetensors (default: "
                       f"{DEFAULT_GENERATOR})")
    which.add_argument("--gan-run", default=None, help="or a train-gan run folder: its G_ema, on its world (its "
                       "data's world version, its own classifier.safetensors as the clf-perceptual net)")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="one chunk of an encoder run")
    t.add_argument("--run-dir", required=True)
    add_generator_arguments(t)
    t.add_argument("--init-from", default=None, help="warm start (new run only): an encoder file or encoder run "
                   "folder of a generator of the same architecture, e.g. an earlier checkpoint of the same GAN run")
    t.add_argument("--images", default=None, help="the user's images (e.g. procedural:10000:2); none: generator only")
    t.add_argument("--follow-gan", action="store_true", help="with --gan-run: a run of an earlier G_ema is moved to "
                   "RUN_prev and a new run warm-starts from it (what gpu/chunk.sh's ENC does each GAN chunk)")
    t.add_argument("--minutes", type=float, default=8.0)
    t.add_argument("--steps", type=int, default=None, help="schedule length (new run only)")
    t.add_argument("--batch-size", type=int, default=None, help="(new run only)")
    for term in ("pixel", "perceptual", "latent"):
        t.add_argument(f"--{term}-weight", type=float, default=None, help="(new run only; default: the recipe's)")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    t.add_argument("--out", default=None, help="copy the files to commit here (flat)")
    i = sub.add_parser("install", help="copy a chunk's returned files into --run-dir")
    i.add_argument("--source", required=True)
    i.add_argument("--run-dir", required=True)
    x = sub.add_parser("export", help="write a run's encoder file")
    x.add_argument("--run-dir", required=True)
    x.add_argument("--to", required=True)
    for name in ("evaluate", "smoke"):
        e = sub.add_parser(name)
        if name == "evaluate":  # smoke makes its own generator
            add_generator_arguments(e)
        e.add_argument("--encoder", action="append", default=[], help="NAME=PATH (encoder file or run folder)")
        e.add_argument("--num-images", type=int, default=64)
        e.add_argument("--batch-size", type=int, default=64)
        e.add_argument("--loss", default="clf-perceptual")
        e.add_argument("--wplus-steps", default="100,300,1000")
        e.add_argument("--hybrid-steps", default="30,100")
        e.add_argument("--refine-steps", type=int, default=100)
        e.add_argument("--encoder-goal-db", type=float, default=24.0)
        e.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        e.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if getattr(args, "gan_run", None) is None and getattr(args, "generator", "") is None:
        args.generator = DEFAULT_GENERATOR
    if args.command in ("evaluate", "smoke"):
        args.tiny = args.command == "smoke"
        if args.tiny:
            args.device, args.loss, args.batch_size, args.refine_steps = "cpu", "mse", 4, 3
            args.wplus_steps, args.hybrid_steps = "3,6", "3"
        args.wplus_steps = [int(s) for s in args.wplus_steps.split(",")]
        args.hybrid_steps = [int(s) for s in args.hybrid_steps.split(",")]
    return args


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.command == "install":
        install_run(args.source, args.run_dir)
        return None
    return {"train": train_chunk, "export": export_encoder, "evaluate": evaluate, "smoke": smoke}[args.command](args)


if __name__ == "__main__":
    from ganinv.errors import UserError

    try:
        main()
    except UserError as e:  # a refused resume, a mismatched warm start...: one line, as the CLI says it
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
