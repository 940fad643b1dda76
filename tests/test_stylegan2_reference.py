"""Our generator against outputs computed by the official StyleGAN2-ADA code (tests/fixtures/stylegan2_ada_tiny)."""

import pytest
import torch

from conftest import ada_tiny_state_dict

TOLERANCE = 1e-4


def test_state_dict_keys_match_official(ada_tiny):
    assert set(ada_tiny.state_dict()) == set(ada_tiny_state_dict())
    for key, value in ada_tiny_state_dict().items():
        assert ada_tiny.state_dict()[key].shape == value.shape, key


def test_num_ws_matches_official(ada_tiny):
    assert ada_tiny.num_ws == 8


@pytest.mark.parametrize("name, kwargs", [
    ("ws", {}),
    ("ws_psi0.7", dict(truncation_psi=0.7)),
    ("ws_psi0.5_cutoff4", dict(truncation_psi=0.5, truncation_cutoff=4)),
])
def test_mapping_reproduces_official(ada_tiny, ada_tiny_reference, name, kwargs):
    ref = ada_tiny_reference
    with torch.no_grad():
        ws = ada_tiny.mapping(ref["z"], ref["c"], **kwargs)
    assert (ws - ref[name]).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("name, ws_name, kwargs", [
    ("img_const", "ws", dict(noise_mode="const")),
    ("img_none", "ws", dict(noise_mode="none")),
    ("img_psi0.7_const", "ws_psi0.7", dict(noise_mode="const")),
    ("img_fused_off_const", "ws", dict(noise_mode="const", fused_modconv=False)),
    ("img_ws_plus_const", "ws_plus", dict(noise_mode="const")),
])
def test_synthesis_reproduces_official(ada_tiny, ada_tiny_reference, name, ws_name, kwargs):
    ref = ada_tiny_reference
    with torch.no_grad():
        img = ada_tiny.synthesis(ref[ws_name], **kwargs)
    assert img.shape == ref[name].shape
    assert (img - ref[name]).abs().max().item() <= TOLERANCE


def test_fused_and_unfused_paths_agree(ada_tiny, ada_tiny_reference):
    ws = ada_tiny_reference["ws_plus"]
    with torch.no_grad():
        fused = ada_tiny.synthesis(ws, fused_modconv=True)
        unfused = ada_tiny.synthesis(ws, fused_modconv=False)
    assert (fused - unfused).abs().max().item() <= TOLERANCE
