"""How linearly the embedded world's attributes are encoded in a generator's W: the early warning for editability.

InterFaceGAN edits move codes along a hyperplane's normal, so they can only work where an attribute is (nearly)
linearly separable in W. For each generator (`--gan-run DIR`, repeatable, or the shipped `faces64`), this samples
`--n` codes (psi 1), scores their images with the built-in attribute classifier and reports per attribute:
- `linear_accuracy`: held-out accuracy of a logistic regression on all samples (standardised W, 75/25 split) next
  to the majority-class rate it must beat (continuous attributes: R^2 of a linear regression);
- `extremes_accuracy`: InterFaceGAN's own check, the validation accuracy of its linear SVM on the top/bottom
  `--ratio` of the classifier's scores (`ganinv.directions.interfacegan.train_boundary`).
Cheap on a GPU (20k samples in seconds), so it runs after each training chunk:

    PYTHONPATH=. python -m benchmarks.separability --gan-run training/faces64 --n 20000 --device cuda
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import StandardScaler

from benchmarks.common import markdown_table, write_json
from ganinv.directions.interfacegan import sample_and_score, train_boundary


def separability(w: np.ndarray, scores: dict[str, np.ndarray], kinds: dict[str, str], *, ratio: float = 0.02
                 ) -> list[dict]:
    """One row per attribute: linear decodability from W over all samples, and InterFaceGAN's extremes check."""
    x = StandardScaler().fit_transform(w)
    split = int(0.75 * len(x))
    rows = []
    for name, kind in kinds.items():
        s = scores[name]
        if kind == "binary":
            y = (s >= 0.5).astype(int)
            model = LogisticRegression(max_iter=5000).fit(x[:split], y[:split])
            row = dict(attribute=name, kind=kind, rate=float(y.mean()),
                       majority=float(max(y[split:].mean(), 1 - y[split:].mean())),
                       linear_accuracy=float(model.score(x[split:], y[split:])))
        else:
            model = LinearRegression().fit(x[:split], s[:split])
            row = dict(attribute=name, kind=kind, rate=None, majority=None,
                       linear_accuracy=float(model.score(x[split:], s[split:])))  # R^2
        row["extremes_accuracy"] = float(train_boundary(w, s, chosen_num_or_ratio=ratio).val_accuracy)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    from ganinv.generators import load_generator
    from ganinv.models.attributes import load_classifier
    from ganinv.training.train_gan import generator_from_checkpoint, run_world

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gan-run", type=Path, action="append", default=[],
                        help="a train-gan run folder (repeatable); none: the shipped faces64")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--ratio", type=float, default=0.02)
    parser.add_argument("--classifier", help="'builtin' or a classifier .safetensors (default: the first run's own "
                        "classifier.safetensors if it has one, else builtin)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    C = load_classifier(args.classifier or (run_world(args.gan_run[0])[1] if args.gan_run else "builtin"), args.device)
    kinds = dict(zip(C.attribute_names, C.attribute_kinds))
    results = {}
    for run in args.gan_run or [None]:
        start = time.perf_counter()
        G = (generator_from_checkpoint(run) if run else load_generator("faces64")).to(args.device)
        w, scores = sample_and_score(G, C.predict, args.n, truncation_psi=1.0, batch_size=1000)  # const noise
        rows = separability(w, scores, kinds, ratio=args.ratio)
        name = str(run) if run else "faces64"
        results[name] = dict(rows=rows, n=args.n, seconds=round(time.perf_counter() - start, 1))
        print(f"\n{name} (n = {args.n}, {results[name]['seconds']} s)\n")
        print(markdown_table(rows, ["attribute", "kind", "rate", "majority", "linear_accuracy",
                                    "extremes_accuracy"]))
    write_json(args.out, results, indent=1)
    return results


if __name__ == "__main__":
    main()
