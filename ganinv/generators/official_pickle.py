"""Read network pickles of the official StyleGAN2-ADA / StyleGAN3 training code without running any of their code.

An official snapshot (`network-snapshot-*.pkl`) is a plain `pickle.dump` of
`{'G': ..., 'D': ..., 'G_ema': ..., 'augment_pipe': ..., 'training_set_kwargs': {...}}`. Every network in it is a
"persistent" object that pickles as `torch_utils.persistence._reconstruct_persistent_obj(meta)` with
`meta = {type: 'class', version, module_src, class_name, state}`: `module_src` is the full source of the defining
module, which NVIDIA's loader `exec`s, and `state` is the module's `__dict__` (`_init_kwargs`, and the `nn.Module`
`_parameters`, `_buffers`, `_modules`, whose children are persistent objects in turn). Nested kwargs are
`dnnlib.util.EasyDict`. Tensors are pickled by torch itself:
`torch._utils._rebuild_parameter(torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...), ...)` with each
storage as `torch.storage._load_from_bytes(<bytes of a legacy-format torch.save>)`, the same from torch 1.6 (NVIDIA
used 1.7-1.10) to 2.x.

`load` unpickles with an allow-list: a few containers, numpy scalars and arrays (StyleGAN3 layers keep sizes as
arrays; numpy 1.x files name the helpers `numpy.core.*`, numpy 2.x files `numpy._core.*`: both are data), torch's
tensor rebuild helpers (storage bytes go through `torch.load(weights_only=True)`), `EasyDict` (-> a plain dict
subclass) and the persistence hook, which becomes an inert `PersistentRecord`. Any other global is refused before its
module is even imported, and `module_src` is kept as text and never executed.

Hostile files are also bounded in what they cost (`PickleLimits`): the file's size and its number of opcodes are
checked before anything is built, and the unpickled object graph is walked once, iteratively, counting every
reference it follows, before anything else (kwargs flattening, hashing, printing) recurses into it. So a
"billion laughs" pickle (lists of ten references to the list below, nine deep) or a million-deep nesting is refused
in milliseconds with `PickleBudgetExceeded`, instead of growing without bound or hitting Python's recursion limit.
"""

from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
import pickletools
import warnings
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import torch


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list (nothing of it was imported or run)."""

    def __init__(self, global_name: str):
        super().__init__(f"refused global {global_name!r}")
        self.global_name = global_name


class PickleBudgetExceeded(pickle.UnpicklingError):
    """The pickle is larger, has more opcodes or objects, or nests deeper than `PickleLimits` allow."""

    def __init__(self, what: str, limit: int, found: str):
        super().__init__(f"{what} exceeds the limit of {limit:,} ({found})")
        self.what, self.limit, self.found = what, limit, found


@dataclass(frozen=True)
class PickleLimits:
    """What one network pickle may cost. Official snapshots (G, D, G_ema of a 1024 px StyleGAN3-R) are ~0.4 GB with
    tens of thousands of opcodes and objects, nested about 20 deep: the defaults leave wide room above that."""

    max_bytes: int = 4 << 30          # file size
    max_opcodes: int = 2_000_000      # pickle opcodes (each builds at most one object)
    max_nodes: int = 2_000_000        # references followed when the unpickled graph is walked as a tree
    max_depth: int = 100              # containers inside containers


DEFAULT_LIMITS = PickleLimits()


@dataclass(eq=False)
class PersistentRecord:
    """What `_reconstruct_persistent_obj(meta)` would have rebuilt, kept as data: class name and `__dict__`."""

    class_name: str
    state: dict
    version: int | None = None
    module_src: str = field(default="", repr=False)  # never executed; kept only to describe the file


class EasyDictRecord(dict):
    """Stands in for `dnnlib.util.EasyDict` (a dict with attribute access) so that NVIDIA's dnnlib is not needed."""


def _persistent_record(meta: Any) -> PersistentRecord:
    if not (isinstance(meta, dict) and meta.get("type") == "class" and isinstance(meta.get("class_name"), str)
            and isinstance(meta.get("state"), dict)):
        raise pickle.UnpicklingError("a persistent object's meta is not {type: 'class', class_name, state}")
    module_src = meta.get("module_src", "")
    if not isinstance(module_src, str):  # str() of a nested structure would recurse without bound
        raise pickle.UnpicklingError(f"a persistent object's module_src is a {type(module_src).__name__}, not text")
    return PersistentRecord(class_name=meta["class_name"], state=dict(meta["state"]), version=meta.get("version"),
                            module_src=module_src)


def _storage_from_bytes(data: Any) -> Any:
    """Safe stand-in for `torch.storage._load_from_bytes`: the bytes are a legacy `torch.save` of one storage."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("tensor storage is not bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation notices
        storage = torch.load(io.BytesIO(bytes(data)), weights_only=True, map_location="cpu")
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"tensor storage bytes hold a {type(storage).__name__}, not a storage")
    return storage


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """Numpy scalars (official layers keep gains as `np.float64`) become Python numbers."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes):
        raise pickle.UnpicklingError(f"numpy scalar of dtype {dtype!r} is not a plain number")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


class _ArrayType:
    """Stands in for `numpy.ndarray` as an argument of `_reconstruct`; calling it is refused, so no pickle can
    allocate an array of a size it names."""

    def __call__(self, *args: Any) -> Any:
        raise pickle.UnpicklingError("numpy.ndarray may not be called from a network pickle")


_ARRAY_TYPE = _ArrayType()


def _check_array_dtype(dtype: Any) -> np.dtype:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError(f"numpy array of dtype {dtype!r} is not plain numbers")
    return dtype


class _DataArray(np.ndarray):
    """An ndarray whose pickled state may only be raw bytes of a numeric dtype (object arrays are refused)."""

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("numpy array state is not (version, shape, dtype, fortran, data)")
        _check_array_dtype(state[2])
        if not isinstance(state[4], (bytes, bytearray)):
            raise pickle.UnpicklingError("numpy array data is not raw bytes")
        super().__setstate__(state)


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """Safe stand-in for `numpy.core.multiarray._reconstruct`: an empty array that BUILD fills from raw bytes."""
    if subtype is not _ARRAY_TYPE:
        raise pickle.UnpicklingError("numpy arrays may only be plain ndarrays")
    return np.ndarray.__new__(_DataArray, (0,), _check_array_dtype(np.dtype(dtype)))


def _numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, order: str = "C") -> np.ndarray:
    """Safe stand-in for `numpy.core.numeric._frombuffer` (arrays in protocol-5 pickles): a view of bytes it holds."""
    if not isinstance(buffer, (bytes, bytearray)) or order not in ("C", "F"):
        raise pickle.UnpicklingError("numpy buffer is not in-band bytes")
    return np.frombuffer(buffer, dtype=_check_array_dtype(dtype)).reshape(shape, order=order)


def _latin1_encode(text: Any, encoding: str = "latin1") -> bytes:
    """Pickle protocol 2 writes bytes as `_codecs.encode(str, 'latin1')`."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin1 byte strings")
    return codecs.encode(text, "latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,              # protocols < 4 pickle sets by reduce
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,           # ... and protocol 2 spells builtins the Python 2 way
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _latin1_encode,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,   # numpy 1.x, as NVIDIA wrote them
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,  # numpy 2.x
    ("numpy", "ndarray"): _ARRAY_TYPE,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("dnnlib.util", "EasyDict"): EasyDictRecord,
    ("dnnlib", "EasyDict"): EasyDictRecord,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Checked before anything is imported: a refused module never runs its import-time code.
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids do not occur in network pickles (is this a torch.save file?)")


def load(file: BinaryIO, limits: PickleLimits = DEFAULT_LIMITS) -> Any:
    """Unpickle an official network pickle; networks come back as `PersistentRecord`s, tensors as tensors.

    `file` must be seekable (it is read twice: opcodes are counted before anything is built). Raises
    `PickleBudgetExceeded` past `limits`, `RefusedGlobal` for anything outside the allow-list,
    `pickle.UnpicklingError`/`EOFError` for broken data.
    """
    start = file.tell()
    size = file.seek(0, os.SEEK_END) - start
    if size > limits.max_bytes:
        raise PickleBudgetExceeded("file size", limits.max_bytes, f"{size:,} bytes")
    file.seek(start)
    _count_opcodes(file, limits.max_opcodes)
    file.seek(start)
    obj = _RestrictedUnpickler(file).load()
    check_structure(obj, limits)
    return obj


def _count_opcodes(file: BinaryIO, max_opcodes: int) -> None:
    """Walk the opcode stream (nothing is built) and stop past `max_opcodes`."""
    try:
        for count, _ in enumerate(pickletools.genops(file), start=1):
            if count > max_opcodes:
                raise PickleBudgetExceeded("number of pickle opcodes", max_opcodes, f"more than {max_opcodes:,}")
    except PickleBudgetExceeded:
        raise
    except Exception as e:  # noqa: BLE001 - genops raises ValueError & co. on garbage: report it as broken data
        raise pickle.UnpicklingError(f"not a valid pickle stream ({type(e).__name__}: {e})") from e


_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None), torch.Tensor, np.ndarray, np.dtype,
           torch.storage.TypedStorage, torch.UntypedStorage, type)


def check_structure(obj: Any, limits: PickleLimits = DEFAULT_LIMITS) -> None:
    """Walk `obj` as a tree (a shared reference is followed each time it occurs, as any recursive consumer would)
    without recursion; raise `PickleBudgetExceeded` past `limits.max_nodes` nodes or `limits.max_depth` levels.
    Nodes are counted when queued, so the walk's own memory stays within the node budget too."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    nodes = 1
    while stack:
        node, depth = stack.pop()
        if isinstance(node, _LEAVES):
            continue
        if isinstance(node, PersistentRecord):
            children = [node.state]
        elif isinstance(node, dict):
            children = [*node.keys(), *node.values()]
        elif isinstance(node, (list, tuple, set, frozenset)):
            children = list(node)
        else:
            continue
        if depth >= limits.max_depth and children:
            raise PickleBudgetExceeded("nesting depth", limits.max_depth, f"more than {limits.max_depth} levels")
        nodes += len(children)
        if nodes > limits.max_nodes:
            raise PickleBudgetExceeded("number of objects (shared references counted each time)", limits.max_nodes,
                                       f"more than {limits.max_nodes:,}")
        stack.extend((child, depth + 1) for child in children)


def plain(value: Any) -> Any:
    """`EasyDictRecord`s and other dicts -> plain dicts, tuples -> lists, recursively (JSON-ready kwargs)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def init_arguments(record: PersistentRecord) -> tuple[list, dict]:
    """The positional and keyword arguments the network was constructed with (`_init_args`, `_init_kwargs`)."""
    args = record.state.get("_init_args", ())
    kwargs = record.state.get("_init_kwargs", {})
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise ValueError(f"{record.class_name} has no usable _init_args/_init_kwargs")
    return plain(list(args)), plain(kwargs)


def state_dict(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a record tree into `nn.Module.state_dict()` form (persistent buffers and parameters, dotted keys)."""
    state = record.state
    non_persistent = set(state.get("_non_persistent_buffers_set", ()))
    tensors: dict[str, torch.Tensor] = {}
    entries = [*state.get("_parameters", {}).items(),
               *((k, v) for k, v in state.get("_buffers", {}).items() if k not in non_persistent)]
    for name, value in entries:
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{prefix + name} is a {type(value).__name__}, not a tensor")
        tensors[prefix + name] = value.detach()
    for name, child in state.get("_modules", {}).items():
        if isinstance(child, PersistentRecord):
            tensors.update(state_dict(child, f"{prefix}{name}."))
        elif child is not None:
            raise ValueError(f"submodule {prefix + name} is a {type(child).__name__}, not a persistent network")
    return tensors


def class_names(record: PersistentRecord) -> set[str]:
    """Class names of a record and all its submodules (to recognise e.g. a StyleGAN3 generator)."""
    names = {record.class_name}
    for child in record.state.get("_modules", {}).values():
        if isinstance(child, PersistentRecord):
            names |= class_names(child)
    return names
