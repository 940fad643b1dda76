"""Official StyleGAN2-ADA network pickles load into our Generator without running any of their code."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys

import pytest
import torch

from conftest import ada_tiny_init_kwargs, make_tiny_generator
from official_pickles import official_modules, write_official_pickle
from ganinv.generators import Generator, GeneratorLoadError, generator_identity, load_generator

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def ada_tiny_pickle(ada_tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ada_tiny_pickle")
    G = Generator(**ada_tiny_init_kwargs())
    G.load_state_dict({k: v + 1 for k, v in ada_tiny.state_dict().items()})  # the non-EMA G: different weights
    return write_official_pickle(tmp / "network-snapshot-000000.pkl", ada_tiny, tmp, G=G)


def _max_abs_errors(G, ref) -> dict[str, float]:
    with torch.no_grad():
        out = {
            "ws": G.mapping(ref["z"], ref["c"]),
            "ws_psi0.7": G.mapping(ref["z"], ref["c"], truncation_psi=0.7),
            "ws_psi0.5_cutoff4": G.mapping(ref["z"], ref["c"], truncation_psi=0.5, truncation_cutoff=4),
            "img_const": G.synthesis(ref["ws"], noise_mode="const"),
            "img_none": G.synthesis(ref["ws"], noise_mode="none"),
            "img_psi0.7_const": G.synthesis(ref["ws_psi0.7"], noise_mode="const"),
            "img_fused_off_const": G.synthesis(ref["ws"], noise_mode="const", fused_modconv=False),
            "img_ws_plus_const": G.synthesis(ref["ws_plus"], noise_mode="const"),
        }
    return {name: (value - ref[name]).abs().max().item() for name, value in out.items()}


def test_loaded_ada_pickle_reproduces_official_outputs(ada_tiny_pickle, ada_tiny_reference):
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules  # no NVIDIA code needed
    G = load_generator(ada_tiny_pickle)
    errors = _max_abs_errors(G, ada_tiny_reference)
    print("max abs error per reference array:", errors)
    assert max(errors.values()) <= TOLERANCE, errors


def test_loaded_pickle_is_g_ema_frozen_in_eval_mode(ada_tiny, ada_tiny_pickle):
    G = load_generator(ada_tiny_pickle)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    assert generator_identity(G) == generator_identity(ada_tiny)  # G_ema, not G


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("layout", ["ada", "sg3"])
def test_pickle_of_any_protocol_and_kwargs_layout_gives_identical_outputs(tmp_path, protocol, layout):
    source = make_tiny_generator(c_dim=3, conv_clamp=None)
    path = write_official_pickle(tmp_path / "snap.pkl", source, tmp_path, protocol=protocol, layout=layout)
    G = load_generator(path)
    z, c = torch.randn(3, source.z_dim), torch.eye(3)
    with torch.no_grad():
        assert torch.equal(G(z, c, truncation_psi=0.7), source(z, c, truncation_psi=0.7))
    assert generator_identity(G) == generator_identity(source)


def test_pickle_loads_without_calling_the_reconstruct_hook_even_when_nvidia_code_is_importable(tmp_path):
    path = write_official_pickle(tmp_path / "snap.pkl", make_tiny_generator(), tmp_path)
    sentinel = tmp_path / "hook_was_called"
    with official_modules(tmp_path) as (persistence, _):
        persistence.SENTINEL = str(sentinel)
        load_generator(path)
    assert not sentinel.exists()


def test_module_src_is_never_executed(tmp_path):
    marker = tmp_path / "module_src_ran"
    evil_src = f"open({str(marker)!r}, 'w').write('pwned')\n"
    path = write_official_pickle(tmp_path / "snap.pkl", make_tiny_generator(), tmp_path, module_src=evil_src)
    G = load_generator(path)
    assert G.num_ws > 0
    assert not marker.exists()


class _Reduce:
    """An object that unpickles as `func(*args)`."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": _Reduce(os.system, f"touch {marker}"),
        "builtins.exec": _Reduce(builtins.exec, touch),
        "builtins.eval": _Reduce(builtins.eval, touch),
        "subprocess.Popen": _Reduce(subprocess.Popen, ["touch", str(marker)]),
    }


@pytest.mark.parametrize("payload", ["os.system", "builtins.exec", "builtins.eval", "subprocess.Popen"])
@pytest.mark.parametrize("where", ["top", "inside_g_ema"])
def test_malicious_pickle_is_refused_and_leaves_no_trace(tmp_path, payload, where):
    marker = tmp_path / "pwned"
    evil = _payloads(marker)[payload]
    G = make_tiny_generator()
    if where == "top":
        path = write_official_pickle(tmp_path / "evil.pkl", G, tmp_path, extra={"evil": evil})
    else:
        G.evil_attribute = evil  # lands in G_ema's state, i.e. its __dict__
        path = write_official_pickle(tmp_path / "evil.pkl", G, tmp_path)
    with pytest.raises(GeneratorLoadError, match="refused") as info:
        load_generator(path)
    func = evil.func
    assert f"{func.__module__}.{func.__qualname__}" in str(info.value)  # names the refused global
    assert not marker.exists()


def test_refused_module_is_not_even_imported(tmp_path):
    marker = tmp_path / "imported"
    (tmp_path / "evil_side_effect_module.py").write_text(f"open({str(marker)!r}, 'w').close()\nvalue = 1\n")
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"\x80\x02cevil_side_effect_module\nvalue\n.")  # PROTO 2, GLOBAL module.value, STOP
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(GeneratorLoadError, match="evil_side_effect_module.value"):
            load_generator(path)
    finally:
        sys.path.remove(str(tmp_path))
    assert "evil_side_effect_module" not in sys.modules
    assert not marker.exists()


def test_unsupported_architecture_in_pickle_gets_clear_error(tmp_path):
    G = make_tiny_generator()
    kwargs = {**G.init_kwargs, "synthesis_kwargs": {**G.init_kwargs["synthesis_kwargs"], "architecture": "resnet"}}
    path = write_official_pickle(tmp_path / "resnet.pkl", G, tmp_path, init_kwargs=kwargs)
    with pytest.raises(GeneratorLoadError, match="resnet.*not supported"):
        load_generator(path)


def test_pickle_whose_weights_do_not_fit_its_config_names_the_tensor(tmp_path):
    G = make_tiny_generator(w_dim=16)
    kwargs = {**G.init_kwargs, "z_dim": 8}  # fc0 would take 8 inputs, the pickled weight takes 16
    path = write_official_pickle(tmp_path / "bad.pkl", G, tmp_path, init_kwargs=kwargs)
    with pytest.raises(GeneratorLoadError, match="'mapping.fc0.weight' has shape"):
        load_generator(path)


def test_pickle_without_g_ema_gets_clear_error(tmp_path):
    path = tmp_path / "not_a_snapshot.pkl"
    path.write_bytes(pickle.dumps({"results": [1, 2, 3]}))
    with pytest.raises(GeneratorLoadError, match="no 'G_ema'.*results"):
        load_generator(path)


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.999])
def test_truncated_pickle_gets_clear_error(ada_tiny_pickle, tmp_path, fraction):
    data = ada_tiny_pickle.read_bytes()
    path = tmp_path / "truncated.pkl"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(GeneratorLoadError, match="truncated or corrupt"):
        load_generator(path)


def test_pickle_with_every_kwarg_spelled_out_loads(tmp_path):
    # NVIDIA's converted pretrained pickles spell out every mapping/synthesis kwarg, including defaults.
    source = Generator(z_dim=8, c_dim=2, w_dim=8, img_resolution=8, img_channels=3,
                       mapping_kwargs=dict(num_layers=2, embed_features=None, layer_features=None,
                                           activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995),
                       synthesis_kwargs=dict(channel_base=64, channel_max=8, num_fp16_res=0, conv_clamp=None,
                                             architecture="skip", resample_filter=[1, 3, 3, 1], use_noise=True,
                                             activation="lrelu")).eval()
    G = load_generator(write_official_pickle(tmp_path / "snap.pkl", source, tmp_path))
    z, c = torch.randn(2, 8), torch.eye(2)
    with torch.no_grad():
        assert torch.equal(G(z, c), source(z, c))
