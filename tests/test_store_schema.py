"""Schema v1: manifests and their hash, root attributes round trip, input validation."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from _store_helpers import make_manifest, sha
from storage import Manifest, StoreAttributes
from storage.schema import Chunking, DatasetInfo, GeneratorIdentity, Layout, file_sha256


def test_manifest_hash_is_the_same_in_another_process_and_for_reordered_label_dicts():
    manifest = make_manifest(5)
    reordered = Manifest(items=tuple(dataclasses.replace(it, labels=dict(reversed(list(it.labels.items()))))
                                     for it in manifest.items), root=manifest.root)
    assert reordered.manifest_hash == manifest.manifest_hash
    code = ("import sys; sys.path.insert(0, 'tests'); from _store_helpers import make_manifest; "
            "print(make_manifest(5).manifest_hash)")
    repo = Path(__file__).resolve().parents[1]
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo,
                           env={"PYTHONHASHSEED": "123", "PYTHONPATH": str(repo)}).stdout.strip()
    assert other == manifest.manifest_hash


def test_manifest_hash_changes_with_content_and_order_but_not_with_root():
    manifest = make_manifest(4)
    first = manifest.items[0]
    assert Manifest(items=manifest.items, root="/elsewhere").manifest_hash == manifest.manifest_hash
    for changed in (dataclasses.replace(first, path="moved.png"), dataclasses.replace(first, source_sha256=sha("x")),
                    dataclasses.replace(first, labels={"smile": 0.5})):
        assert Manifest(items=(changed,) + manifest.items[1:]).manifest_hash != manifest.manifest_hash
    assert Manifest(items=manifest.items[::-1]).manifest_hash != manifest.manifest_hash


def test_manifest_labels_are_the_union_with_nan_where_missing():
    manifest = make_manifest(4)
    assert manifest.label_names == ("age", "smile")
    age = manifest.label_column("age")
    assert age[0] == 20.0 and age[3] == 23.0 and age[1] != age[1]  # NaN for item 1


@pytest.mark.parametrize("record, message", [
    (dict(image_id="a", path="a.png"), "lacks \\['source_sha256'\\]"),
    (dict(image_id="a", path="a.png", source_sha256="abc"), "64 hex digits"),
    (dict(image_id="", path="a.png", source_sha256=sha("a")), "empty image_id"),
    (dict(image_id="a", path="a.png", source_sha256=sha("a"), labels={"x/y": 1.0}), "without '/'"),
])
def test_bad_manifest_records_are_refused_with_the_reason(record, message):
    with pytest.raises(ValueError, match=message):
        Manifest.from_records([record])


def test_duplicate_image_ids_are_refused():
    with pytest.raises(ValueError, match="duplicate image_id"):
        Manifest.from_records([dict(image_id="a", path=f"{i}.png", source_sha256=sha(str(i))) for i in range(2)])


def test_store_attributes_round_trip_through_json():
    attrs = StoreAttributes(created="2026-11-25T00:00:00Z", ganinv_version="0.1.0",
                            generator=GeneratorIdentity(sha256=sha("g"), config={"w_dim": 512}, source="ffhq.pkl"),
                            inversion={"num_steps": 1000, "betas": [0.9, 0.999]},
                            dataset=DatasetInfo(root="/d", manifest_hash=sha("m"), num_items=3,
                                                history=({"added": 3},)),
                            chunking=Chunking(chunk_items=64, ws_compressor="zstd"),
                            layout=Layout(num_ws=18, w_dim=512, labels=("smile",)))
    assert StoreAttributes.from_json(json.loads(json.dumps(attrs.to_json()))) == attrs
    with pytest.raises(ValueError, match="not a ganinv latent store"):
        StoreAttributes.from_json({"schema": "something-else"})


def test_file_sha256_hashes_the_bytes(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"pixels")
    assert file_sha256(path) == sha("pixels")
