"""Inversion quality on held-out images: PSNR / SSIM / perceptual distance after 100, 300 and 1000 steps for W, W+,
the encoder alone and hybrid (encoder + W+ optimisation).

    PYTHONPATH=. python -m benchmarks.inversion_quality --generator faces64 --images data/faces64/heldout \
        --encoder faces64 --num-images 64 --out benchmarks/results/inversion_quality.json
    PYTHONPATH=. python -m benchmarks.inversion_quality --tiny --device cpu      # smoke test: random networks

`--images`: a folder of images, or an .npy / .npz holding uint8 `[N, H, W, 3]` (or `[N, 3, H, W]`), resized to the
generator's resolution. The perceptual column is LPIPS-VGG when torchvision's VGG16 weights are on disk, else the
attribute classifier's perceptual distance (`clf-perceptual`, not LPIPS), else absent. Each image is seeded by its
index, so reruns give the same numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    device_facts, load_named_generator, markdown_table, tiny_generator, to_unit_range, write_json,
)
from ganinv.inversion import encode, hybrid, invert  # noqa: E402
from ganinv.losses import ClassifierPerceptualLoss, LPIPSLoss, PerceptualWeightsMissing  # noqa: E402
from ganinv.metrics import reconstruction_metrics  # noqa: E402

COLUMNS = ["method", "steps", "images", "psnr", "psnr_std", "ssim", "ssim_std", "perceptual", "perceptual_std",
           "seconds"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default="faces64", help="name for ganinv.generators.io.load_generator")
    p.add_argument("--images", default=None, help="held-out images: folder, .npy or .npz")
    p.add_argument("--encoder", default="faces64", help="name for ganinv.models.encoder.load_encoder")
    p.add_argument("--num-images", type=int, default=64)
    p.add_argument("--steps", default="100,300,1000")
    p.add_argument("--loss", default="clf-perceptual", help="optimisation loss (registry spec)")
    p.add_argument("--regularize-encoder-weight", type=float, default=0.0, help="hybrid's in-domain term")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="random tiny generator and encoder: a CPU smoke test")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.tiny:
        args.num_images, args.batch_size, args.loss = min(args.num_images, 4), 4, "mse"
        args.steps = "3,6" if args.steps == "100,300,1000" else args.steps
    args.steps = [int(s) for s in args.steps.split(",")]
    return args


class TinyEncoder(nn.Module):
    """An untrained encoder predicting offsets from w_avg (pSp's form), only to exercise the plumbing."""

    def __init__(self, G: nn.Module):
        super().__init__()
        torch.manual_seed(0)
        self.num_ws, self.w_dim = G.num_ws, G.w_dim
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, G.num_ws * G.w_dim))
        self.register_buffer("w_avg", G.mapping.w_avg.detach().clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.w_avg + 0.1 * self.body(images).reshape(-1, self.num_ws, self.w_dim)


def load_images(path: str, resolution: int, limit: int) -> torch.Tensor:
    """Held-out images as `[N, 3, R, R]` in [-1, 1]."""
    source = Path(path)
    if source.is_dir():
        from PIL import Image

        files = sorted(f for f in source.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)[:limit]
        arrays = [np.asarray(Image.open(f).convert("RGB").resize((resolution, resolution), Image.LANCZOS))
                  for f in files]
        pixels = np.stack(arrays) if arrays else np.zeros([0, resolution, resolution, 3], np.uint8)
    elif source.suffix in (".npy", ".npz"):
        data = np.load(source)
        pixels = (data if source.suffix == ".npy" else data[list(data.keys())[0]])[:limit]
    else:
        raise FileNotFoundError(f"--images {path}: expected a folder of images or an .npy/.npz file")
    x = torch.from_numpy(np.ascontiguousarray(pixels)).float()
    x = x if x.shape[1] == 3 else x.permute(0, 3, 1, 2)
    if x.shape[-1] != resolution:
        x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="area")
    if len(x) == 0:
        raise FileNotFoundError(f"--images {path}: no images found")
    return to_unit_range(x)


def perceptual_metric(tiny: bool, device: torch.device, *, classifier: str = "builtin") -> dict[str, nn.Module]:
    """{name: the perceptual column's distance}: LPIPS-VGG when its trunk is on disk, else clf-perceptual on
    `classifier` (the world's attribute classifier: the built-in one, or a training run's own)."""
    if tiny:
        return {"alex-random-trunk": LPIPSLoss("alex", random_trunk=True).to(device)}
    try:
        return {"lpips-vgg": LPIPSLoss("vgg").to(device)}
    except PerceptualWeightsMissing as err:
        print(f"LPIPS unavailable ({err}); trying clf-perceptual")
    try:
        return {"clf-perceptual": ClassifierPerceptualLoss.from_classifier(classifier).to(device)}
    except Exception as err:  # noqa: BLE001
        print(f"no perceptual metric: {err}")
        return {}


def load_world(args, device):
    """(G, targets, E or None, notes)."""
    if args.tiny:
        G = tiny_generator(32).to(device)
        with torch.no_grad():
            z = torch.randn([args.num_images, G.z_dim], generator=torch.Generator().manual_seed(1)).to(device)
            targets = G(z, None).clamp(-1, 1)
        return G, targets, TinyEncoder(G).to(device), "tiny random generator, generated targets, untrained encoder"
    G, description = load_named_generator(args.generator, resolution=0, tiny=False)
    if G is None:
        raise SystemExit(f"cannot run the quality report: {description}")
    if args.images is None:
        raise SystemExit("pass --images with the held-out dataset images (folder, .npy or .npz)")
    G = G.to(device)
    targets = load_images(args.images, G.img_resolution, args.num_images).to(device)
    try:
        from ganinv.models.encoder import load_encoder
        E = load_encoder(args.encoder).to(device).eval()
    except Exception as err:  # noqa: BLE001 - the report still has W and W+ rows without an encoder
        print(f"encoder unavailable ({type(err).__name__}: {err}): skipping encoder and hybrid rows")
        E = None
    return G, targets, E, description


def summarize(method: str, steps: int, metrics: dict[str, torch.Tensor], perceptual_name: str | None,
              seconds: float) -> dict:
    row = dict(method=method, steps=steps, images=len(metrics["psnr"]), seconds=seconds)
    keys = [("psnr", "psnr"), ("ssim", "ssim")] + ([("perceptual", perceptual_name)] if perceptual_name else [])
    for column, key in keys:
        values = metrics[key].double()
        row[column], row[f"{column}_std"] = values.mean().item(), values.std().item() if len(values) > 1 else 0.0
    return row


def run_batched(fn, targets: torch.Tensor, batch_size: int, perceptual) -> tuple[dict[str, torch.Tensor], float]:
    """fn(chunk, seeds) -> reconstructions; metrics over all chunks, wall time."""
    start, parts = time.perf_counter(), []
    for lo in range(0, len(targets), batch_size):
        chunk = targets[lo:lo + batch_size]
        images = fn(chunk, list(range(lo, lo + len(chunk))))
        parts.append(reconstruction_metrics(images, chunk, perceptual=perceptual))
    return {k: torch.cat([p[k] for p in parts]).cpu() for k in parts[0]}, time.perf_counter() - start


def methods(G, E, args):
    """(label, steps, fn(chunk, seeds) -> images)."""
    out = []
    for steps in args.steps:
        for space, label in (("w", "W"), ("w+", "W+")):
            out.append((label, steps, lambda x, s, space=space, steps=steps: invert(
                G, x, space=space, num_steps=steps, loss=args.loss, seed=s).images))
    if E is not None:
        out.append(("encoder", 0, lambda x, s: G.synthesis(encode(E, x), noise_mode="const")))
        for steps in args.steps:
            out.append(("hybrid (W+)", steps, lambda x, s, steps=steps: hybrid(
                G, E, x, num_steps=steps, loss=args.loss, seed=s,
                regularize_encoder_weight=args.regularize_encoder_weight).images))
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    G, targets, E, description = load_world(args, device)
    perceptual = perceptual_metric(args.tiny, device)
    perceptual_name = next(iter(perceptual), None)
    facts = device_facts(device)
    print(facts, description, f"perceptual={perceptual_name}", sep="\n")
    rows = []
    for label, steps, fn in methods(G, E, args):
        with torch.no_grad() if label == "encoder" else torch.enable_grad():
            metrics, seconds = run_batched(fn, targets, args.batch_size, perceptual)
        rows.append(summarize(label, steps, metrics, perceptual_name, seconds))
        print(markdown_table([rows[-1]], COLUMNS).splitlines()[-1], flush=True)
    print(markdown_table(rows, COLUMNS))
    payload = dict(facts, world=description, loss=args.loss, perceptual=perceptual_name,
                   regularize_encoder_weight=args.regularize_encoder_weight, rows=rows)
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
