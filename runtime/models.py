"""The one model cache of a process (a Dask worker with one thread, or the flow process), and device handling.

The generator, the encoder and the attribute classifier are loaded on first use and kept, keyed by source, device
and file version (a long-lived worker serving many runs sees a replaced file as a new model). Shard inversion
(`runtime.shard`), edit rendering (`runtime.edits`) and direction finding (`runtime.directions`) all load through
here, so a worker that inverts a shard and then renders edits holds one copy of the generator. A module-level cache
is enough for Dask workers with one thread each (docs/platform.md); a lock makes concurrent first loads load once.

Also here: what a coordinator needs to know of a generator (`describe_generator`) and the check that a generator is
the one a store's codes belong to (`store_generator_source`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from runtime.errors import ConfigError, WorkerSetupError
from storage import GeneratorIdentity, StoreMismatchError

_CACHE: dict[tuple, Any] = {}
_CACHE_LOCK = threading.RLock()


@dataclass(frozen=True)
class GeneratorInfo:
    """What the coordinator needs to know about a generator to create a store for it."""

    source: str
    identity: str
    config: Mapping[str, Any]
    num_ws: int
    w_dim: int
    z_dim: int
    img_resolution: int
    family: str = ""
    architecture: str = ""
    c_dim: int = 0
    ws_resolutions: tuple[int, ...] = ()

    def store_identity(self) -> GeneratorIdentity:
        return GeneratorIdentity(sha256=self.identity, config=dict(self.config), source=self.source,
                                 family=self.family, architecture=self.architecture)


@dataclass(frozen=True)
class Models:
    """What a worker keeps loaded: the generator (and its identity), the encoder if the mode needs one."""

    G: nn.Module
    identity: str
    E: nn.Module | None
    device: torch.device


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' -> the first visible CUDA device if any, else the CPU; a bare 'cuda' -> the current CUDA device (so
    'cuda' and 'cuda:0' share one cache entry). Asking for CUDA on a worker without it is a WorkerSetupError (this
    worker will not grow a GPU by retrying)."""
    if str(name) == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # e.g. 'gpu': torch's own message lists every device type it knows
        raise WorkerSetupError(f"device {str(name)!r} is not a torch device: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WorkerSetupError(f"device {str(name)!r} asked for, but this worker has no CUDA device "
                               "(torch.cuda.is_available() is False): use --device auto or cpu, or GPU workers")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _cached(key: tuple, load: Callable[[], Any]) -> Any:
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = load()
        return _CACHE[key]


def file_version(source: str | None) -> int | None:
    """What tells a replaced local file from the one loaded before (its mtime); None for a name or a URL."""
    return os.stat(source).st_mtime_ns if source and os.path.isfile(source) else None


def load_models(source: str, encoder: str | None, device: str | torch.device) -> Models:
    """The generator of `source` and the `encoder` on `device`, loaded on first use in this process (again when a
    file changes)."""
    device = resolve_device(device)

    def load() -> Models:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # inversion repeats one batch shape: time cuDNN's kernels once
        G, identity = _generator_and_identity(source, device)
        E = None
        if encoder:
            from ganinv.models.encoder import load_encoder
            E = _cached(("encoder", encoder, str(device), file_version(encoder)),
                        lambda: load_encoder(encoder, device=device).eval().requires_grad_(False))
        return Models(G=G, identity=identity, E=E, device=device)

    return _cached(("models", source, encoder, str(device), file_version(source), file_version(encoder)), load)


def describe_generator(source: str) -> GeneratorInfo:
    """The generator's identity and shapes, from this process's cache (CPU; loaded once per file version, so a
    long-lived coordinator sees a replaced file as a new generator); raises GeneratorLoadError."""
    loaded = load_models(source, None, "cpu")
    G = loaded.G
    return GeneratorInfo(source=source, identity=loaded.identity, config=dict(G.init_kwargs), num_ws=G.num_ws,
                         w_dim=G.w_dim, z_dim=G.z_dim, img_resolution=G.img_resolution, family=G.family,
                         architecture=G.architecture, c_dim=G.c_dim, ws_resolutions=tuple(G.ws_resolutions))


def generator(source: str, device: str | torch.device = "cpu") -> nn.Module:
    """`ganinv.generators.load_generator(source, device)`, once per (source, device, file version)."""
    return _generator_and_identity(source, resolve_device(device))[0]


def _generator_and_identity(source: str, device: torch.device) -> tuple[nn.Module, str]:
    """(G, generator_identity): the identity comes out of the load (verified there), so it is hashed once."""

    def load() -> tuple[nn.Module, str]:
        from ganinv.generators import load_generator_and_identity
        return load_generator_and_identity(source, device=device)

    return _cached(("generator", source, str(device), file_version(source)), load)


def classifier(source: str = "builtin", device: str | torch.device = "cpu") -> nn.Module:
    """The attribute classifier (`ganinv.models.attributes.load_classifier`), cached like the generator."""
    device = resolve_device(device)

    def load() -> nn.Module:
        from ganinv.models.attributes import load_classifier
        return load_classifier(source, device=device)

    return _cached(("classifier", source, str(device), file_version(source)), load)


def cached_model_keys() -> list[tuple]:
    """What this process has loaded (for tests and diagnostics)."""
    return list(_CACHE)


def _weights_identity(source: str) -> str:
    """generator_identity of `source`, from a copy this process already holds on any device (the identity is the
    same everywhere); only when it holds none is the generator loaded, on the CPU, and kept for later use."""
    version = file_version(source)
    with _CACHE_LOCK:
        held = [value for key, value in _CACHE.items() if key[0] == "generator" and key[1] == source
                and key[3] == version]
        return held[0][1] if held else _generator_and_identity(source, torch.device("cpu"))[1]


def _identities(source: str) -> tuple[str, str | None]:
    """(generator_identity of the weights, sha256 of the file when source is a file or built-in)."""
    from ganinv.generators.io import resolve_generator_source
    from storage.schema import file_sha256

    def load() -> tuple[str, str | None]:
        return _weights_identity(source), file_sha256(resolve_generator_source(source))

    return _cached(("identities", source, file_version(source)), load)


def identity(source: str) -> dict[str, Any]:
    """JSON facts naming a generator: its weights identity, file sha256 and source, for provenance."""
    weights, file_hash = _identities(source)
    return {"identity": weights, "file_sha256": file_hash, "source": source}


def store_generator_source(store_generator: GeneratorIdentity, source: str | None = None) -> str:
    """The generator to load for a store's codes: `source`, or the one the store names; refuses another generator.

    A store identifies its generator by a sha256 (of the weights file, or ganinv's `generator_identity`); either
    matching is accepted.
    """
    source = source or store_generator.source
    if not source:
        raise ConfigError("the store does not say where its generator is (generator.source is empty): pass "
                          "--generator (a .safetensors/.pkl file or a built-in name such as faces64)")
    weights, file_hash = _identities(source)
    if store_generator.sha256 not in (weights, file_hash):
        raise StoreMismatchError(f"generator {source!r} (identity {weights[:16]}..., file sha256 "
                                 f"{(file_hash or '')[:16]}...) is not the store's generator (sha256 "
                                 f"{store_generator.sha256[:16]}..., source {store_generator.source or '-'}): pass the "
                                 "generator the store was inverted with")
    return source
