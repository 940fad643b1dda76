"""`ganinv render STORE --what reconstructions|edits --out DIR` (issue 19, item 12): PNG files of stored codes at the
generator's resolution, equal to what the generator renders from those codes; a bad request exits 2 before any
generator is loaded and writes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from ganinv.directions.direction import Direction
from ganinv.utils.images import to_uint8
from runtime.edits import file_stem
from runtime.render_codes import RenderRequestError, png_names
from storage import LatentStore
from storage.edits import EditRun


def _pixels(G, ws: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        images = G.synthesis(torch.from_numpy(np.asarray(ws, np.float32)), noise_mode="const")
    return to_uint8(images).permute(0, 2, 3, 1).numpy()


def test_reconstructions_are_written_at_full_size_as_the_generator_renders_them(edit_world, tmp_path):
    store_path, _, G = edit_world
    result = CliRunner().invoke(app, ["render", store_path, "--what", "reconstructions", "--out",
                                      str(tmp_path / "png"), "--query", "a == 1", "--limit", "5", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    store = LatentStore.open(store_path)
    rows = np.flatnonzero(store.labels(["a"])["a"] == 1)[:5]
    files = sorted((tmp_path / "png").glob("*.png"))
    assert [f.name for f in files] == [f"{i}.png" for i in store.image_ids(rows)]
    assert "wrote 5 PNG files of 5 items (16 px)" in result.output
    expected = _pixels(G, store.ws(rows))
    for file, pixels in zip(files, expected):
        image = np.asarray(Image.open(file))
        assert image.shape == (G.img_resolution, G.img_resolution, 3)
        assert np.abs(image.astype(int) - pixels.astype(int)).max() <= 1  # PNG is lossless; 1: float rounding


def test_an_edit_runs_images_are_written_per_direction_and_strength(edit_store, edit_world, tmp_path):
    _, _, G = edit_world
    store = LatentStore.open(edit_store, "r+")
    direction = Direction(name="interfacegan-a|b", method="interfacegan", space="w",
                          vector=np.eye(store.layout.w_dim)[0], scale=1.0)
    run = EditRun.create(store, "night", item_indices=np.array([2, 7, 9]), directions=[direction],
                         strengths=[-1.0, 2.0], made_by={"flow": "test"}, batch_size=2)
    run.write(0, 2, run.edit(0, 2))  # the first batch rendered, the second still pending
    result = CliRunner().invoke(app, ["render", edit_store, "--what", "edits", "--run", "night", "--out",
                                      str(tmp_path / "png"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "png" / file_stem("interfacegan-a|b")
    ids = run.image_ids
    assert sorted(f.name for f in folder.glob("*.png")) == sorted(
        f"{ids[i]}_{s}.png" for i in (0, 1) for s in ("-1", "+2"))
    edited = run.edit(1, 2)[0]  # [direction, strength, num_ws, w_dim]: the store's ws plus strength x delta
    image = np.asarray(Image.open(folder / f"{ids[1]}_+2.png"))
    assert np.abs(image.astype(int) - _pixels(G, edited[0, 1:2])[0].astype(int)).max() <= 1


@pytest.mark.parametrize("args, message", [
    (["--what", "thumbnails"], "--what 'thumbnails': choose one of reconstructions, edits"),
    (["--what", "edits"], "--run is needed for --what edits"),
    (["--what", "edits", "--run", "nope"], "no edit run 'nope'"),
    (["--what", "reconstructions", "--ids", "face999"], "not in"),
    (["--what", "reconstructions", "--limit", "0"], "--limit 0"),
])
def test_a_bad_request_exits_2_before_loading_anything_and_writes_nothing(edit_world, tmp_path, monkeypatch, args,
                                                                          message):
    from runtime import models

    monkeypatch.setattr(models, "generator", lambda *a, **k: pytest.fail("a generator was loaded"))
    result = CliRunner().invoke(app, ["render", edit_world[0], "--out", str(tmp_path / "png"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "png").exists()


def test_png_names_keep_ids_apart():
    assert png_names(["a/b.jpg", "c.png"]) == ["a/b.png", "c.png"]
    assert png_names(["x.jpg", "x.png"]) == ["x.jpg.png", "x.png"]
    with pytest.raises(RenderRequestError, match="inside the output folder"):
        png_names(["../evil.png"])
