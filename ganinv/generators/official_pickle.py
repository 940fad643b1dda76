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

`load` unpickles with an allow-list: a few containers, numpy scalars, torch's tensor rebuild helpers (storage bytes
go through `torch.load(weights_only=True)`), `EasyDict` (-> a plain dict subclass) and the persistence hook, which
becomes an inert `PersistentRecord`. Any other global is refused before its module is even imported, and
`module_src` is kept as text and never executed.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
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
    return PersistentRecord(class_name=meta["class_name"], state=dict(meta["state"]), version=meta.get("version"),
                            module_src=str(meta.get("module_src", "")))


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


def load(file: BinaryIO) -> Any:
    """Unpickle an official network pickle; networks come back as `PersistentRecord`s, tensors as tensors.

    Raises `RefusedGlobal` for anything outside the allow-list, `pickle.UnpicklingError`/`EOFError` for broken data.
    """
    return _RestrictedUnpickler(file).load()


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
