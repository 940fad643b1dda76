"""Official StyleGAN3 network pickles (built here from the fixture's state dict, laid out as the official code writes
them) load into our StyleGAN3 generator without running any of their code, and convert to safetensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import SG3_CONFIGS, load_sg3_tiny, make_tiny_sg3_generator, sg3_tiny_reference
from official_pickles import write_official_pickle
from ganinv.errors import UserError
from ganinv.generators import (GeneratorLoadError, StyleGAN3Generator, UnsupportedGenerator, generator_identity,
                               load_generator, load_generator_and_identity, read_generator_metadata, save_generator)

TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=SG3_CONFIGS)
def sg3_pickle(request, tmp_path_factory):
    """(config name, path of an official-format snapshot whose G_ema is the fixture generator)."""
    tmp = tmp_path_factory.mktemp(f"sg3_{request.param}")
    G_ema = load_sg3_tiny(request.param)
    G = load_sg3_tiny(request.param)
    with torch.no_grad():
        G.synthesis.layers()[0].weight.add_(1)  # the non-EMA G: different weights
    return request.param, write_official_pickle(tmp / "network-snapshot-000000.pkl", G_ema, tmp, G=G, numpy1=True)


def test_official_sg3_pickle_reproduces_the_official_outputs(sg3_pickle):
    name, path = sg3_pickle
    G = load_generator(path)
    ref = sg3_tiny_reference(name)
    assert isinstance(G, StyleGAN3Generator) and G.architecture == {"t32": "stylegan3-t", "r32": "stylegan3-r"}[name]
    with torch.no_grad():
        errors = {
            "ws": (G.mapping(ref["z"], ref["c"]) - ref["ws"]).abs().max().item(),
            "img": (G.synthesis(ref["ws"]) - ref["img"]).abs().max().item(),
            "img_psi0.7": (G(ref["z"], ref["c"], truncation_psi=0.7) - ref["img_psi0.7"]).abs().max().item(),
            "img_ws_plus": (G.synthesis(ref["ws_plus"]) - ref["img_ws_plus"]).abs().max().item(),
            "img_transformed": (G.synthesis(ref["ws"], transform=ref["transform"])
                                - ref["img_transformed"]).abs().max().item(),
        }
    assert max(errors.values()) <= TOLERANCE, errors
    assert generator_identity(G) == generator_identity(load_sg3_tiny(name))  # G_ema, not G


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("numpy1", [True, False])
def test_any_protocol_and_either_numpy_spelling_loads_identically(tmp_path, protocol, numpy1):
    source = make_tiny_sg3_generator(radial=protocol % 2 == 1)
    path = write_official_pickle(tmp_path / "snap.pkl", source, tmp_path, protocol=protocol, numpy1=numpy1)
    data = path.read_bytes()
    # StyleGAN3 layers keep sizes as numpy arrays: numpy 1.x names its helpers numpy.core, numpy 2.x numpy._core
    assert (b"numpy.core.multiarray" in data) == numpy1 and (b"numpy._core.multiarray" in data) == (not numpy1)
    G = load_generator(path)
    z = torch.randn(3, source.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z, None), source(z, None))
    assert generator_identity(G) == generator_identity(source)


def test_sg3_pickle_converts_to_safetensors_keeping_family_identity_and_outputs(sg3_pickle, tmp_path):
    name, path = sg3_pickle
    G, identity = load_generator_and_identity(path)
    out = save_generator(G, tmp_path / "g.safetensors", source=path.name)
    assert read_generator_metadata(out)["family"] == "stylegan3"
    G2, identity2 = load_generator_and_identity(out)
    assert isinstance(G2, StyleGAN3Generator) and identity2 == identity
    ws = sg3_tiny_reference(name)["ws"]
    with torch.no_grad():
        assert torch.equal(G2.synthesis(ws), G.synthesis(ws))


class SuperresGenerator(nn.Module):
    """Stands in for an architecture ganinv does not implement (StyleGAN-XL's top level)."""

    def __init__(self):
        super().__init__()
        self.mapping = nn.Linear(2, 2)
        self.synthesis = nn.Linear(2, 2)


class Generator(nn.Module):  # named like the official class, built of unknown parts
    def __init__(self):
        super().__init__()
        self.mapping = nn.Linear(2, 2)
        self.synthesis = nn.Sequential(nn.Linear(2, 2))


@pytest.mark.parametrize("network, names", [(SuperresGenerator, "SuperresGenerator"),
                                            (Generator, "Generator built of .*Linear.*Sequential")])
def test_pickle_of_an_unsupported_architecture_is_refused_with_its_class_names(tmp_path, network, names):
    path = write_official_pickle(tmp_path / "xl.pkl", network(), tmp_path, init_kwargs={"z_dim": 2})
    with pytest.raises(UnsupportedGenerator, match=f"xl.pkl: 'G_ema' is a {names}") as info:
        load_generator(path)
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)


def test_numpy_object_array_in_a_pickle_is_refused_without_running_anything(tmp_path):
    path = write_official_pickle(tmp_path / "obj.pkl", make_tiny_sg3_generator(), tmp_path,
                                 extra={"labels": np.array([1, "a", None], dtype=object)})
    with pytest.raises(GeneratorLoadError, match="obj.pkl.*not plain numbers"):
        load_generator(path)


def test_numpy_ndarray_is_not_callable_from_a_pickle(tmp_path):
    # REDUCE numpy.ndarray((10**6, 10**6)) would allocate; the allow-list maps the name to an inert placeholder.
    path = tmp_path / "alloc.pkl"
    path.write_bytes(b"\x80\x02cnumpy\nndarray\nJ@B\x0f\x00J@B\x0f\x00\x86\x85R.")
    with pytest.raises(GeneratorLoadError, match="alloc.pkl.*numpy.ndarray may not be called"):
        load_generator(path)


def test_sg2_pickles_still_load_as_sg2(tiny_generator, tmp_path):
    path = write_official_pickle(tmp_path / "sg2.pkl", tiny_generator, tmp_path, numpy1=True)
    G = load_generator(path)
    assert G.family == "stylegan2" and generator_identity(G) == generator_identity(tiny_generator)
