"""Scanning a dataset: folders, list files, globs and buckets become a manifest of ids, content hashes and labels;
what cannot be used is set aside with a reason, never dropped."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest

from _image_files import write_bad_inputs, write_good_images
from storage.labels import LabelsError, read_labels
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


# ---------------------------------------------------------------- hostile inputs (issue 24 items 6 and 7)
def _scan_in_subprocess(source: str, timeout: float = 60) -> subprocess.CompletedProcess:
    code = ("import json, sys; from storage.scan import scan_images; "
            f"s = scan_images({source!r}); print(json.dumps(s.summary()))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).parents[1])


def test_special_files_with_image_names_are_refused_with_a_reason_never_opened(tmp_path):
    """A FIFO named x.png hung the scan (and SIGTERM could not stop it); a device never ends."""
    write_good_images(tmp_path, 2)
    os.mkfifo(tmp_path / "x.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.png"))
    try:
        started = time.monotonic()
        result = _scan_in_subprocess(str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 30
    finally:
        sock.close()
    summary = json.loads(result.stdout)
    assert summary["items"] == 2
    reasons = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert reasons["x.png"].startswith("not a regular file") and "FIFO" in reasons["x.png"]
    assert "character device" in reasons["zero.png"] and "socket" in reasons["s.png"]
    (tmp_path / "list.txt").write_text("x.png\ngood000.png\n")
    listed = scan_images(str(tmp_path / "list.txt"))
    assert [s.path for s in listed.skipped] == ["x.png"] and len(listed.manifest) == 1


def test_a_worker_never_opens_a_fifo_put_where_an_image_was(tmp_path):
    from ganinv.datasets.folder import DecodePolicy, ImageDecodeError
    from runtime.shard import read_image

    os.mkfifo(tmp_path / "x.png")
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        read_image(str(tmp_path / "x.png"), DecodePolicy(resolution=16), "x.png", None)


def test_absolute_paths_in_a_list_file_keep_their_identity(tmp_path):
    """An absolute path outside the list's folder lost its '/' and could take a relative entry's id."""
    inside, outside = tmp_path / "lists", tmp_path / "elsewhere"
    write_good_images(inside / outside.relative_to("/"), 1)  # a relative path that spells the absolute one
    write_good_images(outside, 1, start=1)
    rel = outside.relative_to("/") / "good000.png"
    (inside / "list.txt").write_text(f"{rel}\n{outside}/good001.png\n")
    scan = scan_images(str(inside / "list.txt"))
    ids = [item.image_id for item in scan.manifest.items]
    assert ids == [f"{outside}/good001.png", str(rel)]
    assert scan.manifest.items[0].path == f"{outside}/good001.png"


@pytest.mark.parametrize("content, match", [
    ("image_id,smiling\na.png,1\nb.png,0\na.png,1\n", r"'a.png' on lines \[2, 4\]"),
    ("image_id,smiling,age,smiling\na.png,1,2,0\n", r"duplicate column names \['smiling'\]"),
    ("image_id,smiling\na.png,inf\n", r"line 2, column 'smiling': 'inf' is not a finite number"),
    ("image_id,smiling\na.png,nan\n", r"'nan' is not a finite number"),
    ("image_id,smiling\na.png,1,7\n", r"line 2: 3 cells, the header has 2"),
    ("image_id,smiling\n,1\n", r"line 2: the first cell"),
])
def test_bad_labels_are_errors_that_name_what_is_wrong(tmp_path, content, match):
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(LabelsError, match=match):
        read_labels(str(tmp_path / "labels.csv"))


def test_labels_in_utf16_with_a_byte_order_mark_are_read_and_other_encodings_named(tmp_path):
    (tmp_path / "utf16.csv").write_text("image_id,smiling\ncafé.png,1\n", encoding="utf-16")
    assert read_labels(str(tmp_path / "utf16.csv")) == {"café.png": {"smiling": 1.0}}
    (tmp_path / "bom8.csv").write_text("image_id,smiling\na.png,0\n", encoding="utf-8-sig")
    assert read_labels(str(tmp_path / "bom8.csv")) == {"a.png": {"smiling": 0.0}}
    (tmp_path / "latin1.csv").write_bytes("image_id,smiling\ncafé.png,1\n".encode("latin-1"))
    with pytest.raises(LabelsError, match="not UTF-8 text .*save it as UTF-8"):
        read_labels(str(tmp_path / "latin1.csv"))
    (tmp_path / "utf16-no-bom.csv").write_bytes("image_id,smiling\na.png,1\n".encode("utf-16-le"))
    with pytest.raises(LabelsError, match="NUL characters"):
        read_labels(str(tmp_path / "utf16-no-bom.csv"))
    with pytest.raises(LabelsError, match="cannot read it"):
        read_labels(str(tmp_path / "missing.csv"))
