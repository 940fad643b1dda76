"""`ganinv info`, `ganinv generate` and `ganinv convert-pkl` on the official fixture, native and pickled."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from cli.common import parse_seeds
from official_pickles import write_official_pickle
from conftest import load_sg3_tiny, make_tiny_generator
from ganinv.generators import generator_identity, load_generator, read_generator_metadata, save_generator
from ganinv.utils.images import from_pil

runner = CliRunner()


@pytest.fixture(scope="module")
def fixture_files(ada_tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    return {"native": save_generator(ada_tiny, tmp / "ada_tiny.safetensors"),
            "pickle": write_official_pickle(tmp / "network-snapshot-000000.pkl", ada_tiny, tmp)}


@pytest.mark.parametrize("kind", ["native", "pickle"])
def test_info_reports_config_num_ws_parameters_and_identity(ada_tiny, fixture_files, kind):
    result = runner.invoke(app, ["info", str(fixture_files[kind]), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["num_ws"] == 8 and info["img_resolution"] == 32
    assert info["num_parameters"] == sum(p.numel() for p in ada_tiny.parameters())
    assert info["identity"] == generator_identity(ada_tiny)
    assert info["config"]["synthesis_kwargs"]["channel_base"] == 2048


@pytest.mark.parametrize("config, architecture", [("t32", "stylegan3-t"), ("r32", "stylegan3-r")])
def test_stylegan3_pickle_goes_through_info_generate_and_convert_pkl(tmp_path, config, architecture):
    G = load_sg3_tiny(config)
    pkl = write_official_pickle(tmp_path / "sg3.pkl", G, tmp_path, numpy1=True)
    result = runner.invoke(app, ["info", str(pkl), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["architecture"] == architecture and info["num_ws"] == 8
    assert info["identity"] == generator_identity(G)
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["generate", str(pkl), "--seeds", "3", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    z = torch.from_numpy(np.random.RandomState(3).randn(1, G.z_dim)).float()
    with torch.no_grad():
        expected = G(z, None)[0].clamp(-1, 1)
    assert (from_pil(Image.open(out)) - expected).abs().max() <= 1 / 127.5 + 1e-6
    result = runner.invoke(app, ["convert-pkl", str(pkl), str(tmp_path / "g.safetensors")])
    assert result.exit_code == 0, result.output
    assert read_generator_metadata(tmp_path / "g.safetensors")["family"] == "stylegan3"


def test_info_text_output_names_identity(ada_tiny, fixture_files):
    result = runner.invoke(app, ["info", str(fixture_files["native"])])
    assert result.exit_code == 0
    assert generator_identity(ada_tiny) in result.stdout and "num_ws" in result.stdout


@pytest.mark.parametrize("kind", ["native", "pickle"])
def test_generate_writes_a_grid_of_the_generators_images(ada_tiny, fixture_files, kind, tmp_path):
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["generate", str(fixture_files[kind]), "--seeds", "0-2,7", "--trunc", "0.7",
                                 "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    grid = from_pil(Image.open(out))
    assert grid.shape == (3, 64, 64)  # 4 images of 32 px, 2 per row
    z = torch.from_numpy(np.random.RandomState(7).randn(1, 64)).float()  # seeds as in the official generate.py
    with torch.no_grad():
        expected = ada_tiny(z, None, truncation_psi=0.7, noise_mode="const")[0].clamp(-1, 1)
    assert (grid[:, 32:, 32:] - expected).abs().max() <= 1 / 127.5 + 1e-6  # 8-bit quantisation


def test_generate_requires_class_idx_for_conditional_generator(tmp_path):
    path = save_generator(make_tiny_generator(c_dim=3), tmp_path / "cond.safetensors")
    result = runner.invoke(app, ["generate", str(path), "--seeds", "0,1", "--out", str(tmp_path / "a.png")])
    assert result.exit_code != 0 and "--class-idx" in result.output
    out = tmp_path / "b.png"
    result = runner.invoke(app, ["generate", str(path), "--seeds", "0,1", "--class-idx", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (32, 16)


def test_convert_pkl_writes_native_file_with_same_identity_and_provenance(ada_tiny, fixture_files, tmp_path):
    out = tmp_path / "converted.safetensors"
    result = runner.invoke(app, ["convert-pkl", str(fixture_files["pickle"]), str(out)])
    assert result.exit_code == 0, result.output
    assert generator_identity(load_generator(out)) == generator_identity(ada_tiny)
    metadata = read_generator_metadata(out)
    assert metadata["source"] == "network-snapshot-000000.pkl" and len(metadata["source_sha256"]) == 64


@pytest.mark.parametrize("command", ["info", "generate", "convert-pkl"])
def test_load_error_exits_2_with_one_line_message_and_no_traceback(tmp_path, command):
    bad = tmp_path / "broken.pkl"
    bad.write_bytes(b"\x80\x04 not really a pickle")
    args = [command, str(bad)] + ([str(tmp_path / "out.safetensors")] if command == "convert-pkl" else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 2  # a user error: the file, not the program, is at fault
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "broken.pkl" in result.stderr and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_unknown_model_name_gets_clear_error():
    result = runner.invoke(app, ["info", "no-such-model"])
    assert result.exit_code == 2 and "built-in" in result.stderr


@pytest.mark.parametrize("text, seeds", [("0-3", [0, 1, 2, 3]), ("1,5,9", [1, 5, 9]), ("0-1, 7", [0, 1, 7]),
                                         ("4", [4])])
def test_seed_syntax(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["a-b", "3-1", "1,,2", "-1"])
def test_bad_seed_syntax_is_refused(text):
    import typer

    with pytest.raises(typer.BadParameter):
        parse_seeds(text)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_generate_on_cuda_without_cuda_exits_2_with_one_line(fixture_files, tmp_path):
    result = runner.invoke(app, ["generate", str(fixture_files["native"]), "--seeds", "0", "--device", "cuda",
                                 "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ") and "no CUDA device" in result.stderr
    assert not (tmp_path / "grid.png").exists()


def test_generate_with_an_unknown_device_name_exits_2_naming_the_devices_it_takes(fixture_files, tmp_path):
    result = runner.invoke(app, ["generate", str(fixture_files["native"]), "--seeds", "0", "--device", "gpu",
                                 "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "'gpu' is not a torch device" in result.stderr and "cuda:N" in result.stderr
    assert not (tmp_path / "grid.png").exists()
