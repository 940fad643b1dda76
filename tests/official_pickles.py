"""Write pickles laid out like official StyleGAN2-ADA snapshots, without NVIDIA's code.

Throwaway `torch_utils/persistence.py` and `dnnlib/util.py` modules are written to a temporary directory and are
importable only while pickling. Every network pickles as the official persistent classes do:
`(torch_utils.persistence._reconstruct_persistent_obj, (meta,))` with
`meta = {type: 'class', version: 6, module_src, class_name, state}`, `state` being the module's `__dict__` with
`_init_args`/`_init_kwargs` and its submodules persistent in turn. The stand-in reconstruct hook touches a sentinel
file if it is ever called, so tests can prove that the loader never calls it.
"""

from __future__ import annotations

import contextlib
import importlib
import pickle
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from torch import nn

PERSISTENCE_SRC = '''
_version = 6
SENTINEL = None  # a path; set by the test


def _reconstruct_persistent_obj(meta):
    # NVIDIA's hook execs meta["module_src"] here. ganinv must never call it.
    if SENTINEL:
        open(SENTINEL, "w").close()
    raise RuntimeError("torch_utils.persistence._reconstruct_persistent_obj was called")


class Persistent:
    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))
'''

EASYDICT_SRC = '''
class EasyDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]
'''

MODULE_SRC = "# networks.py would be here; a loader must never execute it\nraise SystemExit('executed')\n"
_FAKE_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")


@contextlib.contextmanager
def official_modules(tmp_dir: Path, *, keep: bool = False) -> Iterator[tuple[Any, Any]]:
    """Make `torch_utils.persistence` and `dnnlib.util` importable; remove them again unless `keep`."""
    root = Path(tmp_dir) / "nvidia_standins"
    for package, module, src in (("torch_utils", "persistence", PERSISTENCE_SRC), ("dnnlib", "util", EASYDICT_SRC)):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
        (root / package / f"{module}.py").write_text(src)
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("torch_utils.persistence"), importlib.import_module("dnnlib.util")
    finally:
        if not keep:
            remove_official_modules()


def remove_official_modules() -> None:
    for name in _FAKE_MODULES:
        sys.modules.pop(name, None)
    sys.path[:] = [p for p in sys.path if not p.endswith("nvidia_standins")]
    importlib.invalidate_caches()


def easydict(value: Any, EasyDict: type) -> Any:
    if isinstance(value, dict):
        return EasyDict({k: easydict(v, EasyDict) for k, v in value.items()})
    return value


def persistent(module: nn.Module, persistence: Any, EasyDict: type, *, init_kwargs: dict | None = None,
               module_src: str = MODULE_SRC) -> Any:
    """Our module -> an object that pickles like the official persistent version of it."""
    state = dict(module.__getstate__())
    state.pop("init_kwargs", None)  # ours; the official classes keep `_init_kwargs` instead
    state["_init_args"] = ()
    state["_init_kwargs"] = init_kwargs if init_kwargs is not None else {}
    state["_modules"] = OrderedDict(
        (name, None if child is None else persistent(child, persistence, EasyDict, module_src=module_src))
        for name, child in module._modules.items())
    for key, value in list(state.items()):
        if isinstance(value, float):
            state[key] = np.float64(value)  # official layers keep gains as numpy scalars
        elif key in ("size", "in_size", "out_size") and isinstance(value, int):
            state[key] = np.broadcast_to(np.asarray(value), [2])  # ... and StyleGAN3 layers sizes as arrays
    meta = dict(type="class", version=6, module_src=module_src, class_name=type(module).__name__, state=state)
    return persistence.Persistent(meta)


def official_init_kwargs(G: nn.Module, EasyDict: type, *, layout: str) -> dict:
    """`_init_kwargs` as the official training loops store them: 'ada' nests synthesis_kwargs (EasyDicts),
    'sg3' (the StyleGAN3 repo's networks_stylegan2) passes synthesis kwargs flat plus fused_modconv_default,
    'stylegan3' (networks_stylegan3) passes them flat, as our StyleGAN3 generator keeps them."""
    kwargs = {k: v for k, v in G.init_kwargs.items() if k not in ("mapping_kwargs", "synthesis_kwargs")}
    kwargs["mapping_kwargs"] = easydict(dict(G.init_kwargs["mapping_kwargs"]), EasyDict)
    if layout == "stylegan3":
        return kwargs
    if layout == "ada":
        kwargs["synthesis_kwargs"] = easydict(dict(G.init_kwargs["synthesis_kwargs"]), EasyDict)
    elif layout == "sg3":
        kwargs.update(G.init_kwargs["synthesis_kwargs"])
        kwargs["fused_modconv_default"] = "inference_only"
    else:
        raise ValueError(layout)
    return kwargs


class Numpy1Pickler(pickle._Pickler):
    """Names numpy's pickle helpers as numpy 1.x did (`numpy.core.multiarray._reconstruct`, `...scalar`), as NVIDIA's
    released files carry them; numpy 2.x writes `numpy._core.*`. (The pure-Python pickler, for its save_global.)"""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", None) or ""
        if not module.startswith("numpy._core"):
            return super().save_global(obj, name)
        legacy, name = "numpy.core" + module[len("numpy._core"):], name or obj.__qualname__
        if self.proto >= 4:
            self.save(legacy)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{legacy}\n{name}\n".encode())
        self.memoize(obj)


def write_official_pickle(path: Path, G_ema: nn.Module, tmp_dir: Path, *, G: nn.Module | None = None,
                          layout: str | None = None, protocol: int = pickle.DEFAULT_PROTOCOL,
                          module_src: str = MODULE_SRC, extra: dict | None = None,
                          init_kwargs: dict | None = None, numpy1: bool = False) -> Path:
    """Pickle `{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}` like an official snapshot.

    `layout`: of `_init_kwargs` (see `official_init_kwargs`; default 'stylegan3' for a StyleGAN3 G_ema, else 'ada').
    `extra` entries are added to the dict (e.g. an object with a malicious `__reduce__`); `init_kwargs` overrides
    G_ema's `_init_kwargs` (plain dicts are converted to EasyDicts); `numpy1` spells numpy globals the numpy 1.x way.
    """
    layout = layout or ("stylegan3" if getattr(G_ema, "family", "") == "stylegan3" else "ada")
    with official_modules(tmp_dir) as (persistence, dnnlib_util):
        EasyDict = dnnlib_util.EasyDict

        def wrap(module: nn.Module, kwargs: dict) -> Any:
            return persistent(module, persistence, EasyDict, init_kwargs=kwargs, module_src=module_src)

        if init_kwargs is None:
            g_kwargs = official_init_kwargs(G_ema, EasyDict, layout=layout)
        else:
            g_kwargs = {k: easydict(v, EasyDict) for k, v in init_kwargs.items()}
        D = nn.Sequential(nn.Linear(4, 2))  # stands in for the discriminator: only G_ema is ever built
        D_record = persistence.Persistent(dict(type="class", version=6, module_src=module_src,
                                               class_name="Discriminator",
                                               state={"_init_kwargs": {"c_dim": 0}, "_parameters": OrderedDict(),
                                                      "_buffers": OrderedDict(D[0].state_dict()),
                                                      "_modules": OrderedDict()}))
        snapshot = {
            "G": wrap(G if G is not None else G_ema, g_kwargs),
            "D": D_record,
            "G_ema": wrap(G_ema, g_kwargs),
            "augment_pipe": None,
            "training_set_kwargs": EasyDict(class_name="training.dataset.ImageFolderDataset", path="~/data.zip",
                                            use_labels=False, max_size=70000, xflip=True, resolution=32),
            **(extra or {}),
        }
        with open(path, "wb") as f:
            (Numpy1Pickler if numpy1 else pickle.Pickler)(f, protocol=protocol).dump(snapshot)
    return path
