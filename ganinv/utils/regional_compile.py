"""Regional compilation: `torch.compile` the forward of a network's repeated module once and run every instance of
it with that code, instead of compiling the whole network as one graph (PyTorch's recipe "Reducing torch.compile
cold start compilation time with regional compilation").

A StyleGAN2 synthesis network is a 4x4 block followed by one block per octave that differs from the next only in
its shapes and weights. Compiled with dynamic activation shapes (batch and spatial sizes as symbols), one graph
serves every block with the same channel counts, at every resolution and batch size: config-f at 256 px needs 5
block graphs (4x4; 512 channels at 8-32 px; then one per halving of the channels), at 1024 px 6, instead of one
graph of the whole network per resolution and batch shape. Compile time thus grows with the number of distinct
widths, not with depth, and batch-size probes reuse the code the run will use. The loss network is its own region.
Weights keep static shapes: symbolic channel counts make inductor (torch 2.14) fail on the channels-last layout
of the composed resampling kernels ("cannot determine truth value of Relational").

Compiled code is shared per (module class, options) by the whole process (module-level cache): every problem, every
batch and every generator of that class reuses it, and guards pick the right graph.

A region's forward must trace as one graph. Where dynamo cannot trace a line of it, it does not fail: it runs that
forward eagerly and compiles the modules it calls one by one (on torch 2.11, `next(it) if it else None` in the
block's forward did that: 9 layer graphs + 4 toRGB graphs instead of 5 blocks at 256 px, with the glue between them
eager). tests/test_regional_compile.py compiles with `fullgraph=True` so that such a line fails there.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

REGION_OPTIONS: dict[str, Any] = dict(dynamic=True)
MAX_GRAPHS = 64  # per region class (StyleGAN3: one per layer width and resampling kind, 10 for config T at 256 px)
_COMPILED: dict[tuple, Callable] = {}


@contextlib.contextmanager
def _shape_polymorphic() -> Iterator[None]:
    """What tracing needs for few graphs per region, each traced once: no "duck sizing" (a batch of 4 must not
    become the same symbol as a 4x4 map, which would tie the graph to that batch); Python floats as constants (the
    regions' floats are gains, clamps and loss weights, fixed per module: with dynamic=True dynamo would trace them
    as symbols, fail to turn them into tensors and trace the whole region a second time, `[k/n_1]` in its logs:
    2 of the 5 block graphs of config-f at 256 px on torch 2.11); and room for the graphs a region class needs
    before dynamo gives up and runs it eagerly."""
    # Imported here, not at module top: torch._dynamo takes seconds to import, and every process that inverts imports
    # this module (ganinv.inversion.optimize), compiled or not.
    import torch._dynamo
    import torch.fx.experimental._config as fx_config

    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    patches = {limit: max(getattr(config, limit), MAX_GRAPHS)}
    if hasattr(config, "specialize_float"):
        patches["specialize_float"] = True
    no_duck = {"use_duck_shape": False} if hasattr(fx_config, "use_duck_shape") else {}
    with config.patch(**patches), fx_config.patch(**no_duck):
        yield


def compiled_forward(cls: type[nn.Module], **options: Any) -> Callable:
    """`cls.forward` compiled (options over `REGION_OPTIONS`), once per process; call it as `fn(module, ...)`."""
    options = {**REGION_OPTIONS, **options}
    key = (cls, tuple(sorted(options.items())))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(cls.forward, **options)
    return _COMPILED[key]


def _call(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    with _shape_polymorphic():
        return fn(*args, **kwargs)


def compiled_function(fn: Callable, **options: Any) -> Callable:
    """`fn` compiled as a region of its own (options over `REGION_OPTIONS`), once per process."""
    options = {**REGION_OPTIONS, **options}
    key = (fn, tuple(sorted(options.items())))
    if key not in _COMPILED:
        _COMPILED[key] = functools.partial(_call, torch.compile(fn, **options))
    return _COMPILED[key]


class RegionalCompiler:
    """Compiled forwards for `regions` (modules; instances of one class share one compiled forward), switched on
    only inside `active()`: outside it the modules run eagerly as before (the model is shared with code that must
    not trigger compilation, e.g. fp32 evaluation under no_grad)."""

    def __init__(self, regions: Sequence[nn.Module], **options: Any):
        self.regions = list(regions)
        self._forwards = [functools.partial(_call, compiled_forward(type(m), **options), m) for m in self.regions]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        for module, forward in zip(self.regions, self._forwards):
            module.forward = forward  # an instance attribute: nn.Module.__call__ finds it before the class's
        try:
            yield
        finally:
            for module in self.regions:
                vars(module).pop("forward", None)


def synthesis_regions(synthesis: nn.Module) -> list[nn.Module]:
    """The synthesis network's repeated modules (`compile_regions()`), or the whole network if it names none."""
    regions = getattr(synthesis, "compile_regions", None)
    return list(regions()) if regions is not None else [synthesis]
