"""What inversion, directions and edits need from a style-based generator, and the parts StyleGAN2 and StyleGAN3
share.

`StyleGenerator` is the contract (a `typing.Protocol`): downstream code (`ganinv.inversion`, `ganinv.directions`,
`ganinv.edit`) uses only these members, so it takes either architecture; `tests/test_generator_contract.py` checks
every implementation against it. `StyleGeneratorBase` holds what both implementations compute the same way.

Differences that downstream code must respect are capabilities, not type checks:
- `synthesis.noise_layers()` lists the layers with per-pixel noise inputs; StyleGAN3 has none (an empty list), so
  the projector's noise maps and their regulariser simply do not exist for it. `noise_mode` is accepted by both
  synthesis networks and ignored by StyleGAN3.
- `synthesis.style_layers()` maps a ws row to the modulated convolution whose `affine` reads it (SeFa).
- `ws_resolutions`: the resolution each ws row controls (edits' coarse / middle / fine ranges).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class SynthesisLike(Protocol):
    num_ws: int
    w_dim: int
    img_resolution: int
    img_channels: int
    ws_resolutions: list[int]

    def __call__(self, ws: torch.Tensor, noise_mode: str = "const", **kwargs: Any) -> torch.Tensor: ...

    def noise_layers(self) -> list[nn.Module]: ...

    def style_layers(self) -> dict[int, nn.Module]: ...


@runtime_checkable
class StyleGenerator(Protocol):
    """A generator `G(z, c) = synthesis(mapping(z, c))` as ganinv's algorithms use it.

    `mapping(z [N, z_dim], c [N, c_dim], truncation_psi=1, truncation_cutoff=None, update_emas=False)` ->
    `ws [N, num_ws, w_dim]`; `synthesis(ws, noise_mode='const', ...)` -> images `[N, img_channels, R, R]` in about
    [-1, 1]; `init_kwargs` rebuilds it; `family` names its class in `ganinv.generators.io.GENERATOR_CLASSES`.
    """

    family: ClassVar[str]
    z_dim: int
    c_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int
    init_kwargs: dict
    mapping: nn.Module
    synthesis: SynthesisLike

    @property
    def architecture(self) -> str: ...

    @property
    def w_avg(self) -> torch.Tensor: ...

    @property
    def ws_resolutions(self) -> list[int]: ...

    @property
    def has_noise_inputs(self) -> bool: ...

    def w_stats(self, num_samples: int = 10000, *, seed: int = 0,
                batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]: ...


class StyleGeneratorBase(nn.Module):
    """`G(z, c) = synthesis(mapping(z, c))` and what follows from it alone; subclasses build `mapping`, `synthesis`
    and set `z_dim, c_dim, w_dim, num_ws, img_resolution, img_channels, init_kwargs`."""

    family: ClassVar[str] = ""

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, **synthesis_kwargs: Any) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)

    @property
    def architecture(self) -> str:
        """A human name of the architecture and config (`ganinv info`, reports)."""
        return self.family

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked mean of W `[w_dim]` (truncation's centre)."""
        return self.mapping.w_avg

    @property
    def ws_resolutions(self) -> list[int]:
        return self.synthesis.ws_resolutions

    @property
    def has_noise_inputs(self) -> bool:
        return bool(self.synthesis.noise_layers())

    @torch.no_grad()
    def w_stats(self, num_samples: int = 10000, *, seed: int = 0, batch_size: int = 1000
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean `[w_dim]` and scalar std of W, estimated from `num_samples` mapped z (the projector's w_std)."""
        device = next(self.parameters()).device
        gen = torch.Generator().manual_seed(seed)
        c = torch.zeros([batch_size, self.c_dim], device=device)
        total = torch.zeros([self.w_dim], dtype=torch.float64, device=device)
        samples = []
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            z = torch.randn([n, self.z_dim], generator=gen).to(device)
            w = self.mapping(z, c[:n], skip_w_avg_update=True)[:, 0]
            total += w.double().sum(0)
            samples.append(w)
        w_all = torch.cat(samples)
        w_avg = (total / num_samples).float()
        w_std = ((w_all - w_avg).square().sum() / num_samples) ** 0.5
        return w_avg, w_std
