"""Load and save StyleGAN2 generators: official network pickles, ganinv's `.safetensors` format, built-in names.

- Official StyleGAN2-ADA / StyleGAN3-repo (`networks_stylegan2`) pickles are read by `official_pickle`, which runs
  none of their code; only `G_ema` is built, as ganinv's own `Generator`, from its `init_kwargs` and tensors.
- The native format is a safetensors file of `G.state_dict()` whose metadata holds `format`, `format_version`,
  `init_kwargs` (canonical JSON), `identity` (see `generator_identity`) and optional provenance (`source`, ...).
- Built-in models are files inside the package, picked by name (`BUILTIN_GENERATORS`).

Every failure to load raises `GeneratorLoadError` with a one-line message naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from safetensors.torch import save_file

from ganinv import __version__
from ganinv.generators import official_pickle
from ganinv.generators.official_pickle import PersistentRecord, RefusedGlobal
from ganinv.generators.stylegan2 import Generator
from ganinv.utils import weights

BUILTIN_GENERATORS: dict[str, str] = {
    # name -> path relative to the ganinv package (ganinv/assets/...), in the native format.
    "faces64": "assets/faces64/generator.safetensors",
}
NATIVE_FORMAT = "ganinv.generator"
NATIVE_FORMAT_VERSION = "1"
GENERATOR_WEIGHTS = weights.WeightsKind(
    name="generator", format=NATIVE_FORMAT, builtins=BUILTIN_GENERATORS,
    obtain="pass a path to a generator of your own (`ganinv convert-pkl` converts a network pickle)",
    write="`ganinv convert-pkl` or ganinv.generators.save_generator")
_RESERVED_METADATA = ("format", "format_version", "init_kwargs", "identity", "ganinv_version", "source")
# Official kwargs that change only speed, not the function computed: 'inference_only' (StyleGAN3 repo) means fused
# modulated convolutions in eval mode, which is what ganinv's blocks do by default.
_NUMERICS_ONLY_KWARGS = ("fused_modconv_default",)


class GeneratorLoadError(Exception):
    """A generator file or name could not be loaded; the message names it and says what to do (one line)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).splitlines()))


@contextmanager
def _as_load_error() -> Iterator[None]:
    """The shared weights-file errors (`ganinv.utils.weights`) as the GeneratorLoadError this module promises."""
    try:
        yield
    except (weights.MissingWeights, weights.BadWeightsFile) as e:
        raise GeneratorLoadError(str(e)) from e


# ----------------------------------------------------------------------------------------------------- identity

def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, tuples as lists: equal configs give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def generator_identity(G: Generator) -> str:
    """sha256 (hex) over the canonical `init_kwargs` JSON and every state-dict tensor (sorted key, dtype, shape,
    bytes). Equal for equal config and weights whatever the device, mode, file format or source it came from."""
    digest = hashlib.sha256(b"ganinv.generator.identity.v1\0")
    digest.update(canonical_json(G.init_kwargs).encode())
    for name, tensor in sorted(G.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        header = canonical_json([name, str(t.dtype).removeprefix("torch."), list(t.shape)])
        digest.update(b"\0" + header.encode() + b"\0")
        digest.update(t.reshape(-1).view(torch.uint8).numpy().data)  # native byte order: little-endian everywhere
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------------ native

def save_generator(G: Generator, path: str | os.PathLike, *, source: str | None = None,
                   extra_metadata: Mapping[str, Any] | None = None) -> Path:
    """Write `G` in ganinv's native format (safetensors + config + identity); returns the path.

    `source`: where the weights came from (e.g. the original pickle); `extra_metadata`: more provenance, values that
    are not strings are stored as JSON. The file is written next to `path` and renamed, so readers never see half.
    """
    path = Path(path)
    metadata = {"format": NATIVE_FORMAT, "format_version": NATIVE_FORMAT_VERSION,
                "init_kwargs": canonical_json(G.init_kwargs), "identity": generator_identity(G),
                "ganinv_version": __version__}
    if source is not None:
        metadata["source"] = str(source)
    for key, value in (extra_metadata or {}).items():
        if key in _RESERVED_METADATA:
            raise ValueError(f"extra_metadata key {key!r} is reserved; pick another name")
        metadata[key] = value if isinstance(value, str) else canonical_json(value)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in G.state_dict().items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_generator_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a native generator file (identity, init_kwargs, source, ...) without building the model."""
    path = Path(path)
    with _as_load_error():
        metadata = weights.read_metadata(path, GENERATOR_WEIGHTS)
    if metadata.get("format_version") != NATIVE_FORMAT_VERSION:
        raise GeneratorLoadError(f"{path} has generator format version {metadata.get('format_version')!r}; this "
                                 f"ganinv reads version {NATIVE_FORMAT_VERSION}: upgrade ganinv")
    return metadata


def _load_native(path: Path) -> tuple[Generator, str | None]:
    """(G, its identity when the file records one: verified against the weights, so callers need not hash again)."""
    metadata = read_generator_metadata(path)
    with _as_load_error():
        tensors = weights.read_tensors(path)
    try:
        init_kwargs = json.loads(metadata["init_kwargs"])
    except (KeyError, ValueError) as e:
        raise GeneratorLoadError(f"{path} is truncated or corrupt ({e}); fetch it again") from e
    G = _build_generator([], init_kwargs, path)
    _load_tensors(G, tensors, path)
    if "identity" not in metadata:
        return G, None
    if generator_identity(G) != metadata["identity"]:
        raise GeneratorLoadError(f"{path}: the weights do not match the identity recorded in the file (corrupt or "
                                 "edited); fetch or convert it again")
    return G, metadata["identity"]


# ----------------------------------------------------------------------------------------------- official pickle

def _load_official_pickle(path: Path) -> Generator:
    try:
        with open(path, "rb") as f:
            snapshot = official_pickle.load(f)
    except RefusedGlobal as e:
        raise GeneratorLoadError(
            f"{path}: refused to unpickle: it references {e.global_name}, which no StyleGAN2-ADA network pickle "
            "needs, so it may be malicious; nothing from the file was run. Load only pickles from sources you "
            "trust, or ask their author for a .safetensors export") from e
    except Exception as e:  # noqa: BLE001 - any failure of a truncated/garbled stream, reported as such
        raise GeneratorLoadError(f"{path} is truncated or corrupt and cannot be unpickled "
                                 f"({type(e).__name__}: {e}); download or copy it again") from e
    record = snapshot.get("G_ema") if isinstance(snapshot, dict) else snapshot
    if not isinstance(record, PersistentRecord):
        found = sorted(map(str, snapshot)) if isinstance(snapshot, dict) else type(snapshot).__name__
        raise GeneratorLoadError(f"{path} holds no 'G_ema' network (found {found}); pass a network snapshot "
                                 "written by StyleGAN2-ADA or StyleGAN3 training (network-snapshot-*.pkl)")
    return _generator_from_record(record, path)


def _generator_from_record(record: PersistentRecord, path: Path) -> Generator:
    if record.class_name != "Generator":
        raise GeneratorLoadError(f"{path}: 'G_ema' is a {record.class_name}, not a Generator")
    if "SynthesisInput" in official_pickle.class_names(record):
        raise GeneratorLoadError(f"{path} holds a StyleGAN3 (alias-free) generator; ganinv supports StyleGAN2 "
                                 "generators only (StyleGAN2-ADA, or the StyleGAN3 repo's --cfg=stylegan2)")
    try:
        args, kwargs = official_pickle.init_arguments(record)
        tensors = official_pickle.state_dict(record)
    except ValueError as e:
        raise GeneratorLoadError(f"{path}: 'G_ema' is malformed ({e})") from e
    for key in _NUMERICS_ONLY_KWARGS:
        kwargs.pop(key, None)
        if isinstance(kwargs.get("synthesis_kwargs"), dict):
            kwargs["synthesis_kwargs"].pop(key, None)
    G = _build_generator(args, kwargs, path)
    _load_tensors(G, tensors, path)
    return G


# ------------------------------------------------------------------------------------------------------ shared

def _build_generator(args: list, kwargs: dict, path: Path) -> Generator:
    try:
        bound = inspect.signature(Generator).bind(*args, **kwargs)
        return Generator(*bound.args, **bound.kwargs)
    except (TypeError, ValueError) as e:
        raise GeneratorLoadError(f"{path}: cannot build a ganinv StyleGAN2 Generator from the file's config "
                                 f"({e}); only the official config-f ('skip') StyleGAN2 generator is supported") from e


def _load_tensors(G: Generator, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Copy `tensors` into `G`, checking that the keys and every shape are exactly what G's config implies."""
    expected = G.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise GeneratorLoadError(f"{path}: the weights do not fit the generator its config describes: missing "
                                 f"{missing[:4]}{'...' if len(missing) > 4 else ''}, unexpected "
                                 f"{unexpected[:4]}{'...' if len(unexpected) > 4 else ''}")
    for key, target in expected.items():
        if tuple(tensors[key].shape) != tuple(target.shape):
            raise GeneratorLoadError(f"{path}: tensor {key!r} has shape {list(tensors[key].shape)} but the config "
                                     f"implies {list(target.shape)}")
    G.load_state_dict(tensors, strict=True)


def resolve_generator_source(source: str | os.PathLike) -> Path:
    """A built-in name (a `str` key of `BUILTIN_GENERATORS`) or a path (.pkl or .safetensors) -> the file to read."""
    with _as_load_error():
        return weights.resolve_weights(source, GENERATOR_WEIGHTS)


def _file_kind(path: Path) -> str:
    """'pickle' or 'safetensors', from the file's first bytes (not its name)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise GeneratorLoadError(f"cannot read {path} ({e.strerror or e}); check its permissions") from e
    if size == 0:
        raise GeneratorLoadError(f"{path} is empty (0 bytes): the download or copy did not finish; fetch it again")
    if head[:1] == b"\x80":  # PROTO opcode: pickle protocol 2 or later, as every official pickle
        return "pickle"
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= size - 8:
        return "safetensors"  # u64 header length, then the JSON header
    if head[:4] == b"PK\x03\x04":
        raise GeneratorLoadError(f"{path} is a zip archive (a torch.save checkpoint?), not a generator file; "
                                 "pass an official network pickle (.pkl) or a ganinv .safetensors generator")
    raise GeneratorLoadError(f"{path} is neither a StyleGAN2-ADA network pickle nor a ganinv .safetensors generator "
                             f"(it starts with {head[:8]!r}); check the path")


def load_generator(source: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Load a StyleGAN2 generator in eval mode with `requires_grad=False`.

    `source`: a built-in name (see `BUILTIN_GENERATORS`), a ganinv `.safetensors` file, or an official
    StyleGAN2-ADA / StyleGAN3-repo network pickle (only `G_ema` is used; none of the pickle's code runs).
    The format is recognised from the file's content. Raises `GeneratorLoadError`.
    """
    path = resolve_generator_source(source)
    G, _ = _load(path)
    return G.eval().requires_grad_(False).to(device)


def load_generator_and_identity(source: str | os.PathLike,
                                device: str | torch.device = "cpu") -> tuple[Generator, str]:
    """`load_generator` and the generator's `generator_identity`, hashed once: a native file's recorded identity is
    verified against its weights while loading (and returned), an official pickle's is computed."""
    path = resolve_generator_source(source)
    G, identity = _load(path)
    identity = identity or generator_identity(G)
    return G.eval().requires_grad_(False).to(device), identity


def _load(path: Path) -> tuple[Generator, str | None]:
    """(G on the CPU, its verified identity or None when the file records none), the format read from the bytes."""
    if _file_kind(path) == "safetensors":
        return _load_native(path)
    return _load_official_pickle(path), None
