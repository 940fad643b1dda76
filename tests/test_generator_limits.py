"""Hostile generator files are refused before they cost memory or time (issue 24, item 6): pickles past a size,
opcode, object or depth budget, configs past `CONFIG_LIMITS` or the parameter budget, and configs bigger than the
weights their file holds. Every refusal is a one-line `GeneratorTooLarge` (a `UserError`) naming the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from conftest import make_tiny_generator, make_tiny_sg3_generator
from official_pickles import write_official_pickle
from ganinv.errors import UserError
from ganinv.generators import (GeneratorLoadError, GeneratorTooLarge, LoadLimits, StyleGAN3Generator,
                               load_generator)
from ganinv.generators.io import NATIVE_FORMAT
from ganinv.generators.official_pickle import PickleLimits

ROOT = Path(__file__).resolve().parents[1]
# A StyleGAN3-T config of ~0.55 G parameters (2.2 GB in float32): under the parameter budget, so only the file's
# own weights can tell that it is hollow.
BIG_SG3 = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=256, img_channels=3, channel_base=2 ** 20,
               channel_max=2048, num_fp16_res=0)
# A StyleGAN2 config of ~16 G parameters (64 GB in float32).
HUGE_SG2 = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=1024, img_channels=3, mapping_kwargs=dict(num_layers=2),
                synthesis_kwargs=dict(channel_base=2 ** 30, channel_max=12288))


def billion_laughs(depth: int = 9, width: int = 10) -> list:
    """`width ** depth` leaves as a tree, `width * depth` references as a graph."""
    node: list = ["lol"] * width
    for _ in range(depth - 1):
        node = [node] * width
    return node


def deep_list_pickle(depth: int) -> bytes:
    """A pickle of a list nested `depth` deep, written as opcodes (pickle.dumps would recurse)."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def hollow(G: nn.Module) -> nn.Module:
    """G with every parameter and buffer replaced by a stride-0 view of one stored zero: the shapes of G, the file
    size of nothing."""
    for module in G.modules():
        for name, p in list(module._parameters.items()):
            if p is not None:
                module._parameters[name] = nn.Parameter(torch.zeros([]).expand(p.shape), requires_grad=False)
        for name, b in list(module._buffers.items()):
            if b is not None:
                module._buffers[name] = torch.zeros([]).expand(b.shape)
    return G


def assert_refused(path: Path, match: str, limits: LoadLimits | None = None) -> GeneratorTooLarge:
    start = time.perf_counter()
    with pytest.raises(GeneratorTooLarge, match=match) as info:
        load_generator(path, **({"limits": limits} if limits else {}))
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert isinstance(info.value, UserError) and str(path) in message and "\n" not in message
    return info.value


def test_billion_laughs_in_init_kwargs_is_refused_quickly(tmp_path):
    G = make_tiny_generator()
    path = write_official_pickle(tmp_path / "laughs.pkl", G, tmp_path,
                                 init_kwargs={**G.init_kwargs, "laughs": billion_laughs()})
    assert path.stat().st_size < 100_000
    assert_refused(path, "number of objects")


@pytest.mark.parametrize("depth, match", [(500_000, "nesting depth exceeds the limit of 100"),
                                          (5_000_000, "number of pickle opcodes")])
def test_very_deep_nesting_is_refused_without_recursion_error(tmp_path, depth, match):
    path = tmp_path / "deep.pkl"
    path.write_bytes(deep_list_pickle(depth))
    assert_refused(path, match)


def test_deep_nesting_inside_init_kwargs_is_refused(tmp_path):
    G = make_tiny_sg3_generator()
    nested: list = []
    for _ in range(300):
        nested = [nested]
    path = write_official_pickle(tmp_path / "nested.pkl", G, tmp_path, init_kwargs={**G.init_kwargs, "x": nested})
    assert_refused(path, "nesting depth")


def test_pickle_past_the_size_or_opcode_budget_is_refused(tmp_path):
    G = make_tiny_sg3_generator()
    path = write_official_pickle(tmp_path / "snap.pkl", G, tmp_path)
    assert load_generator(path).num_ws == G.num_ws  # within the defaults
    assert_refused(path, "file size exceeds the limit of 1,000",
                   LoadLimits(pickle=PickleLimits(max_bytes=1000)))
    assert_refused(path, "number of pickle opcodes exceeds the limit of 500",
                   LoadLimits(pickle=PickleLimits(max_opcodes=500)))


@pytest.mark.parametrize("key, value", [("num_layers", 10 ** 6), ("filter_size", 10 ** 5), ("img_resolution", 2 ** 20),
                                        ("margin_size", -5)])
def test_config_value_past_its_limit_is_refused_before_building(tmp_path, key, value):
    G = make_tiny_sg3_generator()
    path = write_official_pickle(tmp_path / "cfg.pkl", G, tmp_path, init_kwargs={**G.init_kwargs, key: value})
    assert_refused(path, f"config value {key}={value} is outside")


def test_config_of_64_gb_is_a_one_line_refusal_naming_its_size(tmp_path):
    path = write_official_pickle(tmp_path / "huge.pkl", make_tiny_generator(), tmp_path, init_kwargs=HUGE_SG2)
    error = assert_refused(path, r"describes a generator of at least [\d,]+ values \(\d[\d,.]* GiB in float32\), "
                                 r"over the limit of 1,073,741,824 parameters")
    assert "nothing that large was allocated" in str(error)


def test_non_finite_config_value_is_refused(tmp_path):
    G = make_tiny_sg3_generator()
    path = write_official_pickle(tmp_path / "nan.pkl", G, tmp_path,
                                 init_kwargs={**G.init_kwargs, "first_cutoff": float("nan")})
    with pytest.raises(GeneratorLoadError, match="first_cutoff=nan is not a finite number"):
        load_generator(path)


def test_hollow_pickle_whose_tensors_share_one_value_is_refused(tmp_path):
    with torch.device("meta"):
        G = StyleGAN3Generator(**BIG_SG3)
    path = write_official_pickle(tmp_path / "hollow.pkl", hollow(G), tmp_path)
    assert path.stat().st_size < 2_000_000
    assert_refused(path, r"config asks for at least [\d,]+ values .* but the file stores only [\d,]+ \(missing, shared")


def test_native_file_whose_config_is_bigger_than_its_weights_is_refused(tmp_path):
    path = tmp_path / "big.safetensors"
    config = {**HUGE_SG2, "synthesis_kwargs": dict(channel_base=2 ** 30, channel_max=1024)}  # ~0.2 G parameters
    save_file({"mapping.w_avg": torch.zeros(8)}, str(path),
              metadata={"format": NATIVE_FORMAT, "format_version": "1", "family": "stylegan2",
                        "init_kwargs": json.dumps(config)})
    assert_refused(path, "asks for at least [\\d,]+ values .* but the file stores only 8 ")


@pytest.mark.parametrize("depth, error", [(300, GeneratorTooLarge), (100_000, GeneratorLoadError)])
def test_native_file_with_deeply_nested_config_is_refused(tmp_path, depth, error):
    path = tmp_path / "deep.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": NATIVE_FORMAT, "format_version": "1",
                                                            "init_kwargs": "[" * depth + "]" * depth})
    with pytest.raises(error, match="deep.safetensors"):
        load_generator(path)


CHILD = """
import json, resource, sys, time
from ganinv.generators import load_generator
def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
load_generator(sys.argv[1])  # warm-up: imports, allocator, one legitimate load
report = {}
for path in sys.argv[2:]:
    before, start = peak_mib(), time.perf_counter()
    try:
        load_generator(path)
        error = None
    except Exception as e:
        error = type(e).__name__
    report[path] = dict(error=error, seconds=time.perf_counter() - start, peak_growth_mib=peak_mib() - before)
print(json.dumps(report))
"""


@pytest.mark.slow
def test_hostile_files_do_not_grow_the_loaders_memory(tmp_path):
    """Measured in a fresh process (peak RSS): before the fix the hollow 7 MB-class pickle allocated its 2.2 GB
    config, the laughs pickle grew to gigabytes, the 64 GB config ended in a raw traceback."""
    legit = write_official_pickle(tmp_path / "ok.pkl", make_tiny_sg3_generator(), tmp_path)
    G = make_tiny_generator()
    laughs = write_official_pickle(tmp_path / "laughs.pkl", G, tmp_path,
                                   init_kwargs={**G.init_kwargs, "laughs": billion_laughs()})
    huge = write_official_pickle(tmp_path / "huge.pkl", G, tmp_path, init_kwargs=HUGE_SG2)
    with torch.device("meta"):
        big = StyleGAN3Generator(**BIG_SG3)
    hollow_path = write_official_pickle(tmp_path / "hollow.pkl", hollow(big), tmp_path)
    deep = tmp_path / "deep.pkl"
    deep.write_bytes(deep_list_pickle(500_000))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(legit), str(laughs), str(huge), str(hollow_path),
                          str(deep)], capture_output=True, text=True, env=env, timeout=300, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    for path, row in report.items():
        assert row["error"] == "GeneratorTooLarge", (path, row)
        assert row["peak_growth_mib"] < 200, (path, row)
        assert row["seconds"] < 20, (path, row)


@pytest.mark.parametrize("family, kwargs", [
    ("stylegan2", make_tiny_generator(c_dim=3).init_kwargs),
    ("stylegan2", make_tiny_generator(resolution=32, mapping_layers=4).init_kwargs),
    ("stylegan3", make_tiny_sg3_generator().init_kwargs),
    ("stylegan3", make_tiny_sg3_generator(radial=True).init_kwargs),
    ("stylegan3", {**BIG_SG3, "channel_max": 64, "c_dim": 4}),
])
def test_allocation_budget_sees_every_parameter_and_buffer_a_constructor_allocates(family, kwargs):
    # The budget is only as good as its count: a constructor allocating through an uncounted path would slip by.
    from ganinv.generators.io import GENERATOR_CLASSES, _AllocationBudget

    with _AllocationBudget(10 ** 12, Path("x"), 0, 10 ** 12) as budget:
        G = GENERATOR_CLASSES[family](**kwargs)
    stored = sum(t.numel() for t in G.state_dict().values())
    assert stored <= budget.total <= stored * 1.01 + 4096, (stored, budget.total)
