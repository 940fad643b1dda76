"""`ganinv render-morphs` and `ganinv style-mix` (issue 20): the flows on real Prefect and Dask over the session's
tiny edit store, the codes they keep as edit runs, the pictures beside the store, and the report's galleries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from ganinv import edit
from ganinv.utils.images import to_uint8
from runtime.config import ExecutionOptions, MorphConfig, StyleMixConfig
from storage import LatentStore, arrays, text
from storage.edits import EditRequestError, EditRunExistsError
from storage.media import read_ws

runner = CliRunner()


@pytest.fixture
def store(edit_store):
    return edit_store


def test_morphs_keep_their_codes_as_an_edit_run_and_draw_a_grid_and_gifs(prefect_harness, dask_cluster, store,
                                                                          edit_world):
    from flows.media import render_morphs

    G = edit_world[2]
    on = ExecutionOptions(cluster=dask_cluster[0].scheduler_address)
    config = MorphConfig(pairs=(("face000", "face001"), ("face002", "face000")), frames=5, gif=True)
    summary = render_morphs(store, config, on)
    assert summary.plan.created and summary.plan.shape == (2, 5)
    assert summary.files == ("morphs.png", "face000__face001.gif", "face002__face000.gif")
    s = LatentStore.open(store)
    ws = read_ws(s, "morphs")
    rows = [0, 1, 2, 0]
    expected = edit.interpolate(s.ws(rows[0::2]), s.ws(rows[1::2]), 5)
    assert np.array_equal(ws, expected) and np.array_equal(ws[:, 0], s.ws([0, 2]))
    attrs = s.result_groups("edits")["morphs"]
    assert attrs["made_by"]["kind"] == "morph" and attrs["made_by"]["pairs"] == [["face000", "face001"],
                                                                                  ["face002", "face000"]]
    for name in ("pair_index", "pair_id", "ws"):  # every array checksummed, ids in the store's portable text
        assert arrays.has_checksum(s.array(f"edits/morphs/{name}")), name
    ids = s.array("edits/morphs/pair_id")[...]
    assert text.decode(ids.reshape(-1, ids.shape[-1])).reshape(2, 2).tolist() == [["face000", "face001"],
                                                                                   ["face002", "face000"]]
    folder = f"{store}.edits/morphs"
    grid = np.asarray(Image.open(f"{folder}/morphs.png"))
    with torch.no_grad():
        first_row = to_uint8(G.synthesis(torch.from_numpy(ws[0]), noise_mode="const")).permute(2, 0, 3, 1)
    assert grid.shape == (2 * 16, 5 * 16, 3)
    assert np.abs(grid[:16].astype(int) - first_row.reshape(16, 5 * 16, 3).numpy()).max() <= 1
    gif = Image.open(f"{folder}/face000__face001.gif")
    assert gif.n_frames == 5 + 3  # forward, then back without repeating the ends
    index = json.loads(open(f"{folder}/index.json").read())
    assert index["grids"] == {"morph": "morphs.png"}
    again = render_morphs(store, config, on)
    assert not again.plan.created  # the same content: the run is reused
    with pytest.raises(EditRunExistsError, match="other content"):
        render_morphs(store, MorphConfig(pairs=(("face003", "face004"),)), on)
    with pytest.raises(EditRequestError, match="num_steps must be >= 2"):
        render_morphs(store, MorphConfig(pairs=(("face003", "face004"),), frames=1, run="one"), on)


def test_style_mix_takes_the_chosen_layers_from_the_style_items_and_draws_the_figure(prefect_harness, dask_cluster,
                                                                                     store):
    result = runner.invoke(app, ["style-mix", store, "--content", "face000,face001", "--style", "face002,face003,"
                                 "face004", "--layers", "coarse", "--cluster", dask_cluster[0].scheduler_address])
    assert result.exit_code == 0, result.output
    assert "style-mix run 'style-mix': 2 x 3 images" in result.output
    s = LatentStore.open(store)
    ws, all_ws = read_ws(s, "style-mix"), s.ws()
    coarse = list(edit.layer_ranges(s.layout.num_ws)["coarse"])
    fine = [k for k in range(s.layout.num_ws) if k not in coarse]
    assert np.array_equal(ws[1, 2][coarse], all_ws[4][coarse]) and np.array_equal(ws[1, 2][fine], all_ws[1][fine])
    assert s.result_groups("edits")["style-mix"]["made_by"]["rows"] == coarse
    assert list(text.decode(s.array("edits/style-mix/style_id")[...])) == ["face002", "face003", "face004"]
    assert all(arrays.has_checksum(s.array(f"edits/style-mix/{name}"))
               for name in ("content_index", "content_id", "style_index", "style_id", "ws"))
    figure = Image.open(f"{store}.edits/style-mix/style-mix.png")
    assert figure.size == (4 * 16, 3 * 16)  # a blank corner, 3 style columns; 2 content rows below the styles
    from report import ReportConfig, build_report

    report = build_report(store, f"{store}.reports", ReportConfig(run="r", fid=False))
    assert "edit run style-mix: style-mix" in report.path.read_text()  # shown as a gallery


def test_morph_and_mix_commands_name_bad_pairs_and_unknown_items(prefect_harness, dask_cluster, store):
    result = runner.invoke(app, ["render-morphs", store, "--pairs", "face000-face001"])
    assert result.exit_code == 2 and "IMAGE_ID:IMAGE_ID" in " ".join(result.output.split())
    result = runner.invoke(app, ["style-mix", store, "--content", "nobody", "--style", "face001",
                                 "--cluster", dask_cluster[0].scheduler_address])
    assert result.exit_code == 2 and "['nobody'] are not in" in result.output
