"""The procedural-faces world: determinism, schema, attribute rates, visible attributes, the dataset writer and CLI."""

from __future__ import annotations

import csv
import math
import multiprocessing

import numpy as np
import pytest
from PIL import Image

from ganinv.datasets import procedural_faces as pf

N_RATES = 2000


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def _render_bytes_in_child(args: tuple[int, int]) -> bytes:
    return pf.render_item(*args)[0].tobytes()


def test_same_seed_and_index_render_identical_bytes_even_in_another_process():
    first, attrs = pf.render_item(3, 17)
    second, attrs2 = pf.render_item(3, 17)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        child = pool.map(_render_bytes_in_child, [(3, 17)])[0]
    assert first.tobytes() == second.tobytes() == child
    assert attrs == attrs2
    assert first.size == (64, 64) and first.mode == "RGB"


def test_golden_attributes_do_not_drift():
    # SeedSequence-based sampling is platform-independent; these values pin the world so datasets stay comparable
    assert pf.sample_attributes(0, 0) == {
        "smiling": 0, "eyeglasses": 1, "blond_hair": 1, "hat": 1, "eyes_open": 0, "skin_tone": 0.8331,
        "face_width": 0.832, "yaw": 0.459, "background_hue": 0.3805, "lighting": 0.8701}


def test_different_indices_and_seeds_give_different_faces():
    images, _ = pf.render_batch(0, range(8))
    flat = images.reshape(8, -1).astype(np.int16)
    for i in range(8):
        for j in range(i + 1, 8):
            assert np.abs(flat[i] - flat[j]).mean() > 5
    assert pf.render_item(1, 0)[0].tobytes() != pf.render_item(0, 0)[0].tobytes()


def test_render_batch_matches_render_item_and_attribute_order():
    images, attrs = pf.render_batch(5, [4, 2])
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8
    assert attrs.shape == (2, len(pf.ATTRIBUTES)) and attrs.dtype == np.float32
    image, truth = pf.render_item(5, 2)
    assert np.array_equal(images[1], np.asarray(image))
    assert np.allclose(attrs[1], [truth[name] for name in pf.ATTRIBUTE_NAMES])


def test_render_batch_gives_the_same_arrays_for_any_worker_count():
    serial_images, serial_attrs = pf.render_batch(3, range(11), size=16)
    for workers in (2, 3):
        images, attrs = pf.render_batch(3, range(11), size=16, workers=workers)
        assert np.array_equal(images, serial_images) and np.array_equal(attrs, serial_attrs)
    assert np.array_equal(pf.render_batch(3, [9, 2], size=16, workers=2)[0], serial_images[[9, 2]])
    assert pf.render_batch(3, [], size=16, workers=2)[0].shape == (0, 16, 16, 3)
    with pytest.raises(ValueError, match="workers"):
        pf.render_batch(3, range(2), workers=0)


def test_render_size_option_draws_at_other_resolutions():
    image, _ = pf.render_item(0, 1, size=32)
    assert image.size == (32, 32)


def _binomial_tolerance(p: float, n: int) -> float:
    return 4 * math.sqrt(p * (1 - p) / n)  # 4 sigma: a false alarm about once in 16,000 runs


def _sampled(n: int = N_RATES, version: int = 1) -> dict[str, np.ndarray]:
    rows = [pf.sample_attributes(11, i, version=version) for i in range(n)]
    return {name: np.array([r[name] for r in rows], dtype=np.float64) for name in pf.ATTRIBUTE_NAMES}


@pytest.mark.parametrize("version", sorted(pf.WORLDS))
def test_binary_marginal_rates_match_the_documented_ones(version):
    values = _sampled(version=version)
    for name, p in pf.world(version).binary_rates.items():
        assert abs(values[name].mean() - p) < _binomial_tolerance(p, N_RATES), name


@pytest.mark.parametrize("version", sorted(pf.WORLDS))
def test_glasses_are_deliberately_more_frequent_with_blond_hair(version):
    values, spec = _sampled(version=version), pf.world(version)
    blond = values["blond_hair"] == 1
    for mask, p in ((blond, spec.p_glasses_given_blond), (~blond, spec.p_glasses_given_not_blond)):
        rate = values["eyeglasses"][mask].mean()
        assert abs(rate - p) < _binomial_tolerance(p, int(mask.sum())), (rate, p)


def test_skin_tone_is_deliberately_lighter_with_blond_hair_and_other_continuous_are_uniform():
    values = _sampled()
    blond = values["blond_hair"] == 1
    # E[u^2] = 1/3 with std sqrt(4/45); E[u] = 1/2 with std sqrt(1/12)
    assert abs(values["skin_tone"][blond].mean() - 1 / 3) < 4 * math.sqrt(4 / 45 / blond.sum())
    assert abs(values["skin_tone"][~blond].mean() - 1 / 2) < 4 * math.sqrt(1 / 12 / (~blond).sum())
    for name in ("face_width", "yaw", "background_hue", "lighting"):
        lo, hi = pf.BY_NAME[name].range
        assert lo <= values[name].min() and values[name].max() <= hi
        assert abs(values[name].mean() - (lo + hi) / 2) < 4 * (hi - lo) * math.sqrt(1 / 12 / N_RATES), name


def _region_mask(attrs: dict, style: dict, region: str) -> np.ndarray:
    """Boolean [64, 64] mask of where an attribute should act, from the face geometry (64-px canvas)."""
    h = pf._head_geometry(pf.check_attributes(attrs), style, 64)
    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    if region.startswith("not_"):
        return ~_region_mask(attrs, style, region[4:])
    if region == "face":
        return ((xx - h.cx) / (0.9 * h.rx)) ** 2 + ((yy - h.cy) / (0.9 * h.ry)) ** 2 <= 1
    if region == "top_corners":
        return (yy < 8) & ((xx < 8) | (xx > 56))
    if region == "skin":  # the head, ears and neck
        head = ((xx - h.cx) / (1.35 * h.rx)) ** 2 + ((yy - h.cy) / (1.1 * h.ry)) ** 2 <= 1
        neck = (np.abs(xx - h.cx) < 0.6 * h.rx) & (yy > h.cy) & (yy < h.cy + 1.6 * h.ry)
        return head | neck
    y0, y1, x0, x1 = {
        "mouth": (h.cy + 0.2 * h.ry, h.cy + 0.75 * h.ry, h.cx - 0.9 * h.rx, h.cx + 0.9 * h.rx),
        "eyes": (h.cy - 0.45 * h.ry, h.cy + 0.25 * h.ry, h.cx - 1.15 * h.rx, h.cx + 1.15 * h.rx),
        "above_brows": (0, h.cy - 0.3 * h.ry, 0, 64),
    }[region]
    return (yy >= y0) & (yy <= y1) & (xx >= x0) & (xx <= x1)


# attribute -> (where its change concentrates, minimal share of the total change there)
_LOCALITY = {"smiling": ("mouth", 0.95), "eyes_open": ("eyes", 0.95), "eyeglasses": ("eyes", 0.95),
             "hat": ("above_brows", 0.95), "background_hue": ("not_face", 0.99), "skin_tone": ("skin", 0.95),
             "lighting": ("not_top_corners", 0.999), "blond_hair": ("not_top_corners", 0.999),
             "face_width": ("not_top_corners", 0.999), "yaw": ("not_top_corners", 0.999)}


@pytest.mark.parametrize("version", sorted(pf.WORLDS))
@pytest.mark.parametrize("attribute", pf.ATTRIBUTES, ids=lambda a: a.name)
def test_changing_one_attribute_visibly_changes_pixels_where_expected(attribute, version):
    region, share = _LOCALITY[attribute.name]
    for index in range(6):
        attrs, style = pf.sample_attributes(0, index, version=version), pf.sample_style(0, index)
        other = dict(attrs)
        lo, hi = attribute.range
        other[attribute.name] = (1 - attrs[attribute.name] if attribute.kind == "binary"
                                 else (lo if attrs[attribute.name] > (lo + hi) / 2 else hi))
        change = np.abs(_pixels(pf.render(attrs, style=style, version=version))
                        - _pixels(pf.render(other, style=style, version=version))).sum(-1)
        mask = _region_mask(attrs, style, region) | _region_mask(other, style, region)
        assert change[mask].sum() / change.sum() >= share, (attribute.name, index)
        # visible: on average at least 3 grey levels per channel over the region where it acts
        assert change[mask].mean() > 9.0, (attribute.name, index, change[mask].mean())


@pytest.mark.parametrize("version", sorted(pf.WORLDS))
def test_mirrored_face_equals_face_with_negated_yaw_and_lighting(version):
    # the classifier's mirror augmentation relies on this symmetry of the renderer
    attrs = dict(pf.sample_attributes(0, 2, version=version), eyeglasses=0)
    style = dict(pf.sample_style(0, 2), dx=0.0, hairline_tilt=0.0)
    mirrored = dict(attrs, yaw=-attrs["yaw"], lighting=-attrs["lighting"])
    a = _pixels(pf.render(attrs, style=style, version=version))[:, ::-1]
    b = _pixels(pf.render(mirrored, style=style, version=version))
    assert np.abs(a - b).mean() < 2.0


@pytest.mark.parametrize("bad, message", [
    ({"smiling": 1}, "missing"),
    ({"smiling": 0.5}, "smiling"),
    ({"yaw": 1.5}, "yaw"),
])
def test_invalid_attributes_raise_errors_naming_the_attribute(bad, message):
    attrs = pf.sample_attributes(0, 0)
    attrs = bad if message == "missing" else dict(attrs, **bad)
    with pytest.raises(ValueError, match=message):
        pf.render(attrs)


def test_write_dataset_writes_pngs_and_celeba_like_csv_that_round_trip(tmp_path):
    csv_path = pf.write_dataset(tmp_path, 6, seed=2, workers=1)
    csv_path = pf.write_dataset(tmp_path, 4, seed=2, workers=2, start=6)  # a second range merges into one CSV
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image_id", *pf.ATTRIBUTE_NAMES]
    assert [r["image_id"] for r in rows] == [f"{i:06d}.png" for i in range(10)]
    for i, row in enumerate(rows):
        truth = pf.sample_attributes(2, i)
        for a in pf.ATTRIBUTES:
            value = float(row[a.name])
            assert value == truth[a.name] and a.range[0] <= value <= a.range[1]
            if a.kind == "binary":
                assert row[a.name] in ("0", "1")
        stored = np.asarray(Image.open(tmp_path / "images" / row["image_id"]))
        assert np.array_equal(stored, np.asarray(pf.render_item(2, i)[0]))
    ids, values = pf.read_attributes_csv(csv_path)
    assert len(ids) == 10 and values.shape == (10, len(pf.ATTRIBUTES))


def test_cli_make_dataset_writes_n_pngs_and_the_csv(tmp_path):
    from typer.testing import CliRunner
    from cli.app import app

    result = CliRunner().invoke(app, ["make-dataset", str(tmp_path / "ds"), "--n", "5", "--seed", "1",
                                      "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "ds" / "images").iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert len((tmp_path / "ds" / "attributes.csv").read_text().splitlines()) == 6


def test_version_2_levels_sit_outside_the_gap_and_a_flip_mirrors_them():
    gap = pf.LEVEL_GAP
    for index in range(200):
        attrs, style = pf.sample_attributes(4, index, version=2), pf.sample_style(4, index)
        for name in pf.LEVELLED:
            level = pf.attribute_level(attrs, style, name)
            assert (level >= 0.5 + gap) if attrs[name] else (level <= 0.5 - gap), (index, name, level)
            flipped = pf.attribute_level(dict(attrs, **{name: 1 - attrs[name]}), style, name)
            assert flipped == pytest.approx(1 - level)


def test_golden_version_2_attributes_do_not_drift():
    # the same attribute stream as version 1; only the eyeglasses-blond probabilities differ (version 1 named, not
    # the default world: shipping world 2 makes SHIPPED_VERSION 2)
    assert pf.sample_attributes(0, 0, version=2) == pf.sample_attributes(0, 0, version=1)
    differs = [i for i in range(400) if pf.sample_attributes(0, i, version=2) != pf.sample_attributes(0, i, version=1)]
    assert 0 < len(differs) < 60  # only the faces whose eyeglasses draw falls between the two worlds' rates
    assert {k: round(v, 4) for k, v in pf.sample_style(0, 0).items() if k.endswith("_depth")} == {
        "smiling_depth": 0.6247, "eyes_open_depth": 0.121, "blond_hair_depth": 0.2031}


def _look(attrs: dict, style: dict, name: str) -> float:
    """How much of `name`'s look a version-2 face shows, read off its pixels: the hair's lightness; how far the
    mouth reaches lower in its middle third than at its sides (a frown lifts the middle, a grin opens below it);
    the open eyes' share of white, or minus the closed lids' droop (mean row of their dark pixels)."""
    image = _pixels(pf.render(attrs, style=style, version=2))
    mask = _region_mask(attrs, style, {"blond_hair": "above_brows", "smiling": "mouth", "eyes_open": "eyes"}[name])
    region = image[mask]
    if name == "blond_hair":
        return region.mean()
    if name == "smiling":
        skin = np.median(region, axis=0)
        rows, cols = np.nonzero(mask & (np.abs(image - skin).sum(-1) > 60))  # the mouth's drawn pixels
        if attrs["smiling"]:
            return len(rows)
        middle = np.abs(cols - cols.mean()) < (cols.max() - cols.min()) / 6
        return rows[middle].mean() - rows[~middle].mean()
    if attrs["eyes_open"]:
        return (region.min(-1) > 200).mean()
    return -np.nonzero(mask & (image.sum(-1) < 200))[0].mean()


@pytest.mark.parametrize("name", pf.LEVELLED)
@pytest.mark.parametrize("index", [5, 7])
def test_version_2_looks_change_monotonically_with_the_level(name, index):
    # a hatless, glasses-free face seen from the front, so nothing covers the feature
    base = dict(pf.sample_attributes(0, index, version=2), hat=0, eyeglasses=0, yaw=0.0, lighting=0.0)
    sides = []
    for value, depths in ((0, (1.0, 0.5, 0.0)), (1, (0.0, 0.5, 1.0))):  # level 0 ... 0.35 | 0.65 ... 1
        style = pf.sample_style(0, index)
        sides.append([_look(dict(base, **{name: value}), dict(style, **{f"{name}_depth": d}), name) for d in depths])
    for looks in sides:
        assert looks[0] < looks[1] < looks[2], (name, sides)
    if name == "blond_hair":  # one unit on both sides: lighter all the way
        assert sides[0][2] < sides[1][0], sides


@pytest.mark.parametrize("spec, parsed", [("procedural:5:3", (5, 3, None)), ("procedural:5:3:v2", (5, 3, 2)),
                                          ("procedural:1:0:v1", (1, 0, 1))])
def test_procedural_specs_name_count_seed_and_version(spec, parsed):
    assert pf.parse_procedural_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["procedural:5", "procedural:x:3", "procedural:5:3:2", "procedural:5:3:v9",
                                  "procedural:0:3", "procedural:5:3:v2:1"])
def test_malformed_procedural_specs_are_refused_naming_the_form(spec):
    with pytest.raises(ValueError, match="procedural:N:SEED"):
        pf.parse_procedural_spec(spec)


def test_a_version_2_dataset_on_disk_matches_the_renderer(tmp_path):
    pf.write_dataset(tmp_path, 3, seed=2, workers=1, version=2)
    images, attrs = pf.render_batch(2, range(3), version=2)
    for i in range(3):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "images" / pf.image_id(i))), images[i])
    assert not np.array_equal(images, pf.render_batch(2, range(3), version=1)[0])
