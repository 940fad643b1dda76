"""What the embedded world's trainers share: latent sampling with style mixing and their autocast."""

from __future__ import annotations

import random

import torch

from ganinv.generators.stylegan2 import Generator


def style_mixed_ws(G: Generator, n: int, rng: random.Random, *, mixing_prob: float, device: torch.device
                   ) -> torch.Tensor:
    """`[n, num_ws, w_dim]` ws of random z; with probability `mixing_prob`, the ws past a random cut-off layer come
    from a second z (style-mixing regularisation, Karras et al. 2019, Sec. 3.1). Only the first z moves `w_avg`."""
    z = torch.randn([n, G.z_dim], device=device)
    ws = G.mapping(z, None)
    if rng.random() < mixing_prob:
        cutoff = rng.randrange(1, G.num_ws)
        ws2 = G.mapping(torch.randn_like(z), None, skip_w_avg_update=True)
        ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
    return ws


def training_autocast(device: torch.device, *, mixed_precision: bool) -> torch.autocast:
    """bf16 autocast for the main passes on CUDA when `mixed_precision`; a no-op elsewhere."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=mixed_precision and device.type == "cuda")
