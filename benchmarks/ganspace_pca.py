"""GANSpace on a full-size mapping network (z 512 -> w 512, 8 layers, random weights): time and peak memory of
sampling + incremental PCA, which must stay O(batch) however many samples (the paper uses 10^6).

    PYTHONPATH=$PWD python benchmarks/ganspace_pca.py [--num-samples 100000] [--components 80] [--device cpu]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from ganinv.directions import ganspace
from ganinv.generators.stylegan2 import Generator


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--components", type=int, default=80)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=4, img_channels=3, mapping_kwargs=dict(num_layers=8),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8))
    G = G.eval().requires_grad_(False).to(args.device)
    print(f"| samples | components | seconds | peak RSS MB (process, cumulative) |\n|---|---|---|---|")
    for num in args.num_samples:
        start = time.perf_counter()
        directions = ganspace.discover(G, num_directions=args.components, num_samples=num)
        seconds = time.perf_counter() - start
        print(f"| {num} | {len(directions)} | {seconds:.1f} | {peak_rss_mb():.0f} |", flush=True)


if __name__ == "__main__":
    main()
