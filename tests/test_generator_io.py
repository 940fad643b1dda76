"""The native generator format, generator identity, built-in names and load errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from conftest import make_tiny_generator
from official_pickles import write_official_pickle
from ganinv.generators import (
    GeneratorLoadError,
    generator_identity,
    load_generator,
    load_generator_and_identity,
    read_generator_metadata,
    save_generator,
)
from ganinv.generators import io as generator_io


def _same_outputs(G1, G2, *, c_dim: int = 0) -> bool:
    z = torch.randn(2, G1.z_dim, generator=torch.Generator().manual_seed(1))
    c = torch.eye(max(c_dim, 1))[:2, :c_dim] if c_dim else None
    with torch.no_grad():
        return torch.equal(G1(z, c, truncation_psi=0.6), G2(z, c, truncation_psi=0.6))


# ---------------------------------------------------------------------------------------------------- native

def test_native_roundtrip_keeps_outputs_config_and_identity(tmp_path):
    G = make_tiny_generator(c_dim=4, conv_clamp=None, mapping_layers=3)
    path = save_generator(G, tmp_path / "g.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]  # written via a temporary file, renamed
    loaded = load_generator(path)
    assert loaded.init_kwargs == G.init_kwargs
    assert generator_identity(loaded) == generator_identity(G)
    assert _same_outputs(G, loaded, c_dim=4)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_native_metadata_records_identity_config_and_provenance(tmp_path):
    G = make_tiny_generator()
    path = save_generator(G, tmp_path / "g.safetensors", source="ffhq.pkl",
                          extra_metadata={"source_sha256": "ab" * 32, "kimg": 5000})
    metadata = read_generator_metadata(path)
    assert metadata["identity"] == generator_identity(G)
    assert json.loads(metadata["init_kwargs"]) == json.loads(json.dumps(G.init_kwargs))
    assert metadata["source"] == "ffhq.pkl" and metadata["source_sha256"] == "ab" * 32
    assert json.loads(metadata["kimg"]) == 5000


def test_save_refuses_extra_metadata_that_would_overwrite_the_identity(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_generator(make_tiny_generator(), tmp_path / "g.safetensors", extra_metadata={"identity": "forged"})


def test_native_file_with_edited_weights_is_rejected(tmp_path):
    G = make_tiny_generator()
    path = save_generator(G, tmp_path / "g.safetensors")
    tensors = {k: v.clone() for k, v in G.state_dict().items()}
    tensors["mapping.fc0.bias"][0] += 1
    save_file(tensors, str(path), metadata=read_generator_metadata(path))
    with pytest.raises(GeneratorLoadError, match="do not match the identity"):
        load_generator(path)


def test_safetensors_without_generator_metadata_gets_clear_error(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file(make_tiny_generator().state_dict(), str(path))
    with pytest.raises(GeneratorLoadError, match="without ganinv generator metadata.*convert-pkl"):
        load_generator(path)


def test_load_moves_generator_to_the_requested_device(tmp_path):
    path = save_generator(make_tiny_generator(), tmp_path / "g.safetensors")
    G = load_generator(path, device="meta")
    assert all(t.device.type == "meta" for t in G.state_dict().values())


# -------------------------------------------------------------------------------------------------- identity

def test_identity_is_equal_for_equal_weights_and_config():
    assert generator_identity(make_tiny_generator(seed=3)) == generator_identity(make_tiny_generator(seed=3))


@pytest.mark.parametrize("key", ["mapping.fc0.weight", "mapping.w_avg", "synthesis.b4.conv1.noise_const",
                                 "synthesis.b16.torgb.bias"])
def test_identity_changes_when_one_value_changes_by_one_ulp(key):
    G = make_tiny_generator()
    before = generator_identity(G)
    value = G.state_dict()[key].view(-1)[:1]
    value.copy_(torch.nextafter(value, value + 1))
    assert generator_identity(G) != before


def test_identity_changes_with_config_even_for_the_same_weights():
    G1, G2 = make_tiny_generator(conv_clamp=256), make_tiny_generator(conv_clamp=None)
    G2.load_state_dict(G1.state_dict())
    assert generator_identity(G1) != generator_identity(G2)


def test_identity_ignores_mode_and_requires_grad():
    G = make_tiny_generator()
    before = generator_identity(G)
    G.train().requires_grad_(True)
    assert generator_identity(G) == before


def test_identity_is_stable_from_pickle_to_native_and_back(tmp_path):
    G = make_tiny_generator(resolution=8)
    from_pickle = load_generator(write_official_pickle(tmp_path / "snap.pkl", G, tmp_path, layout="sg3"))
    native = load_generator(save_generator(from_pickle, tmp_path / "g.safetensors"))
    assert generator_identity(G) == generator_identity(from_pickle) == generator_identity(native)


@pytest.mark.parametrize("kind", ["native", "pickle"])
def test_load_with_identity_hashes_the_weights_once(tmp_path, monkeypatch, kind):
    G = make_tiny_generator(resolution=8)
    path = (save_generator(G, tmp_path / "g.safetensors") if kind == "native"
            else write_official_pickle(tmp_path / "snap.pkl", G, tmp_path))
    hashed = []
    monkeypatch.setattr(generator_io, "generator_identity", lambda G: hashed.append(1) or generator_identity(G))
    loaded, identity = load_generator_and_identity(path, device="meta")
    assert identity == generator_identity(G) and len(hashed) == 1  # native: the verification hash is the identity
    assert all(t.device.type == "meta" for t in loaded.state_dict().values())


def test_identity_is_a_sha256_hex_digest():
    identity = generator_identity(make_tiny_generator())
    assert len(identity) == 64 and int(identity, 16) >= 0


# -------------------------------------------------------------------------------------------- names and errors

def test_builtin_name_loads_the_registered_file(tmp_path, monkeypatch):
    G = make_tiny_generator()
    path = save_generator(G, tmp_path / "generator.safetensors")
    monkeypatch.setitem(generator_io.BUILTIN_GENERATORS, "tiny-test", str(path))  # absolute path wins over the dir
    assert generator_identity(load_generator("tiny-test")) == generator_identity(G)


def test_missing_builtin_says_where_the_file_is_expected(monkeypatch):
    monkeypatch.setitem(generator_io.BUILTIN_GENERATORS, "absent-test", "assets/absent-test/generator.safetensors")
    with pytest.raises(GeneratorLoadError, match="'absent-test' is not present in this checkout.*"
                                                 "ganinv/assets/absent-test/generator.safetensors"):
        load_generator("absent-test")


def test_faces64_is_registered_as_a_builtin():
    assert generator_io.BUILTIN_GENERATORS["faces64"] == "assets/faces64/generator.safetensors"


def test_unknown_name_lists_the_builtins(tmp_path):
    with pytest.raises(GeneratorLoadError, match="neither an existing file nor a built-in name.*faces64"):
        load_generator("no-such-model")
    with pytest.raises(GeneratorLoadError, match="neither an existing file"):
        load_generator(tmp_path / "missing.pkl")


def test_directory_gets_clear_error(tmp_path):
    with pytest.raises(GeneratorLoadError, match="is a directory"):
        load_generator(tmp_path)


def test_empty_file_gets_clear_error(tmp_path):
    path = tmp_path / "empty.pkl"
    path.touch()
    with pytest.raises(GeneratorLoadError, match="empty.*fetch it again"):
        load_generator(path)


@pytest.mark.parametrize("content", [b"hello, I am a text file\n", b"\x89PNG\r\n\x1a\n" + bytes(64), b"{}"])
def test_non_generator_file_gets_clear_error(tmp_path, content):
    path = tmp_path / "model.pkl"
    path.write_bytes(content)
    with pytest.raises(GeneratorLoadError, match="neither a StyleGAN2-ADA network pickle nor a ganinv"):
        load_generator(path)


def test_torch_save_checkpoint_gets_clear_error(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(make_tiny_generator().state_dict(), path)
    with pytest.raises(GeneratorLoadError, match="zip archive"):
        load_generator(path)


@pytest.mark.parametrize("fraction", [0.001, 0.5, 0.99])
def test_truncated_native_file_gets_clear_error(tmp_path, fraction):
    path = save_generator(make_tiny_generator(), tmp_path / "g.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    with pytest.raises(GeneratorLoadError, match=str(path.name)):
        load_generator(path)


def test_load_error_messages_are_one_line(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(b"\x80\x04garbage\nwith\nnewlines")
    with pytest.raises(GeneratorLoadError) as info:
        load_generator(path)
    assert "\n" not in str(info.value)


def test_native_file_whose_header_length_starts_with_the_pickle_byte_loads(tmp_path):
    # A safetensors file starts with its header length (u64, little-endian): 128 + 256k bytes make its first byte
    # 0x80, pickle's PROTO opcode. The format is recognised as safetensors all the same.
    G = make_tiny_generator()
    for pad in range(256):
        path = save_generator(G, tmp_path / "g.safetensors", extra_metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    assert generator_identity(load_generator(path)) == generator_identity(G)
