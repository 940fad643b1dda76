"""Quality of the shipped embedded world: FD-clf, attribute rates and the encoder's reconstructions.

    PYTHONPATH=. python -m benchmarks.faces64_quality --n 10000 --out benchmarks/results/faces64_quality.json

- **FD-clf**: the Fréchet distance between Gaussian fits of the attribute classifier's 256-d embedding
  (`AttributeClassifier.embedding`) for `--n` generated and `--n` dataset images, next to the same distance between
  two disjoint halves of the dataset (real vs real: the floor for this sample size). It is not FID: the features
  come from our small classifier, not Inception.
- **Attribute rates**: how often the classifier sees each binary attribute in generated images, against the
  dataset's ground-truth rate (and the classifier's rate on dataset images); continuous attributes as mean and std.
- Generated images have fresh noise inputs (the GAN's distribution, as StyleGAN's metrics sample it);
  `const_noise` repeats FD-clf and the binary rates for the same codes with G's constant noise, what ganinv's
  inversion, edits and `generate` render (a G whose attributes hinge on its fixed noise pattern differs there).
- **Encoder**: PSNR / SSIM of `G.synthesis(E(x))` against `--n-heldout` held-out images (world seed 1).

`--gan-run DIR` measures a training run's G_ema instead of the shipped generator (the encoder part is skipped: the
shipped encoder belongs to the shipped generator), e.g. after each chunk of continued training:

    PYTHONPATH=. python -m benchmarks.faces64_quality --gan-run runs/faces64 --n 2000 --device cuda
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks.common import heldout_faces, to_unit_range, write_json
from ganinv.datasets.procedural_faces import ATTRIBUTES, render_batch, world
from ganinv.generators import load_generator
from ganinv.metrics import feature_statistics, frechet_distance, reconstruction_metrics
from ganinv.models.attributes import load_classifier
from ganinv.models.encoder import load_encoder


@torch.no_grad()
def generate(G, n: int, *, seed: int, batch: int = 250, noise_mode: str = "random") -> torch.Tensor:
    """`n` images of G (z from `seed`, on CPU whatever G's device), quantised as saved images would be; on CPU."""
    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    out = []
    for start in range(0, n, batch):
        z = torch.randn([min(batch, n - start), G.z_dim], generator=gen).to(device)
        img = G(z, None, noise_mode=noise_mode)
        out.append(((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())  # as saved images would be
    return to_unit_range(torch.cat(out))


@torch.no_grad()
def classify(clf, images: torch.Tensor, batch: int = 500) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    device = next(clf.parameters()).device
    embeddings, preds = [], []
    for start in range(0, len(images), batch):
        x = images[start:start + batch].to(device)
        embeddings.append(clf.embedding(x).double().cpu().numpy())
        preds.append({k: v.float().cpu().numpy() for k, v in clf.predict(x).items()})
    return np.concatenate(embeddings), {k: np.concatenate([p[k] for p in preds]) for k in preds[0]}


def fd(a: np.ndarray, b: np.ndarray) -> float:
    return float(frechet_distance(*feature_statistics(torch.from_numpy(a)), *feature_statistics(torch.from_numpy(b))))


def attribute_table(truth: np.ndarray, pred_real: dict, pred_gen: dict) -> list[dict]:
    rows = []
    for i, attr in enumerate(ATTRIBUTES):
        if attr.kind == "binary":
            rows.append(dict(attribute=attr.name, kind="binary", dataset_truth=float(truth[:, i].mean()),
                             classifier_on_dataset=float((pred_real[attr.name] > 0.5).mean()),
                             classifier_on_generated=float((pred_gen[attr.name] > 0.5).mean())))
        else:
            rows.append(dict(attribute=attr.name, kind="continuous",
                             dataset_truth=f"{truth[:, i].mean():.3f} ± {truth[:, i].std():.3f}",
                             classifier_on_dataset=f"{pred_real[attr.name].mean():.3f} ± {pred_real[attr.name].std():.3f}",
                             classifier_on_generated=f"{pred_gen[attr.name].mean():.3f} ± {pred_gen[attr.name].std():.3f}"))
    return rows


@torch.no_grad()
def encoder_quality(G, E, n: int) -> dict:
    target = heldout_faces(n, next(G.parameters()).device)
    recon = torch.cat([G.synthesis(E(target[i:i + 100]), noise_mode="const") for i in range(0, n, 100)])
    m = reconstruction_metrics(recon.clamp(-1, 1).cpu(), target.cpu())
    return {k: float(v.mean()) for k, v in m.items() if k in ("mse", "psnr", "ssim")}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--n-heldout", type=int, default=1000)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--gan-run", default=None, help="a train-gan run folder: its G_ema instead of the shipped faces64, "
                   "measured on its world (its data's version, its folder's classifier.safetensors if any)")
    p.add_argument("--classifier", default=None, help="with --gan-run: another classifier file of the run's world")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out")
    args = p.parse_args(argv)
    t0 = time.time()
    device = torch.device(args.device)
    version, classifier = None, "builtin"
    if args.classifier and not args.gan_run:
        p.error("--classifier measures a --gan-run; the shipped world has its own")
    if args.gan_run:
        from ganinv.training.train_gan import generator_from_checkpoint, run_world

        G, E = generator_from_checkpoint(args.gan_run).to(device).eval(), None
        version, classifier = run_world(args.gan_run, args.classifier)  # the run's world, its (or this) classifier
    else:
        G, E = load_generator("faces64", device=device), load_encoder("faces64", device=device)
    clf = load_classifier(classifier, device=device)
    real = render_batch(0, range(2 * args.n), workers=args.workers, version=version)[0]
    truth = np.stack(list(_truth_rows(2 * args.n, version)))
    emb_real, pred_real = classify(clf, to_unit_range(real))
    emb_gen, pred_gen = classify(clf, generate(G, args.n, seed=123))
    emb_const, pred_const = classify(clf, generate(G, args.n, seed=123, noise_mode="const"))
    half = args.n
    result = dict(
        n=args.n, generator=args.gan_run or "faces64", world_version=world(version).version, classifier=classifier,
        fd_clf_generated_vs_dataset=fd(emb_gen, emb_real[:half]),
        fd_clf_dataset_vs_dataset=fd(emb_real[half:], emb_real[:half]),
        attributes=attribute_table(truth[:half], {k: v[:half] for k, v in pred_real.items()}, pred_gen),
        const_noise=dict(fd_clf_generated_vs_dataset=fd(emb_const, emb_real[:half]),
                         rates={a.name: float((pred_const[a.name] > 0.5).mean()) for a in ATTRIBUTES
                                if a.kind == "binary"}),
        encoder_heldout=dict(n=args.n_heldout, **encoder_quality(G, E, args.n_heldout)) if E else None,
        seconds=round(time.time() - t0, 1),
    )
    print(json.dumps(result, indent=1))
    write_json(args.out, result, indent=1)
    return result


def _truth_rows(n: int, version: int | None):
    from ganinv.datasets.procedural_faces import attributes_to_vector, sample_attributes
    for index in range(n):
        yield attributes_to_vector(sample_attributes(0, index, version=version))


if __name__ == "__main__":
    main()
