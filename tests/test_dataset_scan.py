"""Scanning a dataset: folders, list files, globs and buckets become a manifest of ids, content hashes and labels;
what cannot be used is set aside with a reason, never dropped."""

from __future__ import annotations

import hashlib

import fsspec
import pytest

from _image_files import write_bad_inputs, write_good_images
from storage.scan import scan_images


def test_folder_scan_is_recursive_sorted_and_hashes_content(tmp_path):
    write_good_images(tmp_path / "a", 2)
    write_good_images(tmp_path / "b" / "c", 1, start=5)
    (tmp_path / "README.txt").write_text("not an image")
    write_good_images(tmp_path / ".cache", 1, start=9)  # hidden folders are ignored
    scan = scan_images(str(tmp_path))
    ids = [item.image_id for item in scan.manifest.items]
    assert ids == ["a/good000.png", "a/good001.png", "b/c/good005.png"]
    assert scan.manifest.root == str(tmp_path)
    item = scan.manifest.items[2]
    assert item.source_sha256 == hashlib.sha256((tmp_path / "b/c/good005.png").read_bytes()).hexdigest()
    assert item.path == "b/c/good005.png" and scan.skipped == ()


def test_unreadable_files_and_duplicates_are_skipped_with_reasons(tmp_path):
    expected = write_bad_inputs(tmp_path)
    scan = scan_images(str(tmp_path))
    skipped = {s.path: s.reason for s in scan.skipped}
    want = {name: reason for name, (outcome, reason) in expected.items() if outcome == "skipped"}
    assert set(skipped) == set(want)
    for name, reason in want.items():
        assert skipped[name].startswith(reason)
    in_manifest = {item.image_id for item in scan.manifest.items}
    assert in_manifest | set(skipped) == set(expected)  # nothing lost
    assert not in_manifest & set(skipped)


def test_list_file_paths_are_relative_to_the_list(tmp_path):
    write_good_images(tmp_path / "imgs", 3)
    (tmp_path / "list.txt").write_text(f"# chosen images\nimgs/good002.png\n\n{tmp_path}/imgs/good000.png\n")
    scan = scan_images(str(tmp_path / "list.txt"))
    assert [item.image_id for item in scan.manifest.items] == ["imgs/good000.png", "imgs/good002.png"]


def test_glob_keeps_ids_relative_to_its_fixed_prefix(tmp_path):
    write_good_images(tmp_path / "x" / "day1", 2)
    write_good_images(tmp_path / "x" / "day2", 1, start=7)
    scan = scan_images(str(tmp_path / "x" / "day*" / "*.png"))
    assert [item.image_id for item in scan.manifest.items] == ["day1/good000.png", "day1/good001.png",
                                                                "day2/good007.png"]
    assert scan.manifest.root == str(tmp_path / "x")


def test_labels_csv_matches_by_id_name_or_stem(tmp_path):
    write_good_images(tmp_path / "imgs", 3)
    (tmp_path / "labels.csv").write_text("image_id,smiling,age\nimgs/good000.png,1,30\ngood001.png,0,\n"
                                         "good002,1,50\nmissing.png,1,1\n")
    scan = scan_images(str(tmp_path / "imgs"), labels=str(tmp_path / "labels.csv"))
    labels = [item.labels for item in scan.manifest.items]
    assert labels == [{}, {"smiling": 0.0}, {"smiling": 1.0, "age": 50.0}]  # ids are relative to imgs/
    assert scan.labels_unmatched == 2 and scan.label_names == ("age", "smiling")


def test_non_numeric_label_names_its_line(tmp_path):
    write_good_images(tmp_path / "imgs", 1)
    (tmp_path / "labels.csv").write_text("image_id,mood\ngood000.png,happy\n")
    with pytest.raises(ValueError, match=r"line 2, column 'mood': 'happy' is not a number"):
        scan_images(str(tmp_path / "imgs"), labels=str(tmp_path / "labels.csv"))


def test_empty_folder_says_what_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image files"):
        scan_images(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        scan_images(str(tmp_path / "nope"))


def test_bucket_prefix_scans_through_fsspec(tmp_path):
    fs = fsspec.filesystem("memory")
    for path in write_good_images(tmp_path, 2):
        fs.pipe(f"/bucket/faces/{path.name}", path.read_bytes())
    scan = scan_images("memory://bucket/faces")
    assert [item.image_id for item in scan.manifest.items] == ["good000.png", "good001.png"]
    root = scan.manifest.root
    assert root.startswith("memory://")  # workers open root/path with fsspec, protocol included
    with fsspec.open(f"{root}/{scan.manifest.items[1].path}", "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == scan.manifest.items[1].source_sha256
