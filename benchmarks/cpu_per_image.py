"""The store's CPU numerics (runtime/numerics.py: every image on its own, one thread) timed per face, with the
per-image speed-ups switched off and on side by side in one process, so a busy shared machine slows both alike.

    PYTHONPATH=. python -m benchmarks.cpu_per_image --faces 16 --rounds 2 --out $OUT/cpu_per_image.json
    PYTHONPATH=. python -m benchmarks.cpu_per_image --faces 1 --rounds 1 --steps 2     # smoke test

What runs: `invert_batch` of held-out faces (world seed 1) as a shard worker calls it with `make demo`'s settings
(faces64, hybrid, `--steps` steps, the faces64 preset's loss), under each variant in turn, the variants interleaved
round by round. Variants (`VARIANTS`):
- `recompute`: one face at a time, as before the per-step shortcuts: the frozen weights' demodulation energies and
  transposed kernels derived again at every step, every clamp applied (`layers.frozen_derived`, `layers._within`
  bypassed);
- `frozen-derived`: the frozen weights' derivations kept, every clamp applied;
- `current`: one face at a time, the code as it is (clamps skipped where every value is already in range);
- `rows-1`: `independent_rows=True` one face at a time (each inverted beside a copy of itself);
- `rows-batch`: `independent_rows=True` in batches of `--batch` faces (the last batch takes what is left).
`same`: torch.equal of every face's ws with the `reference` variant's: the shortcuts must change no bit, and with
independent rows a face's codes must not depend on its batch (`rows-batch` against `rows-1`).
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
from dataclasses import dataclass
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import device_facts, heldout_faces, markdown_table, write_json  # noqa: E402
from ganinv.generators import layers  # noqa: E402
from ganinv.inversion.batch import invert_batch  # noqa: E402

COLUMNS = ["variant", "faces", "batch", "steps", "cpu_s", "wall_s", "ratio", "same", "reference"]


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


@dataclass(frozen=True)
class Variant:
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    batch: int = 1                    # faces per invert_batch call (0: --batch)
    independent_rows: bool = False    # invert_batch(independent_rows=...)
    reference: str = "recompute"      # whose codes this variant's must equal bitwise


VARIANTS: dict[str, Variant] = {
    "recompute": Variant(lambda: without(derived=True, clamp_skip=True)),
    "frozen-derived": Variant(lambda: without(clamp_skip=True)),
    "current": Variant(),
    "rows-1": Variant(independent_rows=True, reference="rows-1"),
    "rows-batch": Variant(batch=0, independent_rows=True, reference="rows-1"),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=6, help="faces per round and variant")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="optimisation steps after the encoder (make demo: 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the demo's workers: 1)")
    parser.add_argument("--batch", type=int, default=16, help="faces per call of the rows-batch variant")
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

    def invert(indices: list[int], variant: Variant):
        return invert_batch(models.G, faces[indices], mode=spec.mode, config=spec.config, seeds=indices, E=models.E,
                            thumbnail_size=spec.thumbnail_size, independent_rows=variant.independent_rows)

    invert([0], VARIANTS["current"])  # warm-up: imports, w stats, the loss network
    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    codes: dict[str, dict[int, torch.Tensor]] = {name: {} for name in names}
    for _ in range(args.rounds):
        for name in names:
            variant = VARIANTS[name]
            size = variant.batch or args.batch
            with variant.context():
                for start in range(0, args.faces, size):
                    indices = list(range(start, min(start + size, args.faces)))
                    c0, w0 = time.thread_time(), time.perf_counter()
                    batch = invert(indices, variant)
                    cpu[name].append((time.thread_time() - c0) / len(indices))
                    wall[name].append((time.perf_counter() - w0) / len(indices))
                    codes[name].update({i: torch.from_numpy(batch.ws[k]) for k, i in enumerate(indices)})
    reference = statistics.median(cpu[names[0]])
    rows = []
    for name in names:
        ref = codes.get(VARIANTS[name].reference)
        rows.append(dict(variant=name, faces=args.faces, batch=VARIANTS[name].batch or args.batch, steps=args.steps,
                         cpu_s=statistics.median(cpu[name]), wall_s=statistics.median(wall[name]),
                         ratio=statistics.median(cpu[name]) / reference,
                         same=None if ref is None else all(torch.equal(codes[name][i], ref[i]) for i in ref),
                         reference=VARIANTS[name].reference))
    print(markdown_table(rows, COLUMNS))
    write_json(args.out, dict(device_facts(torch.device("cpu")), rows=rows))
    return rows


if __name__ == "__main__":
    main()
