"""InterFaceGAN: libsvm `SVC(kernel='linear')` (the original code) against liblinear `LinearSVC` (our default).

Planted data: 512-d Gaussian codes, score = <code, n> + noise * N(0, 1); the boundary should recover n. Reports fit
time, cosine to the planted normal and validation accuracy through `train_boundary`, for several training sizes and
noise levels (noise sets how much the extreme tails overlap, i.e. the validation accuracy).

    PYTHONPATH=$PWD python benchmarks/interfacegan_svm.py [--per-side 500 2000] [--noise 0.5 2 4] [--dim 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ganinv.directions.interfacegan import train_boundary


def run(per_side: int, noise: float, dim: int, svm: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=dim)
    normal /= np.linalg.norm(normal)
    num = 50 * per_side  # as in the paper: the 2 % tails on each side
    codes = rng.standard_normal((num, dim), dtype=np.float32)
    scores = codes @ normal + noise * rng.normal(size=num)
    start = time.perf_counter()
    fit = train_boundary(codes, scores, chosen_num_or_ratio=0.02, svm=svm, seed=seed)
    seconds = time.perf_counter() - start
    return dict(svm=svm, per_side=per_side, noise=noise, train=2 * fit.num_train, seconds=seconds,
                cosine=float(fit.boundary[0] @ normal), val_accuracy=fit.val_accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-side", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.5, 2.0, 4.0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--svm", nargs="+", default=["linear_svc", "svc"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| svm | codes per side | noise | training codes | fit s | cos to truth | val acc |")
    print("|---|---|---|---|---|---|---|")
    for per_side in args.per_side:
        for noise in args.noise:
            for svm in args.svm:
                r = run(per_side, noise, args.dim, svm)
                print(f"| {r['svm']} | {r['per_side']} | {r['noise']} | {r['train']} | {r['seconds']:.2f} "
                      f"| {r['cosine']:.4f} | {r['val_accuracy']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
