"""Render speed of the procedural-faces world: images/s on one core (render_batch, no disk) and write_dataset.

    PYTHONPATH=. python benchmarks/procedural_faces_speed.py [--n 1000] [--workers 2]
"""
import argparse
import os
import tempfile
import time

from ganinv.datasets.procedural_faces import render_batch, write_dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    render_batch(0, range(20))  # warm-up
    t0 = time.perf_counter()
    render_batch(0, range(args.n))
    t1 = time.perf_counter()
    print(f"render_batch, 1 core: {args.n / (t1 - t0):.0f} images/s ({1e3 * (t1 - t0) / args.n:.2f} ms/image)")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_dataset(tmp, args.n, workers=args.workers)
        t1 = time.perf_counter()
    print(f"write_dataset (PNG + CSV), {args.workers} workers: {args.n / (t1 - t0):.0f} images/s")


if __name__ == "__main__":
    main()
