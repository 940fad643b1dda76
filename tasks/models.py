"""Models loaded once per process (a Dask worker with one thread, or the flow process) and the check that a generator
is the one a store's codes belong to.

A module-level cache is enough for workers with `threads_per_worker=1` (PLATFORM_NOTES: "model once per worker").
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from storage import GeneratorIdentity
from storage.latent_store import StoreMismatchError


def resolve_device(device: str) -> str:
    """`auto` -> cuda when available, else cpu."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


@functools.lru_cache(maxsize=4)
def generator(source: str, device: str = "cpu") -> torch.nn.Module:
    """`ganinv.generators.load_generator(source, device)`, cached per (source, device)."""
    from ganinv.generators import load_generator

    return load_generator(source, device=device)


@functools.lru_cache(maxsize=4)
def classifier(source: str = "builtin", device: str = "cpu") -> torch.nn.Module:
    """The attribute classifier (`ganinv.models.attributes.load_classifier`), cached per (source, device)."""
    from ganinv.models.attributes import load_classifier

    return load_classifier(source, device=device)


@functools.lru_cache(maxsize=8)
def _identities(source: str) -> tuple[str, str | None]:
    """(generator_identity of the weights, sha256 of the file when source is a file or built-in)."""
    from ganinv.generators import generator_identity
    from ganinv.generators.io import resolve_generator_source
    from storage.schema import file_sha256

    return generator_identity(generator(source)), file_sha256(resolve_generator_source(source))


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
        raise ValueError("the store does not say where its generator is (generator.source is empty): pass "
                         "--generator (a .safetensors/.pkl file or a built-in name such as faces64)")
    weights, file_hash = _identities(source)
    if store_generator.sha256 not in (weights, file_hash):
        raise StoreMismatchError(f"generator {source!r} (identity {weights[:16]}..., file sha256 "
                                 f"{(file_hash or '')[:16]}...) is not the store's generator (sha256 "
                                 f"{store_generator.sha256[:16]}..., source {store_generator.source or '-'}): pass the "
                                 "generator the store was inverted with")
    return source
