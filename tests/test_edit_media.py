"""Morph and style-mixing pictures: ws batches from ganinv.edit, rendered, written as GIF / grids."""

import numpy as np
import pytest
import torch
from PIL import Image

from ganinv import edit
from ganinv.edit_media import morph_grid, save_gif, style_mix_figure
from ganinv.utils.images import to_uint8


def flat(colours):
    """`[N, 3, 4, 4]` images of one grey level each, from values in [-1, 1]."""
    return torch.tensor(colours, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()


def test_gif_plays_the_frames_forward_then_back_and_loops(tmp_path):
    frames = flat([-1.0, 0.0, 1.0])
    path = save_gif(frames, tmp_path / "morph.gif", fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 4 and gif.info["loop"] == 0 and gif.info["duration"] == 100
        greys = []
        for k in range(gif.n_frames):
            gif.seek(k)
            greys.append(int(np.asarray(gif.convert("L"))[0, 0]))
    assert greys == [int(v) for v in to_uint8(flat([-1.0, 0.0, 1.0, 0.0]))[:, 0, 0, 0]]
    with Image.open(save_gif(frames, tmp_path / "once.gif", boomerang=False)) as gif:
        assert gif.n_frames == 3


def test_morph_grid_has_a_row_per_pair_and_a_column_per_frame(tiny_generator):
    G = tiny_generator
    with torch.no_grad():
        ws = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0)), None)
        path = edit.interpolate(ws[:2], ws[2:], 5)  # [2, 5, num_ws, w_dim]
        frames = G.synthesis(path.flatten(0, 1), noise_mode="const").unflatten(0, (2, 5))
        ends = G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(frames[:, 0], ends[:2], rtol=1e-4, atol=1e-4)  # the morph starts at item a ...
    torch.testing.assert_close(frames[:, -1], ends[2:], rtol=1e-4, atol=1e-4)  # ... and ends at item b
    grid = morph_grid(frames)
    assert grid.size == (5 * 16, 2 * 16)
    assert np.array_equal(np.asarray(grid)[16:, 64:], to_uint8(frames[1, 4]).permute(1, 2, 0).numpy())


def test_style_mix_figure_puts_styles_on_top_and_contents_on_the_left():
    content, style = flat([-1.0, -0.5]), flat([0.5, 0.8, 1.0])
    mixed = (content[:, None] + style[None]) / 2  # any [2, 3, ...] stack
    pixels = np.asarray(style_mix_figure(content, style, mixed))[::4, ::4, 0]  # one value per 4 px cell
    assert pixels.shape == (3, 4) and pixels[0, 0] == 255
    assert list(pixels[0, 1:]) == list(to_uint8(style)[:, 0, 0, 0].numpy())
    assert list(pixels[1:, 0]) == list(to_uint8(content)[:, 0, 0, 0].numpy())
    assert pixels[2, 3] == to_uint8(mixed[1, 2])[0, 0, 0]
    with pytest.raises(ValueError, match="mixed must be"):
        style_mix_figure(content, style, mixed[:, :2])



def test_comparison_figure_has_a_titled_column_per_entry_and_a_row_per_image(tmp_path):
    from ganinv.edit_media import save_comparison_figure

    columns = {"observed": flat([-1.0, 0.0]), "restored": flat([0.5, 0.5]), "truth": flat([1.0, 1.0])}
    path = save_comparison_figure(columns, tmp_path / "figs" / "restoration.png", title="inpaint")
    with Image.open(path) as figure:
        width, height = figure.size
    assert width > height > 0  # 3 columns, 2 rows
    with pytest.raises(ValueError, match="same number of images"):
        save_comparison_figure({"a": flat([0.0]), "b": flat([0.0, 1.0])}, tmp_path / "bad.png")
