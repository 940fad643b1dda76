"""StyleGAN3 everywhere StyleGAN2 works (issue 17, "Done when"): an official-format StyleGAN3 pickle, built from the
fixture's state dict, goes through the CLI from `info` and `generate --translate --rotate` to invert, directions,
edits and the report, on real Prefect and Dask; edits' named layer ranges follow the generator's `ws_resolutions`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from _flow_helpers import FAST, prepare_store
from _image_files import write_good_images
from cli.app import app
from conftest import load_sg3_tiny, make_tiny_sg3_generator
from ganinv import edit
from ganinv.generate import generate_images
from ganinv.generators import save_generator
from ganinv.utils.images import from_pil
from official_pickles import write_official_pickle
from runtime.config import InvertConfig, RenderEditsConfig, StyleMixConfig
from storage import LatentStore
from storage.directions import write_direction
from storage.edits import EditRun

runner = CliRunner()


@pytest.fixture(scope="module")
def sg3_pickle(tmp_path_factory):
    """An official-format snapshot of the fixture's StyleGAN3-T generator (32 px, num_ws 8)."""
    tmp = tmp_path_factory.mktemp("sg3-e2e")
    return write_official_pickle(tmp / "network-snapshot-000000.pkl", load_sg3_tiny("t32"), tmp, numpy1=True)


def _run(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow
def test_official_stylegan3_pickle_loads_inverts_edits_and_reports_through_the_cli(prefect_harness, dask_cluster,
                                                                                    sg3_pickle, tmp_path):
    pkl, cluster = str(sg3_pickle), dask_cluster[0].scheduler_address
    assert json.loads(_run("info", pkl, "--json").stdout)["architecture"] == "stylegan3-t"
    write_good_images(tmp_path / "imgs", 4, size=32)
    store = str(tmp_path / "sg3.zarr")
    _run("invert", str(tmp_path / "imgs"), "--store", store, "--generator", pkl, "--steps", "3", "--loss", "mse",
         "--shard-size", "2", "--cluster", cluster)
    s = LatentStore.open(store)
    assert s.status_counts()["done"] == 4
    assert (s.attributes.generator.family, s.attributes.generator.architecture) == ("stylegan3", "stylegan3-t")
    assert "stylegan3-t" in _run("store-info", store).output
    _run("discover-directions", store, "--methods", "sefa", "--num-directions", "1", "--num-samples", "200")
    _run("render-edits", store, "--directions", "sefa-0", "--strengths=-1,0,1", "--layers", "coarse",
         "--run", "coarse", "--cluster", cluster)
    run = EditRun.open(s, "coarse")
    G = load_sg3_tiny("t32")
    delta = np.asarray(run.to_xarray()["delta"].values)[0]
    assert tuple(np.flatnonzero(np.abs(delta).sum(axis=1))) == edit.layer_ranges(G.num_ws, G.ws_resolutions)["coarse"]
    grid = np.asarray(Image.open(f"{store}.edits/coarse/sefa-0.png"))
    header = json.loads(Path(f"{store}.edits/coarse/index.json").read_text())["header_px"]  # the strengths' labels
    assert grid.shape == (header + 4 * 32, 3 * 32, 3)
    result = runner.invoke(app, ["report", store, "--reports-root", str(tmp_path / "reports"), "--run", "sg3",
                                 "--no-fid"])
    assert result.exit_code in (0, 1), result.output  # 1 only for regressions, and this is the first run
    body = json.loads((tmp_path / "reports" / "sg3" / "metrics.json").read_text())
    assert body["counts"]["done"] == 4 and body["provenance"]["generator"]["architecture"] == "stylegan3-t"
    assert "edit run coarse: sefa-0" in (tmp_path / "reports" / "sg3" / "index.html").read_text()


def test_generate_moves_a_stylegan3_input_grid_as_gen_images_does(sg3_pickle, tmp_path):
    out = tmp_path / "moved.png"
    _run("generate", str(sg3_pickle), "--seeds", "5", "--translate", "0.1,-0.2", "--rotate", "15", "--out", str(out),
         "--device", "cpu")
    expected = generate_images(load_sg3_tiny("t32"), [5], translate=(0.1, -0.2), rotate=15.0)[0].clamp(-1, 1)
    assert (from_pil(Image.open(out)) - expected).abs().max() <= 1 / 127.5 + 1e-6
    plain = generate_images(load_sg3_tiny("t32"), [5])[0]
    assert (plain - expected).abs().max() > 0.05  # the transform moved the picture
    result = runner.invoke(app, ["generate", str(sg3_pickle), "--translate", "0.1", "--out", str(out)])
    assert result.exit_code == 2 and "X,Y" in result.output


def test_generate_refuses_to_move_a_stylegan2_grid(tiny_generator_file, tmp_path):
    result = runner.invoke(app, ["generate", tiny_generator_file, "--rotate", "10", "--out", str(tmp_path / "a.png")])
    assert result.exit_code == 2 and "StyleGAN3" in result.output


def test_named_layer_ranges_of_edits_and_mixes_follow_the_generators_ws_resolutions(tmp_path):
    """num_ws 6: StyleGAN3's coarse rows are 0-3 (band limits 4, 4, 8, 8 px), StyleGAN2's rule would say 0-2."""
    from ganinv.directions.direction import Direction
    from runtime.edits import create_run
    from runtime.media import create_style_mix

    G = make_tiny_sg3_generator(num_layers=4)
    coarse = edit.layer_ranges(G.num_ws, G.ws_resolutions)["coarse"]
    assert coarse == (0, 1, 2, 3) != edit.layer_ranges(G.num_ws)["coarse"]
    generator = str(save_generator(G, tmp_path / "sg3.safetensors"))
    write_good_images(tmp_path / "imgs", 2)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, InvertConfig(inversion=FAST))
    from runtime.shard import run_shard

    run_shard(store.url, 0, generator=generator)
    store = LatentStore.open(store.url, "r+")
    write_direction(store, Direction(name="d", method="test", space="w", vector=np.ones(G.w_dim, np.float32) / G.w_dim ** 0.5),
                    made_by={"test": "a unit direction"})
    create_run(store.url, RenderEditsConfig(directions=("d",), layers="coarse", run="c"), run_id="test")
    delta = np.asarray(EditRun.open(LatentStore.open(store.url), "c").to_xarray()["delta"].values)[0]
    assert tuple(np.flatnonzero(np.abs(delta).sum(axis=1))) == coarse
    plan = create_style_mix(store.url, StyleMixConfig(content=("good000.png",), style=("good001.png",)),
                            run_id="test")
    assert plan.shape == (1, 1)
    attrs = LatentStore.open(store.url).result_groups("edits")["style-mix"]
    assert tuple(attrs["made_by"]["rows"]) == coarse
