"""Mixed precision as ganinv uses it: bf16 autocast for the big convolutions, fp32 wherever accuracy needs it.

`autocast(precision, device)` opens the region in which synthesis and the loss network run; `full_precision(x)`
opens an fp32 island inside it (style affines, demodulation coefficients, the image skip path, the perceptual
distance's reductions). Outside any autocast region both are no-ops, so fp32 code paths are unchanged.
"""

from __future__ import annotations

import contextlib

import torch

from ganinv.inversion_names import PRECISIONS

_AUTOCAST_DEVICES = ("cuda", "cpu")


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` for `precision='bf16'`, nothing for `'fp32'`.

    The cast cache is off: the networks' weights do not require grad (nothing to cache across ops), and cached casts
    must not outlive a CUDA graph capture (PyTorch's CUDA graphs notes).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device_type = torch.device(device).type
    if precision == "fp32":
        return contextlib.nullcontext()
    if device_type not in _AUTOCAST_DEVICES:
        raise ValueError(f"precision 'bf16' needs a CUDA or CPU device, got {device_type!r}; use precision='fp32'")
    return torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False)


def full_precision(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """An fp32 island for ops on `x`'s device inside an autocast region (no-op outside one)."""
    if x.device.type not in _AUTOCAST_DEVICES:
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, enabled=False)
