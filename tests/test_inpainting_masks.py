"""Inpainting masks per image: rules (centre box, random boxes seeded by image id) and a folder of PNGs by id."""

import numpy as np
import pytest
import torch
from PIL import Image

from ganinv.inversion.masks import CenterBox, MaskFolder, RandomBoxes, mask_source_from_config, parse_mask_rule


def test_center_box_covers_the_asked_area_in_the_middle_of_every_image():
    masks = CenterBox(0.4).masks(["x", "y"], 64)
    assert masks.shape == (2, 1, 64, 64) and torch.equal(masks[0], masks[1])
    holes = 1 - masks[0, 0]
    assert abs(holes.mean().item() - 0.4) < 2 / 64
    rows, cols = holes.nonzero().T
    assert rows.min() + rows.max() == 63 and cols.min() + cols.max() == 63  # centred
    assert torch.equal(holes, holes.flip(0)) and torch.equal(holes, holes.T)


def test_random_boxes_depend_on_the_image_id_not_on_the_batch():
    rule = RandomBoxes(count=3, seed=5)
    batch = rule.masks(["a", "b", "c"], 32)
    assert torch.equal(batch[2], rule.masks(["c"], 32)[0])
    assert torch.equal(batch[0], rule.masks(["z", "a"], 32)[1])
    assert not torch.equal(batch[0], batch[1])
    assert not torch.equal(batch[0], RandomBoxes(count=3, seed=6).masks(["a"], 32)[0])
    assert ((batch == 0) | (batch == 1)).all() and (batch == 0).any(dim=(1, 2, 3)).all()
    assert (batch == 1).any(dim=(1, 2, 3)).all()


def test_random_box_sides_stay_inside_the_asked_range():
    rule = RandomBoxes(count=1, min_side=0.25, max_side=0.5)
    for image_id in map(str, range(20)):
        holes = 1 - rule.masks([image_id], 32)[0, 0]
        rows, cols = holes.nonzero().T
        for extent in (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1):
            assert 8 <= extent <= 16


def write_mask(path, holes_white: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(holes_white, 255, 0).astype(np.uint8)).save(path)


def test_folder_masks_are_found_by_image_id_and_resized_like_the_images(tmp_path):
    holes = np.zeros([64, 96], bool)  # wider than tall: the centred 64 px square is kept, as for images
    holes[16:48, 16:80] = True
    write_mask(tmp_path / "sub" / "face.png", holes)
    masks = MaskFolder(str(tmp_path)).masks(["sub/face.jpg"], 32)
    assert masks.shape == (1, 1, 32, 32)
    expected_holes = np.zeros([32, 32], bool)
    expected_holes[8:24, 0:32] = True  # columns 16..80 of 96 cover the whole centred square
    observed = masks[0, 0].numpy() == 1
    assert not (observed & expected_holes).any()  # no hole pixel is ever trusted
    assert observed[:7].all() and observed[25:].all()  # beyond the edge's ringing, the rest is observed


def test_folder_masks_with_black_holes(tmp_path):
    holes = np.zeros([16, 16], bool)
    holes[:8] = True
    write_mask(tmp_path / "a.png", ~holes)  # white = observed
    masks = MaskFolder(str(tmp_path), holes="black").masks(["a.png"], 16)
    assert torch.equal(masks[0, 0], torch.from_numpy(~holes).float())


def test_missing_or_escaping_folder_masks_are_named(tmp_path):
    folder = MaskFolder(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"no mask for image 'gone.jpg': expected .*gone\.png"):
        folder.masks(["gone.jpg"], 16)
    with pytest.raises(ValueError, match="does not name a file inside the mask folder"):
        folder.masks(["../secret.jpg"], 16)
    with pytest.raises(ValueError, match="holes must be 'white' or 'black'"):
        MaskFolder(str(tmp_path), holes="grey")


@pytest.mark.parametrize("source", [CenterBox(0.3), RandomBoxes(count=2, seed=9), MaskFolder("/data/masks", "black")])
def test_mask_source_config_round_trip(source):
    assert mask_source_from_config(source.to_config()) == source


def test_mask_rules_from_the_command_line():
    assert parse_mask_rule("center-box") == CenterBox(0.4)
    assert parse_mask_rule("center-box:0.25") == CenterBox(0.25)
    assert parse_mask_rule("random-boxes:5", seed=2) == RandomBoxes(count=5, seed=2)
    for bad, message in (("center-box:big", "mask rule 'center-box:big'"), ("center-box:1.5", "fraction in"),
                         ("stripes", "not understood")):
        with pytest.raises(ValueError, match=message):
            parse_mask_rule(bad)
