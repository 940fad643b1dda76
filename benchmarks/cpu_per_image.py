"""The store's CPU numerics (runtime/numerics.py: every image on its own, one thread) timed per face, with the
per-image speed-ups switched off and on side by side in one process, so a busy shared machine slows both alike.

    PYTHONPATH=. python -m benchmarks.cpu_per_image --faces 6 --rounds 3 --out $OUT/cpu_per_image.json
    PYTHONPATH=. python -m benchmarks.cpu_per_image --faces 1 --rounds 1 --steps 2     # smoke test

What runs: `invert_batch` of one held-out face at a time (world seed 1), exactly as a shard worker calls it with
`make demo`'s settings (faces64, hybrid, `--steps` steps, the faces64 preset's loss), under each variant in turn,
the variants interleaved round by round. Variants (`VARIANTS`):
- `recompute`: as before the change: the frozen weights' demodulation energies and transposed kernels derived again
  at every step, every clamp applied (`layers.frozen_derived` and `layers._within` bypassed);
- `frozen-derived`: the frozen weights' derivations kept, every clamp applied;
- `current`: the code as it is (clamps skipped where every value is already in range).
Both must give bitwise the same codes (`same` column: torch.equal of every face's ws against `recompute`'s).
Reported per variant: median seconds per face of this thread's CPU time (`cpu_s`, what the work costs, steady under
load) and of wall time (`wall_s`), and the ratio of `cpu_s` to the first variant's.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import device_facts, heldout_faces, markdown_table, write_json  # noqa: E402
from ganinv.generators import layers  # noqa: E402
from ganinv.inversion.batch import invert_batch  # noqa: E402

COLUMNS = ["variant", "faces", "steps", "cpu_s", "wall_s", "ratio", "same"]


@contextlib.contextmanager
def without(*, derived: bool = False, clamp_skip: bool = False) -> Iterator[None]:
    """The per-step work without the speed-ups named: nothing derived from frozen weights is kept (`derived`),
    every clamp runs (`clamp_skip`)."""
    saved = layers.frozen_derived, layers._within
    if derived:
        layers.frozen_derived = lambda weight, name, compute: compute(weight)
    if clamp_skip:
        layers._within = lambda x, bound: False
    try:
        yield
    finally:
        layers.frozen_derived, layers._within = saved


VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "recompute": lambda: without(derived=True, clamp_skip=True),
    "frozen-derived": lambda: without(clamp_skip=True),
    "current": contextlib.nullcontext,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=6, help="faces per round and variant")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="optimisation steps after the encoder (make demo: 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the demo's workers: 1)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def main(argv=None) -> list[dict]:
    from runtime.config import InvertConfig
    from runtime.models import load_models

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = InvertConfig(inversion={"num_steps": args.steps}).resolve("faces64")
    models = load_models("faces64", spec.encoder, "cpu")
    faces = heldout_faces(args.faces)
    names = args.variants.split(",")

    def invert_one(i: int):
        return invert_batch(models.G, faces[i:i + 1], mode=spec.mode, config=spec.config, seeds=[i], E=models.E,
                            thumbnail_size=spec.thumbnail_size)

    invert_one(0)  # warm-up: imports, w stats, the loss network
    cpu = {name: [] for name in names}
    wall = {name: [] for name in names}
    codes: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            with VARIANTS[name]():
                for i in range(args.faces):
                    c0, w0 = time.thread_time(), time.perf_counter()
                    batch = invert_one(i)
                    cpu[name].append(time.thread_time() - c0)
                    wall[name].append(time.perf_counter() - w0)
                    codes[name].append(torch.from_numpy(batch.ws))
    reference = statistics.median(cpu[names[0]])
    rows = [dict(variant=name, faces=args.faces, steps=args.steps, cpu_s=statistics.median(cpu[name]),
                 wall_s=statistics.median(wall[name]), ratio=statistics.median(cpu[name]) / reference,
                 same=all(torch.equal(a, b) for a, b in zip(codes[name], codes[names[0]])))
            for name in names]
    print(markdown_table(rows, COLUMNS))
    write_json(args.out, dict(device_facts(torch.device("cpu")), rows=rows))
    return rows


if __name__ == "__main__":
    main()
