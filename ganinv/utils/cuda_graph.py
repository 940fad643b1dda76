"""Capture a whole optimisation step (forward, backward, optimizer update, in-place projections) as one CUDA graph,
so that a step costs one launch instead of thousands (PyTorch's "whole-network capture" recipe).

The recipe needs warm-up iterations on a side stream before capture, and they would move the parameters and the
optimizer's moments. `capture_step` therefore snapshots the parameters, warms up, restores them and zeroes the
optimizer state in place (a fresh Adam state is all zeros), so the captured step starts exactly where the eager
one would. Everything that changes between steps must live in static tensors the graph reads (the caller `copy_`s
new values in before each `replay`), and the optimizer must be capturable (`torch.optim.Adam(capturable=True)`,
learning rate as a device tensor).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

WARMUP_ITERATIONS = 3


def capture_step(train_step: Callable[[], torch.Tensor], params: Sequence[torch.Tensor],
                 optimizer: torch.optim.Optimizer, *, warmup: int = WARMUP_ITERATIONS
                 ) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Capture `train_step()` (which must do forward, backward and `optimizer.step()`, and return a tensor) and
    return `(graph, output)`: `graph.replay()` runs the step again and refreshes `output` in place.

    `params`: every tensor the step mutates (parameters and anything updated in place); they are restored after the
    warm-up, which also creates the optimizer's state and lets lazy work (compilation, cuDNN autotuning) happen
    outside the capture.
    """
    assert all(p.is_cuda for p in params), "capture_step needs CUDA tensors"
    device = params[0].device
    saved = [p.detach().clone() for p in params]
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            optimizer.zero_grad(set_to_none=True)
            train_step()
    torch.cuda.current_stream(device).wait_stream(side)
    with torch.no_grad():
        for param, value in zip(params, saved):
            param.copy_(value)
        for state in optimizer.state.values():
            for value in state.values():
                if torch.is_tensor(value):
                    value.zero_()
    optimizer.zero_grad(set_to_none=True)  # gradients are then allocated from the graph's private pool
    # The graph's private pool cannot reuse blocks the warm-up left cached in the ordinary pool: hand them back
    # first, or a batch sized to fill the card needs twice its memory.
    torch.cuda.empty_cache()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = train_step()
    return graph, output
