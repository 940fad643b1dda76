"""The decode policy: every file Pillow reads becomes [3, R, R] in [-1, 1] by one documented rule, or a clear error."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import torch
from PIL import Image

from ganinv.datasets.folder import DecodePolicy, ImageDecodeError, decode_image
from ganinv.utils.images import from_pil
from ganinv.utils.seeds import seed_from_id
from _image_files import smooth_image, write_bad_inputs, write_png

POLICY = DecodePolicy(resolution=16)


def test_square_image_at_the_resolution_is_taken_as_is(tmp_path):
    pixels = smooth_image(0, 16)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    assert torch.equal(decode_image(tmp_path / "a.png", POLICY), from_pil(Image.fromarray(pixels)))


def test_wide_image_is_center_cropped_then_resized(tmp_path):
    pixels = np.zeros((32, 96, 3), np.uint8)
    pixels[:, 32:64] = 255  # the centred square is white; the sides (cropped away) are black
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    x = decode_image(tmp_path / "wide.png", POLICY)
    assert x.shape == (3, 16, 16) and torch.equal(x, torch.ones_like(x))


def test_downscaling_is_antialiased_lanczos(tmp_path):
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes average to mid-grey; point sampling would give black or white
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    x = decode_image(tmp_path / "stripes.png", POLICY)
    assert x.abs().max() < 0.1


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    gray = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    write_png(tmp_path / "g16.png", gray, bit_depth=16)
    x = decode_image(tmp_path / "g16.png", POLICY)
    expected = np.rint(gray / 257.0)
    assert np.array_equal(((x[0] + 1) * 127.5).round().numpy(), expected)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    rgb = (smooth_image(3, 16).astype(np.uint16) * 257)
    write_png(tmp_path / "rgb16.png", rgb, bit_depth=16)
    assert torch.equal(decode_image(tmp_path / "rgb16.png", POLICY), from_pil(Image.fromarray(smooth_image(3, 16))))


def test_transparent_pixels_are_composited_on_the_background(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255       # red everywhere, but ...
    rgba[:8, :, 3] = 0       # ... transparent in the top half and
    rgba[8:, :, 3] = 255     # opaque in the bottom half
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    x = decode_image(tmp_path / "rgba.png", POLICY)
    assert torch.equal(x[:, :8], torch.ones(3, 8, 16))                                     # white
    assert torch.equal(x[:, 8:], torch.tensor([1.0, -1, -1]).reshape(3, 1, 1).expand(3, 8, 16))  # red
    black = decode_image(tmp_path / "rgba.png", DecodePolicy(resolution=16, background=(0, 0, 0)))
    assert torch.equal(black[:, :8], -torch.ones(3, 8, 16))


def test_grayscale_is_replicated_to_rgb(tmp_path):
    Image.fromarray(smooth_image(1, 16)[..., 0]).save(tmp_path / "l.png")
    x = decode_image(tmp_path / "l.png", POLICY)
    assert x.shape == (3, 16, 16) and torch.equal(x[0], x[2])


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((16, 32, 3), np.uint8)
    pixels[:, :16] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the white half ends up on top
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    x = decode_image(tmp_path / "rotated.jpg", DecodePolicy(resolution=16))
    # after rotation the image is 16 wide x 32 tall; the centred square straddles the white/black boundary
    assert x[:, :4].mean() > 0.9 and x[:, -4:].mean() < -0.9


@pytest.mark.parametrize("policy_kw, size, ok", [({}, (2, 40), True), ({}, (1, 40), False),
                                                 ({"max_upscale": 1.0}, (15, 40), False)])
def test_short_side_must_allow_at_most_max_upscale(tmp_path, policy_kw, size, ok):
    Image.new("RGB", size, (10, 20, 30)).save(tmp_path / "s.png")
    policy = DecodePolicy(resolution=16, **policy_kw)
    if ok:
        assert decode_image(tmp_path / "s.png", policy).shape == (3, 16, 16)
    else:
        with pytest.raises(ImageDecodeError, match="too small"):
            decode_image(tmp_path / "s.png", policy)


def test_every_bad_input_gets_its_reason_and_the_good_ones_decode(tmp_path):
    expected = write_bad_inputs(tmp_path)
    for name, (outcome, reason) in expected.items():
        if outcome == "done":
            assert decode_image(tmp_path / name, POLICY).shape == (3, 16, 16), name
        elif name != "whole_copy.png":
            with pytest.raises(ImageDecodeError) as info:
                decode_image(tmp_path / name, POLICY)
            assert info.value.reason == reason, (name, str(info.value))
            assert name in str(info.value)


def test_header_size_limit_is_checked_before_decoding(tmp_path):
    write_png(tmp_path / "big.png", smooth_image(0, 16), header_size=(4000, 4000))  # 16 Mpx claimed, 16x16 stored
    with pytest.raises(ImageDecodeError, match="max_pixels=1,000,000"):
        decode_image(tmp_path / "big.png", DecodePolicy(resolution=16, max_pixels=1_000_000))


def test_decodes_from_an_open_file_and_names_it(tmp_path):
    Image.fromarray(smooth_image(2, 16)).save(tmp_path / "a.png")
    with open(tmp_path / "a.png", "rb") as f:
        assert decode_image(f, POLICY).shape == (3, 16, 16)
    with pytest.raises(ImageDecodeError, match=r"^bucket/x.png: not an image"):
        decode_image(io.BytesIO(b"hello"), POLICY, name="bucket/x.png")


def test_seed_from_id_is_stable_and_distinct():
    assert seed_from_id("images/000001.png") == seed_from_id("images/000001.png")
    assert seed_from_id("a") != seed_from_id("b") and seed_from_id("a") != seed_from_id("a", base=1)
    assert 0 <= seed_from_id("a") < 2 ** 63
    # the documented rule, written out: changing it would re-seed (and so change) every item of every store
    assert seed_from_id("a") == int.from_bytes(hashlib.sha256(b"0:a").digest()[:8], "little") >> 1
