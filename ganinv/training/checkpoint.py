"""Training checkpoints as size-capped safetensors shards plus one JSON file.

A checkpoint holds several networks and their Adam moments (about 4x the model). The GPU machine returns files of at
most 16 MiB, so tensors are packed into shards below `max_shard_bytes`; everything that is not a tensor (step
counters, config, RNG state) goes into `checkpoint.json`. Writing goes to a temporary folder renamed at the end, so
a run killed while saving leaves the previous checkpoint intact.

The config dataclasses a checkpoint stores are read back here from untyped values, by the same rules: from the
checkpoint's JSON (`config_from_dict`) and from `KEY=VALUE` text (`parse_settings`, the `--set` of the training
commands), so a setting given as a list compares equal to the tuple a resumed run stored.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import shutil
import typing
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ganinv.utils.files import file_sha256

MAX_SHARD_BYTES = 15 * 2 ** 20


def flatten_state(prefix: str, obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested dict/list into `tensors` (keys `prefix.path`), return the JSON-able rest."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, flatten_state(f"{prefix}.{k}", v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [flatten_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(obj)]
    return obj


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: str | Path, state: dict[str, Any], *, max_shard_bytes: int = MAX_SHARD_BYTES) -> None:
    """Write `state` (nested dicts of tensors and JSON values) to the folder `path`, replacing it atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten_state("state", state, tensors)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if nbytes > max_shard_bytes:
            raise ValueError(f"tensor {key} ({nbytes} bytes) exceeds the shard cap of {max_shard_bytes} bytes")
        if size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = t
        size += nbytes
    names = []
    for i, shard in enumerate(shards):
        names.append(f"tensors-{i:03d}.safetensors")
        save_file(shard, str(tmp / names[-1]))
    (tmp / "checkpoint.json").write_text(json.dumps({"shards": names, "state": skeleton}))
    old = path.with_name(path.name + ".old")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _read_meta(path: Path) -> dict[str, Any]:
    meta_file = path / "checkpoint.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"no checkpoint at {path} (expected {meta_file})")
    return json.loads(meta_file.read_text())


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """A frozen config dataclass from its `dataclasses.asdict` after a JSON round trip (lists back to tuples, nested
    ones too: `((a, b),)` comes back as `[[a, b]]`)."""
    return cls(**{k: lists_to_tuples(v) for k, v in values.items()})


def lists_to_tuples(value: Any) -> Any:
    """`value` with every list in it (nested ones too) a tuple, as a frozen config's fields hold them."""
    return tuple(lists_to_tuples(v) for v in value) if isinstance(value, list) else value


def parse_settings(settings: list[str], config_class: type) -> dict[str, Any]:
    """`KEY=VALUE` items (the `--set` of `ganinv train-gan` and `benchmarks.train_chunk`; gpu/classifier.py's for
    `TrainClassifierConfig`) as `{field: value}` of `config_class`, each value a Python literal (`2`, `0.002`,
    `False`, `None`, `(0, 0.99)`; a list is read as a tuple) or else a string (`procedural:100000:0`). A ValueError,
    before any set-up: a key that is no field (naming the fields), or a value that is no literal for a field that
    takes no string (a misspelt number: `g_lr=0.0O2`)."""
    fields = {f.name: f.type for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    changes = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY a {config_class.__name__} field "
                             f"({', '.join(sorted(fields))})")
        try:
            changes[key] = lists_to_tuples(ast.literal_eval(value))
        except (ValueError, SyntaxError):
            changes[key] = value
        if isinstance(changes[key], str) and not (hints[key] is str or str in typing.get_args(hints[key])):
            raise ValueError(f"--set {item!r}: {key} takes {fields[key]}, and {value!r} is no Python literal")
    return changes


def load_checkpoint_entry(path: str | Path, key: str) -> Any:
    """One top-level entry of the checkpoint at `path` that holds no tensors (its config, its step), read from
    `checkpoint.json` alone, without loading the tensor shards."""
    path = Path(path)
    entries = dict(_read_meta(path)["state"]["__dict__"])
    if key not in entries:
        raise KeyError(f"checkpoint {path} has no entry {key!r}; it has {sorted(entries)}")
    return unflatten_state(entries[key], {})


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    meta = _read_meta(path)
    tensors: dict[str, torch.Tensor] = {}
    for name in meta["shards"]:
        tensors.update(load_file(str(path / name)))
    return unflatten_state(meta["state"], tensors)


# ---------------------------------------------------------------------------------------------- compact state
# A run that is committed to git and resumed on another machine must stay small (<= 25 MB for the embedded world's
# networks): weights in fp16, Adam's moments in bf16. Trainers that round their own state at each checkpoint and
# continue from the rounded values (`EncoderTrainer`) make a resumed run equal an uninterrupted one.

def half_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors in fp16 (a 10-bit mantissa: rounding of at most 2^-11 relative), others unchanged."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}


def compact_adam_state(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Adam's state dict with its moments in bf16 (fp16's range underflows on squared gradients). First moments are
    dropped when every group's beta1 is 0 (the moment is then the last gradient, overwritten by the next step)."""
    keep_first = any(group["betas"][0] > 0 for group in opt.param_groups)
    state = opt.state_dict()
    per_param = {i: {k: v.bfloat16() if k in ("exp_avg", "exp_avg_sq") else v for k, v in s.items()
                     if keep_first or k != "exp_avg"}
                 for i, s in state["state"].items()}
    return dict(state=per_param, param_groups=state["param_groups"])


def full_adam_state(state: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `compact_adam_state` for `Adam.load_state_dict`: fp32 moments, zero first moments where dropped."""
    per_param = {}
    for i, s in state["state"].items():
        s = dict(s)
        s["exp_avg_sq"] = s["exp_avg_sq"].float()
        s["exp_avg"] = s["exp_avg"].float() if "exp_avg" in s else torch.zeros_like(s["exp_avg_sq"])
        per_param[int(i)] = s
    return dict(state=per_param, param_groups=state["param_groups"])


def checkpoint_bytes(path: str | Path) -> int:
    """Total size of the checkpoint folder's files (what committing it costs)."""
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())


def checkpoint_sha256(path: str | Path) -> str:
    """One hex sha256 for the checkpoint at `path`: of its files' names and sha256s (`checkpoint.json`, then its
    shards in order), so it changes when any of them does (the identity of a run folder used as a source)."""
    path = Path(path)
    digest = hashlib.sha256()
    for name in ["checkpoint.json", *_read_meta(path)["shards"]]:
        digest.update(f"{name}:{file_sha256(path / name)}\n".encode())
    return digest.hexdigest()
