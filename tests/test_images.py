"""Image helpers: [-1, 1] tensors <-> 8-bit pixels and PIL, and image grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganinv.utils.images import (from_pil, make_image_grid, save_image_grid, strength_label, to_model_input, to_pil,
                                 to_uint8, with_column_labels)


def test_uint8_pixels_survive_from_pil_and_back():
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    image = from_pil(Image.fromarray(pixels))
    assert image.shape == (3, 5, 7) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    assert np.array_equal(np.asarray(to_pil(image)), pixels)


def test_every_uint8_value_survives_to_model_input_and_back():
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(2, 3, 16, 16)
    x = to_model_input(pixels)
    assert x.dtype == torch.float32 and x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), pixels)


def test_to_uint8_maps_range_ends_and_clamps():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).reshape(1, 5, 1)
    assert to_uint8(x).flatten().tolist() == [0, 0, 128, 255, 255]


def test_from_pil_converts_grayscale_and_rgba_to_rgb():
    assert from_pil(Image.new("L", (4, 3), 255)).shape == (3, 3, 4)
    assert torch.equal(from_pil(Image.new("RGBA", (2, 2), (255, 0, 0, 10)))[:, 0, 0], torch.tensor([1.0, -1, -1]))


@pytest.mark.parametrize("n, nrow, size", [(4, None, (8, 6)), (5, 2, (8, 9)), (3, 3, (12, 3))])
def test_grid_places_images_row_major(tmp_path, n, nrow, size):
    images = torch.linspace(-1, 1, n).reshape(n, 1, 1, 1).expand(n, 3, 3, 4)
    path = save_image_grid(images, tmp_path / "grid.png", nrow)
    grid = from_pil(Image.open(path))
    assert (grid.shape[2], grid.shape[1]) == size
    cols = size[0] // 4
    for i in range(n):
        row, col = divmod(i, cols)
        assert torch.equal(grid[:, 3 * row:3 * row + 3, 4 * col:4 * col + 4],
                           from_pil(to_pil(images[i])))


def test_grid_rejects_images_without_three_channels():
    with pytest.raises(AssertionError, match=r"\[N, 3, H, W\]"):
        make_image_grid(torch.zeros(2, 1, 4, 4))


def test_column_labels_sit_over_their_columns_and_leave_the_grid_as_it_was():
    grid = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 96, 3), dtype=np.uint8))
    labels = [strength_label(s) for s in (-3.0, 0.0, 1.5)]
    assert labels == ["-3", "0", "+1.5"]
    out = with_column_labels(grid, labels, height=14)
    assert out.size == (96, 46) and np.array_equal(np.asarray(out)[14:], np.asarray(grid))
    ink = np.asarray(out.convert("L"))[:14] < 128
    for k in range(3):  # each label inked within its own column, centred: none in the column's outer quarters
        column = ink[:, 32 * k:32 * (k + 1)]
        assert column.any() and not column[:, :4].any() and not column[:, -4:].any()
    with pytest.raises(ValueError, match="one label per equal column"):
        with_column_labels(grid, ["a", "b", "c", "d", "e"])
