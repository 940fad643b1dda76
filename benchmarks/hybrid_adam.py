"""Hybrid inversion's optimiser settings on held-out faces of the embedded world: PSNR / SSIM after a few step
budgets, for Adam betas and learning rates laid over `ENCODER_START_CONFIG` (the encoder start's preset).

    PYTHONPATH=. OMP_NUM_THREADS=2 python -m benchmarks.hybrid_adam --faces 16:48 --steps 20,40,100 \
        --settings "0.9,0.999@0.03" "0.7,0.7@0.1" --out benchmarks/results/hybrid_adam_cpu.json

A setting is `BETA1,BETA2@LR`. Faces `A:B` are held-out faces A..B-1 (world seed 1; faces64 was trained on seed 0),
each seeded by its index, so reruns give the same numbers. Loss: the preset's (clf-perceptual on faces64).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from benchmarks.common import device_facts, heldout_faces, markdown_table, write_json
from ganinv.generators import load_generator
from ganinv.inversion import ENCODER_START_CONFIG
from ganinv.inversion.hybrid import hybrid
from ganinv.models.encoder import load_encoder


def parse_setting(text: str) -> tuple[tuple[float, float], float]:
    """'0.7,0.7@0.1' -> ((0.7, 0.7), 0.1)."""
    try:
        betas, lr = text.split("@")
        b1, b2 = (float(b) for b in betas.split(","))
        return (b1, b2), float(lr)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected BETA1,BETA2@LR, e.g. 0.7,0.7@0.1") from None


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", default="16:48", help="held-out faces A:B")
    p.add_argument("--steps", default="20,40,100")
    p.add_argument("--settings", nargs="+", type=parse_setting, default=[parse_setting("0.9,0.999@0.03"),
                                                                          parse_setting("0.7,0.7@0.1")])
    p.add_argument("--generator", default="faces64")
    p.add_argument("--encoder", default="faces64")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out")
    args = p.parse_args(argv)
    first, last = (int(v) for v in args.faces.split(":"))
    device = torch.device(args.device)
    G, E = load_generator(args.generator, device=device), load_encoder(args.encoder, device=device)
    targets = heldout_faces(last, device)[first:last]
    rows = []
    for steps in (int(s) for s in args.steps.split(",")):
        for betas, lr in args.settings:
            config = dataclasses.replace(ENCODER_START_CONFIG, num_steps=steps, betas=betas, initial_learning_rate=lr,
                                         optimize_noise=False, loss="clf-perceptual")
            t0 = time.perf_counter()
            result = hybrid(G, E, targets, config, seed=list(range(first, last)))
            rows.append(dict(steps=steps, betas=list(betas), lr=lr, images=last - first,
                             psnr=round(result.metrics["psnr"].mean().item(), 3),
                             ssim=round(result.metrics["ssim"].mean().item(), 4),
                             seconds=round(time.perf_counter() - t0, 1)))
            print(rows[-1], flush=True)
    result = dict(facts=device_facts(device), faces=args.faces, generator=args.generator, encoder=args.encoder,
                  rows=rows)
    print(markdown_table(rows, ["steps", "betas", "lr", "images", "psnr", "ssim", "seconds"]))
    write_json(args.out, result, indent=1)
    return result


if __name__ == "__main__":
    main()
