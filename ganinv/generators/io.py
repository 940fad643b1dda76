"""Load and save StyleGAN2 and StyleGAN3 generators: official network pickles, ganinv's `.safetensors` format,
built-in names.

- Official StyleGAN2-ADA / StyleGAN3 pickles are read by `official_pickle`, which runs none of their code; only
  `G_ema` is built, as ganinv's own generator of the same architecture (`GENERATOR_CLASSES`, recognised from the
  pickle's class names), from its `init_kwargs` and tensors.
- The native format is a safetensors file of `G.state_dict()` whose metadata holds `format`, `format_version`,
  `family` (a key of `GENERATOR_CLASSES`; files without it are StyleGAN2), `init_kwargs` (canonical JSON),
  `identity` (see `generator_identity`) and optional provenance (`source`, ...).
- Built-in models are files inside the package, picked by name (`BUILTIN_GENERATORS`).

Untrusted files cost bounded time and memory: pickles are bounded by `official_pickle.PickleLimits`; a generator's
config is checked (`CONFIG_LIMITS`), then built under an allocation budget (the values the file really stores,
capped at `LoadLimits.max_parameters`) that refuses an oversized parameter before it is allocated. Every failure to load raises `GeneratorLoadError` (a `ganinv.errors.UserError`) with a one-line message
naming the file and what to do; budget refusals are `GeneratorTooLarge`, unknown architectures
`UnsupportedGenerator`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from ganinv import __version__
from ganinv.builtin_models import BUILTIN_GENERATORS  # name -> file (torch-free, for the CLI's quick check)
from ganinv.errors import UserError
from ganinv.generators import official_pickle, stylegan2, stylegan3
from ganinv.generators.base import StyleGeneratorBase
from ganinv.generators.official_pickle import PersistentRecord, PickleBudgetExceeded, RefusedGlobal
from ganinv.utils import weights

GENERATOR_CLASSES: dict[str, type[StyleGeneratorBase]] = {
    cls.family: cls for cls in (stylegan2.Generator, stylegan3.Generator)}
# Class names an official G_ema's submodules carry, per family (how a pickle says what it holds).
_FAMILY_MARKERS = {"stylegan3": "SynthesisInput", "stylegan2": "SynthesisBlock"}
NATIVE_FORMAT = "ganinv.generator"
NATIVE_FORMAT_VERSION = "1"
GENERATOR_WEIGHTS = weights.WeightsKind(
    name="generator", format=NATIVE_FORMAT, builtins=BUILTIN_GENERATORS,
    obtain="pass a path to a generator of your own (`ganinv convert-pkl` converts a network pickle)",
    write="`ganinv convert-pkl` or ganinv.generators.save_generator")
_RESERVED_METADATA = ("format", "format_version", "family", "init_kwargs", "identity", "ganinv_version", "source")
# Official kwargs that change only speed, not the function computed: 'inference_only' (StyleGAN3 repo) means fused
# modulated convolutions in eval mode, which is what ganinv's blocks do by default.
_NUMERICS_ONLY_KWARGS = ("fused_modconv_default",)
# Upper bounds on the config values that set how much a constructor loops over or designs (released models:
# 1024 px, 14 + 1 layers, 512 channels, 8 mapping layers, 6-tap filters), checked wherever the key occurs.
CONFIG_LIMITS: dict[str, int] = {
    "img_resolution": 16384, "img_channels": 64, "z_dim": 65536, "w_dim": 65536, "c_dim": 65536,
    "embed_features": 65536, "layer_features": 65536, "channel_max": 65536, "num_layers": 64, "num_critical": 64,
    "num_fp16_res": 64, "filter_size": 64, "conv_kernel": 15, "lrelu_upsampling": 8, "margin_size": 1024}


@dataclasses.dataclass(frozen=True)
class LoadLimits:
    """What loading one generator file may cost (issue 24: hostile inputs are refused before they allocate)."""

    pickle: official_pickle.PickleLimits = official_pickle.DEFAULT_LIMITS
    max_parameters: int = 1 << 30  # parameters + buffers: 4 GiB in float32; the largest released model has ~30 M


DEFAULT_LOAD_LIMITS = LoadLimits()


class GeneratorLoadError(UserError):
    """A generator file or name could not be loaded; the message names it and says what to do (one line)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).splitlines()))


class GeneratorTooLarge(GeneratorLoadError):
    """The file was refused before it could cost time or memory: over a `LoadLimits` budget, or a config that asks
    for more than its file holds."""


class UnsupportedGenerator(GeneratorLoadError):
    """The file holds a network of an architecture ganinv does not implement (its class names are in the message)."""


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


def generator_identity(G: StyleGeneratorBase) -> str:
    """sha256 (hex) over the canonical `init_kwargs` JSON and every state-dict tensor (sorted key, dtype, shape,
    bytes). Equal for equal config and weights whatever the device, mode, file format or source it came from."""
    return state_dict_identity(G.state_dict(), tag="ganinv.generator.identity.v1", config=G.init_kwargs)


def state_dict_identity(state_dict: Mapping[str, torch.Tensor], *, tag: str, config: Any = None) -> str:
    """sha256 (hex) of a network: `tag`, the canonical JSON of `config` (when given), then every tensor by sorted
    key (name, dtype, shape, bytes). Equal for equal weights whatever the device or the file they came from."""
    digest = hashlib.sha256(tag.encode() + b"\0")
    if config is not None:
        digest.update(canonical_json(config).encode())
    for name, tensor in sorted(state_dict.items()):
        t = tensor.detach().to("cpu").contiguous()
        header = canonical_json([name, str(t.dtype).removeprefix("torch."), list(t.shape)])
        digest.update(b"\0" + header.encode() + b"\0")
        digest.update(t.reshape(-1).view(torch.uint8).numpy().data)  # native byte order: little-endian everywhere
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------------ native

def save_generator(G: StyleGeneratorBase, path: str | os.PathLike, *, source: str | None = None,
                   extra_metadata: Mapping[str, Any] | None = None) -> Path:
    """Write `G` in ganinv's native format (safetensors + config + identity); returns the path.

    `source`: where the weights came from (e.g. the original pickle); `extra_metadata`: more provenance, values that
    are not strings are stored as JSON. The file is written next to `path` and renamed, so readers never see half.
    """
    metadata = {"format": NATIVE_FORMAT, "format_version": NATIVE_FORMAT_VERSION, "family": G.family,
                "init_kwargs": canonical_json(G.init_kwargs), "identity": generator_identity(G),
                "ganinv_version": __version__}
    if source is not None:
        metadata["source"] = str(source)
    for key, value in (extra_metadata or {}).items():
        if key in _RESERVED_METADATA:
            raise ValueError(f"extra_metadata key {key!r} is reserved; pick another name")
        metadata[key] = value if isinstance(value, str) else canonical_json(value)
    return weights.write_weights(path, G.state_dict(), metadata)


def read_generator_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a native generator file (identity, init_kwargs, source, ...) without building the model."""
    path = Path(path)
    with _as_load_error():
        metadata = weights.read_metadata(path, GENERATOR_WEIGHTS)
    if metadata.get("format_version") != NATIVE_FORMAT_VERSION:
        raise GeneratorLoadError(f"{path} has generator format version {metadata.get('format_version')!r}; this "
                                 f"ganinv reads version {NATIVE_FORMAT_VERSION}: upgrade ganinv")
    return metadata


def _load_native(path: Path, limits: LoadLimits) -> tuple[StyleGeneratorBase, str | None]:
    """(G, its identity when the file records one: verified against the weights, so callers need not hash again)."""
    metadata = read_generator_metadata(path)
    with _as_load_error():
        tensors = weights.read_tensors(path)
    try:
        init_kwargs = json.loads(metadata["init_kwargs"])
        official_pickle.check_structure(init_kwargs, limits.pickle)  # nesting depth, before anything recurses
    except PickleBudgetExceeded as e:
        raise GeneratorTooLarge(f"{path}: its init_kwargs' {e.what} exceeds the limit of {e.limit:,}; the file is "
                                "damaged or hostile; nothing was built") from e
    except (KeyError, ValueError, RecursionError) as e:
        raise GeneratorLoadError(f"{path} is truncated or corrupt ({e}); fetch it again") from e
    family = metadata.get("family", "stylegan2")  # written since StyleGAN3 support; older files are StyleGAN2
    if family not in GENERATOR_CLASSES:
        raise UnsupportedGenerator(f"{path} holds a {family!r} generator; this ganinv builds "
                                   f"{sorted(GENERATOR_CLASSES)}: upgrade ganinv")
    G = _build_generator(family, [], init_kwargs, tensors, path, limits)
    if "identity" not in metadata:
        return G, None
    if generator_identity(G) != metadata["identity"]:
        raise GeneratorLoadError(f"{path}: the weights do not match the identity recorded in the file (corrupt or "
                                 "edited); fetch or convert it again")
    return G, metadata["identity"]


# ----------------------------------------------------------------------------------------------- official pickle

def _load_official_pickle(path: Path, limits: LoadLimits) -> StyleGeneratorBase:
    try:
        with open(path, "rb") as f:
            snapshot = official_pickle.load(f, limits.pickle)
    except RefusedGlobal as e:
        raise GeneratorLoadError(
            f"{path}: refused to unpickle: it references {e.global_name}, which no StyleGAN2-ADA or StyleGAN3 network "
            "pickle needs, so it may be malicious; nothing from the file was run. Load only pickles from sources "
            "you trust, or ask their author for a .safetensors export") from e
    except PickleBudgetExceeded as e:
        raise GeneratorTooLarge(f"{path}: refused to unpickle: its {e.what} exceeds the limit of {e.limit:,} "
                                f"({e.found}); official network pickles stay far below it, so the file is damaged "
                                "or hostile; nothing was built") from e
    except Exception as e:  # noqa: BLE001 - any failure of a truncated/garbled stream, reported as such
        raise GeneratorLoadError(f"{path} is truncated or corrupt and cannot be unpickled "
                                 f"({type(e).__name__}: {e}); download or copy it again") from e
    record = snapshot.get("G_ema") if isinstance(snapshot, dict) else snapshot
    if not isinstance(record, PersistentRecord):
        found = sorted(map(str, snapshot)) if isinstance(snapshot, dict) else type(snapshot).__name__
        raise GeneratorLoadError(f"{path} holds no 'G_ema' network (found {found}); pass a network snapshot "
                                 "written by StyleGAN2-ADA or StyleGAN3 training (network-snapshot-*.pkl)")
    return _generator_from_record(record, path, limits)


def _family_of(record: PersistentRecord, path: Path) -> str:
    """'stylegan2' or 'stylegan3' from the class names of G_ema and its submodules; anything else is refused."""
    names = official_pickle.class_names(record)
    families = [family for family, marker in _FAMILY_MARKERS.items() if marker in names]
    if record.class_name != "Generator" or len(families) != 1:
        raise UnsupportedGenerator(
            f"{path}: 'G_ema' is a {record.class_name} built of {sorted(names - {record.class_name})}, which is "
            "neither a StyleGAN2 generator (SynthesisBlock) nor a StyleGAN3 one (SynthesisInput); ganinv supports "
            "StyleGAN2-ADA and StyleGAN3 (configs T and R) network pickles only")
    return families[0]


def _generator_from_record(record: PersistentRecord, path: Path, limits: LoadLimits) -> StyleGeneratorBase:
    family = _family_of(record, path)
    try:
        args, kwargs = official_pickle.init_arguments(record)
        tensors = official_pickle.state_dict(record)
    except ValueError as e:
        raise GeneratorLoadError(f"{path}: 'G_ema' is malformed ({e})") from e
    for key in _NUMERICS_ONLY_KWARGS:
        kwargs.pop(key, None)
        if isinstance(kwargs.get("synthesis_kwargs"), dict):
            kwargs["synthesis_kwargs"].pop(key, None)
    return _build_generator(family, args, kwargs, tensors, path, limits)


# ------------------------------------------------------------------------------------------------------ shared

def _build_generator(family: str, args: list, kwargs: dict, tensors: dict[str, torch.Tensor], path: Path,
                     limits: LoadLimits) -> StyleGeneratorBase:
    """Check the config, build G under an allocation budget, check its state dict against the file's tensors, load.

    The budget is the number of values the file actually stores (distinct storages: no stride trick inflates it) plus
    a little for the constructors' temporaries, capped at `limits.max_parameters`; it is enforced before each
    allocation, so a small file cannot make the loader allocate a large model."""
    _check_config_values(kwargs, path)
    cls = GENERATOR_CLASSES[family]
    held = _stored_values(tensors)
    try:
        bound = inspect.signature(cls).bind(*args, **kwargs)
        with _AllocationBudget(min(limits.max_parameters, held + held // 100 + (1 << 20)), path, held,
                               limits.max_parameters):
            G = cls(*bound.args, **bound.kwargs)
    except (TypeError, ValueError, ArithmeticError) as e:
        raise GeneratorLoadError(f"{path}: cannot build a ganinv {family} generator from the file's config ({e}); "
                                 f"ganinv builds the official {family} generator (StyleGAN2: config-f, 'skip'; "
                                 "StyleGAN3: configs T and R)") from e
    _load_tensors(G, tensors, path)
    return G


def _stored_values(tensors: dict[str, torch.Tensor]) -> int:
    """How many values the tensors really store: each distinct storage once, in its tensors' element size."""
    storages = {(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes(), t.element_size())
                for t in tensors.values() if t.numel()}
    return sum(nbytes // element_size for _, nbytes, element_size in storages)


class _AllocationBudget(TorchFunctionMode):
    """Counts the elements that tensor factories (`torch.randn`, `zeros`, `empty`, ...) are asked for and raises
    `GeneratorTooLarge` before the call that would take the total past `limit`. Generator constructors allocate every
    parameter and buffer through these factories (`tests/test_generator_limits.py` checks the count is complete)."""

    FACTORIES = frozenset({torch.randn, torch.rand, torch.zeros, torch.ones, torch.empty, torch.full, torch.eye,
                           torch.tensor, torch.as_tensor, torch.outer})

    def __init__(self, limit: int, path: Path, held: int, max_parameters: int):
        super().__init__()
        self.limit, self.path, self.held, self.max_parameters, self.total = limit, path, held, max_parameters, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FACTORIES:
            self.total += _factory_numel(func, args, kwargs)
            if self.total > self.limit:
                self._refuse()
        return func(*args, **kwargs)

    def _refuse(self) -> None:
        size = f"at least {self.total:,} values ({self.total * 4 / 2**30:,.1f} GiB in float32)"
        if self.total > self.max_parameters:
            raise GeneratorTooLarge(f"{self.path}: its config describes a generator of {size}, over the limit of "
                                    f"{self.max_parameters:,} parameters; nothing that large was allocated")
        raise GeneratorTooLarge(f"{self.path}: its config asks for {size} but the file stores only {self.held:,} "
                                "(missing, shared or overlapping tensors): the file is damaged or hostile; nothing "
                                "that large was allocated")


def _factory_numel(func: Any, args: tuple, kwargs: dict) -> int:
    """Elements a factory call will allocate: `f(*size)`, `f(size)`, `f(size=...)`, `full(size, value)`, `eye(n, m)`,
    `tensor(data)` / `as_tensor(data)` (data already in memory), `outer(a, b)`."""
    if func in (torch.tensor, torch.as_tensor):
        data = args[0] if args else kwargs.get("data")
        return data.numel() if isinstance(data, torch.Tensor) else int(np.size(data))
    if func is torch.outer:
        return args[0].numel() * args[1].numel()
    if func is torch.eye:
        n = kwargs.get("n", args[0] if args else 0)
        m = kwargs.get("m", args[1] if len(args) > 1 and isinstance(args[1], int) else n)
        return int(n) * int(m)
    if "size" in kwargs:
        size = kwargs["size"]
    elif args and isinstance(args[0], (list, tuple, torch.Size)):
        size = args[0]
    else:
        size = [a for a in args if isinstance(a, int) and not isinstance(a, bool)] if func is not torch.full else []
    return math.prod(int(n) for n in size)


def _check_config_values(kwargs: Any, path: Path, key: str = "") -> None:
    """Numbers in the config are finite and within `CONFIG_LIMITS` (checked wherever their key occurs)."""
    if isinstance(kwargs, dict):
        for name, value in kwargs.items():
            _check_config_values(value, path, str(name))
    elif isinstance(kwargs, (list, tuple)):
        for value in kwargs:
            _check_config_values(value, path, key)
    elif isinstance(kwargs, float) and not math.isfinite(kwargs):
        raise GeneratorLoadError(f"{path}: config value {key}={kwargs} is not a finite number")
    elif isinstance(kwargs, int) and not isinstance(kwargs, bool) and key in CONFIG_LIMITS \
            and not 0 <= kwargs <= CONFIG_LIMITS[key]:
        raise GeneratorTooLarge(f"{path}: config value {key}={kwargs} is outside [0, {CONFIG_LIMITS[key]:,}], far "
                                "beyond any real generator; the file is damaged or hostile; nothing was built")


def _load_tensors(G: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
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
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= size - 8:
        return "safetensors"  # u64 header length, then the JSON header (checked first: a 128-byte header is \x80)
    if head[:1] == b"\x80":  # PROTO opcode: pickle protocol 2 or later, as every official pickle
        return "pickle"
    if head[:4] == b"PK\x03\x04":
        raise GeneratorLoadError(f"{path} is a zip archive (a torch.save checkpoint?), not a generator file; "
                                 "pass an official network pickle (.pkl) or a ganinv .safetensors generator")
    raise GeneratorLoadError(f"{path} is neither a StyleGAN2-ADA network pickle nor a ganinv .safetensors generator "
                             f"(it starts with {head[:8]!r}); check the path")


def load_generator(source: str | os.PathLike, device: str | torch.device = "cpu", *,
                   limits: LoadLimits = DEFAULT_LOAD_LIMITS) -> StyleGeneratorBase:
    """Load a StyleGAN2 or StyleGAN3 generator in eval mode with `requires_grad=False`.

    `source`: a built-in name (see `BUILTIN_GENERATORS`), a ganinv `.safetensors` file, or an official
    StyleGAN2-ADA / StyleGAN3 network pickle (only `G_ema` is used; none of the pickle's code runs). The format is
    recognised from the file's content, the architecture from the file. Raises `GeneratorLoadError`.
    """
    path = resolve_generator_source(source)
    G, _ = _load(path, limits)
    return G.eval().requires_grad_(False).to(device)


def load_generator_and_identity(source: str | os.PathLike, device: str | torch.device = "cpu", *,
                                limits: LoadLimits = DEFAULT_LOAD_LIMITS) -> tuple[StyleGeneratorBase, str]:
    """`load_generator` and the generator's `generator_identity`, hashed once: a native file's recorded identity is
    verified against its weights while loading (and returned), an official pickle's is computed."""
    path = resolve_generator_source(source)
    G, identity = _load(path, limits)
    identity = identity or generator_identity(G)
    return G.eval().requires_grad_(False).to(device), identity


def _load(path: Path, limits: LoadLimits) -> tuple[StyleGeneratorBase, str | None]:
    """(G on the CPU, its verified identity or None when the file records none), the format read from the bytes."""
    if _file_kind(path) == "safetensors":
        return _load_native(path, limits)
    return _load_official_pickle(path, limits), None
