"""The scan's hash cache: a rescan reads only new or changed files (judged by size + ETag/mtime from the listing),
never trusts an entry whose fingerprint is stale, and survives a missing or damaged cache by hashing everything;
kept in the store, the cache leaves the store readable by zarr and xarray."""

from __future__ import annotations

import hashlib
import os
import uuid
import warnings
from pathlib import Path

import fsspec
import pytest
import xarray as xr
import zarr

from _image_files import write_good_images
from _store_helpers import Location, make_manifest
from storage import LatentStore, LeaseHeldError
from storage.scan_cache import SCAN_CACHE_ARRAY
from storage.scan import fingerprint, scan_images


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(scan) -> dict[str, str]:
    return {item.image_id: item.source_sha256 for item in scan.manifest.items}


def _rewrite(path: Path, data: bytes) -> None:
    """New content, and an mtime surely later than the old one (coarse-clock filesystems)."""
    before = path.stat().st_mtime_ns
    path.write_bytes(data)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_rescan_with_the_cache_hashes_nothing_and_gives_the_same_manifest(tmp_path):
    write_good_images(tmp_path / "a", 3)
    write_good_images(tmp_path / "b", 1, start=5)
    first = scan_images(str(tmp_path))
    again = scan_images(str(tmp_path), previous=first.hash_cache)
    assert (first.hashed, first.reused, again.hashed, again.reused) == (4, 0, 0, 4)
    assert again.manifest == first.manifest and again.hash_cache == first.hash_cache
    assert again.summary()["hashed"] == 0 and again.summary()["reused"] == 4


def test_an_unchanged_rescan_leaves_nothing_to_save_and_a_change_does(tmp_path):
    paths = write_good_images(tmp_path, 2)
    first = scan_images(str(tmp_path))
    assert first.hash_cache_changed  # no previous cache: the first scan's must be saved
    assert not scan_images(str(tmp_path), previous=first.hash_cache).hash_cache_changed
    _rewrite(paths[0], paths[0].read_bytes() + b"changed")
    assert scan_images(str(tmp_path), previous=first.hash_cache).hash_cache_changed


def test_a_changed_file_is_hashed_again_and_gets_its_new_hash(tmp_path):
    paths = write_good_images(tmp_path, 3)
    first = scan_images(str(tmp_path))
    _rewrite(paths[1], paths[1].read_bytes() + b"changed")  # new content and size under the same path
    again = scan_images(str(tmp_path), previous=first.hash_cache)
    assert (again.hashed, again.reused) == (1, 2)
    old, new = _hashes(first), _hashes(again)
    assert new["good001.png"] == _sha(paths[1]) != old["good001.png"]
    assert {k: v for k, v in new.items() if k != "good001.png"} == {k: v for k, v in old.items() if k != "good001.png"}


def test_same_size_rewrite_is_noticed_by_its_mtime(tmp_path):
    paths = write_good_images(tmp_path, 2)
    first = scan_images(str(tmp_path))
    data = bytearray(paths[0].read_bytes())
    data[-1] ^= 0xFF
    _rewrite(paths[0], bytes(data))
    again = scan_images(str(tmp_path), previous=first.hash_cache)
    assert again.hashed == 1 and _hashes(again)["good000.png"] == _sha(paths[0])


def test_an_entry_with_a_stale_fingerprint_is_not_trusted(tmp_path):
    paths = write_good_images(tmp_path, 2)
    key = str(paths[0])
    current = fingerprint(fsspec.filesystem("file").info(key))
    bogus = "0" * 64
    stale = {key: ("size=1;mtime=0.0", bogus), str(paths[1]): (None, bogus)}
    scan = scan_images(str(tmp_path), previous=stale)
    assert scan.hashed == 2 and bogus not in _hashes(scan).values()
    trusted = scan_images(str(tmp_path), previous={key: (current, bogus)})  # what a matching entry does
    assert _hashes(trusted)["good000.png"] == bogus and trusted.reused == 1


def test_symlinks_have_no_fingerprint_and_are_always_hashed(tmp_path):
    target = write_good_images(tmp_path / "real", 1)[0]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link.png").symlink_to(target)
    first = scan_images(str(tmp_path / "data"))
    again = scan_images(str(tmp_path / "data"), previous=first.hash_cache)
    assert first.hash_cache == {} and (again.hashed, again.reused) == (1, 0)


def test_list_files_and_globs_reuse_hashes_too(tmp_path):
    write_good_images(tmp_path / "imgs", 3)
    (tmp_path / "list.txt").write_text("imgs/good000.png\nimgs/good002.png\nimgs/missing.png\n")
    listed = scan_images(str(tmp_path / "list.txt"))
    again = scan_images(str(tmp_path / "list.txt"), previous=listed.hash_cache)
    assert (listed.hashed, again.hashed, again.reused) == (3, 1, 2)  # a missing file is tried (and skipped) each time
    assert [s.path for s in again.skipped] == ["imgs/missing.png"] and again.manifest == listed.manifest
    globbed = scan_images(str(tmp_path / "imgs" / "*.png"))
    again = scan_images(str(tmp_path / "imgs" / "*.png"), previous=globbed.hash_cache)
    assert (globbed.hashed, again.hashed, again.reused) == (3, 0, 3) and again.manifest == globbed.manifest


def test_bucket_rewrite_under_the_same_name_is_rehashed():
    fs = fsspec.filesystem("memory")
    root = f"/scan-cache-{uuid.uuid4().hex[:8]}"
    fs.pipe(f"{root}/a.png", b"first")
    fs.pipe(f"{root}/b.png", b"other")
    try:
        first = scan_images(f"memory://{root}")
        assert (first.hashed, len(first.hash_cache)) == (2, 2)
        assert scan_images(f"memory://{root}", previous=first.hash_cache).hashed == 0
        fs.pipe(f"{root}/a.png", b"second!")
        again = scan_images(f"memory://{root}", previous=first.hash_cache)
        assert again.hashed == 1 and _hashes(again)["a.png"] == hashlib.sha256(b"second!").hexdigest()
    finally:
        fs.rm(root, recursive=True)


def test_s3_fingerprint_is_the_etag_and_an_overwrite_is_rehashed(s3_endpoint):
    options = {"endpoint_url": s3_endpoint, "key": "test", "secret": "test"}
    fs = fsspec.filesystem("s3", **options)
    prefix = f"ganinv/scan-{uuid.uuid4().hex[:8]}"
    fs.pipe({f"{prefix}/a.png": b"first", f"{prefix}/b.png": b"other"})
    first = scan_images(f"s3://{prefix}", storage_options=options)
    assert all(";ETag=" in fp for fp, _ in first.hash_cache.values())
    assert scan_images(f"s3://{prefix}", storage_options=options, previous=first.hash_cache).hashed == 0
    other_writer = fsspec.filesystem("s3", skip_instance_cache=True, **options)  # the scan's fs keeps its listing
    other_writer.pipe(f"{prefix}/a.png", b"second!")                      # cache: it must not trust it
    again = scan_images(f"s3://{prefix}", storage_options=options, previous=first.hash_cache)
    assert (again.hashed, again.reused) == (1, 1)
    assert _hashes(again)["a.png"] == hashlib.sha256(b"second!").hexdigest()


# ---------------------------------------------------------------------------------------------- kept in the store
def test_cache_kept_in_the_store_round_trips_and_the_store_still_reads(tmp_path):
    write_good_images(tmp_path / "imgs", 2)
    scan = scan_images(str(tmp_path / "imgs"))
    loc = Location(str(tmp_path / "s.zarr"))
    assert LatentStore.read_scan_cache(loc.url) == ({}, "no scan cache yet")  # no store at all yet
    store = loc.create(make_manifest(3))
    assert LatentStore.read_scan_cache(loc.url)[0] == {}
    store.write_scan_cache(scan.hash_cache)
    store.write_scan_cache(scan.hash_cache)  # replaced whole, not appended
    entries, note = LatentStore.read_scan_cache(loc.url)
    assert entries == scan.hash_cache and "2 files" in note
    with warnings.catch_warnings():
        warnings.simplefilter("error", zarr.errors.ZarrUserWarning)  # nothing foreign in the hierarchy
        reopened = loc.open("r")
        assert reopened.to_xarray().sizes["item"] == 3 and reopened.verify().ok
        assert xr.open_zarr(loc.url).sizes["item"] == 3
        assert dict(zarr.open_group(loc.url, mode="r", use_consolidated=False).members(max_depth=None))


def test_a_damaged_cache_means_a_full_hash_not_a_failure(tmp_path):
    loc = Location(str(tmp_path / "s.zarr"))
    store = loc.create(make_manifest(2))
    store.write_scan_cache({"/x/a.png": ("size=1;mtime=1.0", "a" * 64)})
    chunk = tmp_path / "s.zarr" / SCAN_CACHE_ARRAY / "c" / "0"
    chunk.write_bytes(b"\x1f\x8b not really gzip" + bytes(chunk.stat().st_size - 19))  # same length, bad bytes
    entries, note = LatentStore.read_scan_cache(loc.url)
    assert entries == {} and "unreadable" in note
    (tmp_path / "s.zarr" / SCAN_CACHE_ARRAY / "zarr.json").write_text("{not json")
    entries, note = LatentStore.read_scan_cache(loc.url)
    assert entries == {} and "unreadable" in note


def test_only_the_lease_holder_writes_the_cache(tmp_path):
    loc = Location(str(tmp_path / "s.zarr"))
    store = loc.create(make_manifest(2))
    with store.acquire_lease("other-run", ttl_s=60):
        with pytest.raises(LeaseHeldError, match="other-run"):
            loc.open("r+").write_scan_cache({})
