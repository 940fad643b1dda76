"""Contract suite of the latent store, run on a local directory, an fsspec memory:// store and S3 (moto server)."""

from __future__ import annotations

import dataclasses
import json
import warnings

import fsspec
import numpy as np
import pytest
import xarray as xr
import zarr

from _store_helpers import (CONFIG, GENERATOR, NUM_WS, THUMB, W_DIM, Z_DIM, expected_ws, fake_result,
                            location_for, make_manifest, sha)
from storage import arrays, growth
from storage import (SCHEMA_VERSION, GeneratorIdentity, LatentStore, LeaseHeldError, Manifest, Shard, ShardResult,
                     Status, StoreAttributes, StoreExistsError, StoreMismatchError, StoreNotFoundError)


def write_all(store: LatentStore, *, fail_every: int = 0) -> None:
    for shard in store.pending_shards():
        inputs = store.read_shard_inputs(shard)
        store.write_shard(inputs, fake_result(inputs, store, fail_every=fail_every))


# ---------------------------------------------------------------- self-description
def test_create_writes_self_describing_root_attributes(location):
    manifest = make_manifest(10)
    location.create(manifest, z_dim=Z_DIM, thumbnail_size=THUMB)
    attrs = location.open().attributes
    assert attrs.schema_version == SCHEMA_VERSION
    assert attrs.generator == GENERATOR
    assert attrs.inversion == CONFIG
    assert (attrs.dataset.root, attrs.dataset.manifest_hash, attrs.dataset.num_items) == (
        manifest.root, manifest.manifest_hash, 10)
    assert attrs.chunking.chunk_items == 4 and attrs.layout.labels == ("age", "smile")
    raw = dict(zarr.open_group(location.url, mode="r", storage_options=location.storage_options or None).attrs)
    assert StoreAttributes.from_json(json.loads(json.dumps(raw))) == attrs


def test_every_item_array_is_chunked_by_items_and_names_its_dimensions(location):
    store = location.create(make_manifest(10), z_dim=Z_DIM, thumbnail_size=THUMB)
    names = arrays.item_array_names(store.layout)
    assert {"ws", "z", "thumbnails", "status", "error", "attempts", "image_id", "source_sha256",
            "metrics/lpips-vgg", "labels/smile"} <= set(names)
    for name in names:
        array = store.array(name)
        assert array.shape[0] == 10 and array.chunks[0] == 4, name
        assert array.metadata.dimension_names[0] == "item", name
    assert store.array("ws").metadata.dimension_names == ("item", "layer", "channel")
    assert store.array("ws").shape == (10, NUM_WS, W_DIM)


# ---------------------------------------------------------------- write protocol
def test_written_shards_read_back_exactly(location):
    store = location.create(make_manifest(10), z_dim=Z_DIM, thumbnail_size=THUMB)
    write_all(store, fail_every=4)
    back = location.open()
    idx = np.arange(10)
    failed = idx % 4 == 3
    status = back.array("status")[:]
    np.testing.assert_array_equal(status, np.where(failed, Status.FAILED, Status.DONE))
    np.testing.assert_array_equal(back.array("ws")[:][~failed], expected_ws(idx[~failed]))
    assert np.isnan(back.array("ws")[:][failed]).all()
    np.testing.assert_array_equal(back.array("z")[:], (idx[:, None] + np.arange(Z_DIM)).astype(np.float32))
    np.testing.assert_array_equal(back.array("thumbnails")[:, 0, 0, 0], idx.astype(np.uint8))
    np.testing.assert_array_equal(back.array("metrics/mse")[:], (idx * 0.5).astype(np.float32))
    assert np.isnan(back.array("metrics/lpips-vgg")[:]).all()  # not given: NaN, not zero
    errors = back.errors().tolist()
    assert errors == [f"item {i} diverged" if f else "" for i, f in zip(idx, failed)]
    np.testing.assert_array_equal(back.array("attempts")[:], np.ones(10))
    assert back.status_counts() == {"pending": 0, "done": 8, "failed": 2}


def test_pending_shards_follow_status_and_retry_policy(location):
    store = location.create(make_manifest(10))
    assert store.pending_shards() == store.shards() == [Shard(0, 0, 4), Shard(1, 4, 8), Shard(2, 8, 10)]
    inputs = store.read_shard_inputs(store.shard(0))
    store.write_shard(inputs, fake_result(inputs, store, fail_every=4))  # item 3 fails
    inputs = store.read_shard_inputs(store.shard(2))
    store.write_shard(inputs, fake_result(inputs, store))
    assert store.pending_shards() == [Shard(1, 4, 8)]
    assert store.pending_shards(retry_failed=True) == [Shard(0, 0, 4), Shard(1, 4, 8)]
    assert store.pending_shards(retry_failed=True, max_attempts=1) == [Shard(1, 4, 8)]


def test_read_shard_inputs_gives_ids_resolved_paths_and_only_items_to_do(location):
    store = location.create(make_manifest(8))
    shard = store.shard(1)
    inputs = store.read_shard_inputs(shard)
    assert inputs.indices.tolist() == [4, 5, 6, 7]
    assert inputs.image_ids == ("img00004", "img00005", "img00006", "img00007")
    assert inputs.paths[0] == "/data/faces/img00004.png"
    assert inputs.source_sha256[1] == sha("content 5")
    store.write_shard(inputs, fake_result(inputs, store, fail_every=2))  # 5 and 7 fail
    assert len(store.read_shard_inputs(shard)) == 0
    retry = store.read_shard_inputs(shard, retry_failed=True)
    assert retry.indices.tolist() == [5, 7]
    store.write_shard(retry, fake_result(retry, store))  # scattered items: only they are rewritten
    np.testing.assert_array_equal(store.array("ws")[4:8], expected_ws(np.arange(4, 8)))
    assert store.array("attempts")[4:8].tolist() == [1, 2, 1, 2]
    assert store.array("status")[:].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_rewriting_a_shard_from_the_same_inputs_is_idempotent(location):
    store = location.create(make_manifest(8))
    inputs = store.read_shard_inputs(store.shard(0))
    store.write_shard(inputs, fake_result(inputs, store))
    before = location.files()
    store.write_shard(inputs, fake_result(inputs, store))  # an at-least-once duplicate of the same task
    assert location.files() == before
    assert store.array("attempts")[:4].tolist() == [1, 1, 1, 1]


def test_each_recorded_retry_counts_one_attempt(location):
    store = location.create(make_manifest(4))
    shard = store.shard(0)
    inputs = store.read_shard_inputs(shard)
    store.write_shard(inputs, ShardResult.failed(len(inputs), "out of memory", layout=store.layout))
    retry = store.read_shard_inputs(shard, retry_failed=True)
    np.testing.assert_array_equal(retry.attempts, [1, 1, 1, 1])
    store.write_shard(retry, fake_result(retry, store))
    assert store.array("attempts")[:].tolist() == [2, 2, 2, 2]
    assert store.errors().tolist() == ["", "", "", ""]
    assert store.status_counts()["done"] == 4


def test_write_shard_refuses_results_that_do_not_fit(location):
    store = location.create(make_manifest(8), z_dim=Z_DIM)
    inputs = store.read_shard_inputs(store.shard(0))
    good = fake_result(inputs, store)
    bad_results = {
        "ws": dataclasses.replace(good, ws=good.ws[:, :2]),
        "z": dataclasses.replace(good, z=None),
        "unknown metric": dataclasses.replace(good, metrics={"fid": np.zeros(4)}),
        "pending status": dataclasses.replace(good, status=np.zeros(4, np.uint8)),
        "error count": dataclasses.replace(good, error=["x"]),
    }
    for what, result in bad_results.items():
        with pytest.raises(ValueError):
            store.write_shard(inputs, result)
    with pytest.raises(ValueError, match="not a shard of this store"):
        store.write_shard(Shard(0, 0, 3), good)
    with pytest.raises(PermissionError, match="read-only"):
        location.open("r").write_shard(inputs, good)
    assert store.status_counts()["pending"] == 8  # nothing was written by the refused calls


def test_write_shard_with_a_bare_shard_writes_every_item(location):
    store = location.create(make_manifest(6))
    shard = store.shard(1)
    store.write_shard(shard, fake_result(store.read_shard_inputs(shard), store))
    assert store.array("status")[:].tolist() == [0, 0, 0, 0, 1, 1]


# ---------------------------------------------------------------- verify
def test_verify_finds_done_items_whose_data_is_missing_or_not_finite(location):
    store = location.create(make_manifest(12))
    write_all(store)
    assert store.verify().ok
    store.array("ws")[5, 2, 3] = np.inf  # one item's code damaged
    fs, root = location.fs()
    fs.rm(f"{root}/ws/c/2/0/0")  # shard 2's chunk lost
    report = location.open("r").verify()
    assert not report.ok
    assert report.bad_items == (5, 8, 9, 10, 11)
    assert "not finite" in report.reasons[0]
    repaired = location.open("r+").verify(repair=True)
    assert repaired.repaired
    assert store.pending_shards() == [Shard(1, 4, 8), Shard(2, 8, 12)]
    assert store.read_shard_inputs(store.shard(1)).indices.tolist() == [5]
    assert location.open("r").verify().ok  # pending items are not checked


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize("change", ["generator", "config"])
def test_opening_for_writing_with_another_generator_or_config_is_refused(location, change):
    location.create(make_manifest(4))
    other = dict(generator=GENERATOR, config=CONFIG)
    if change == "generator":
        other["generator"] = GeneratorIdentity(sha256=sha("another generator"), source="ffhq.pkl")
    else:
        other["config"] = {**CONFIG, "num_steps": 1000}
    with pytest.raises(StoreMismatchError, match="new store") as err:
        location.open("r+", **other)
    assert ("ffhq.pkl" in str(err.value)) if change == "generator" else ("num_steps" in str(err.value))
    location.open("r")  # reading is still fine
    location.open("r+", generator=GENERATOR, config=CONFIG)


def test_a_store_of_another_schema_version_is_refused(location):
    location.create(make_manifest(4))
    group = zarr.open_group(location.url, mode="r+", storage_options=location.storage_options or None)
    group.attrs.update({"schema_version": SCHEMA_VERSION + 1})
    for mode in ("r", "r+"):
        with pytest.raises(StoreMismatchError, match=f"schema version {SCHEMA_VERSION + 1}"):
            location.open(mode)


def test_missing_and_existing_stores_are_named_in_the_error(location):
    with pytest.raises(StoreNotFoundError, match="no latent store"):
        location.open("r")
    location.create(make_manifest(4))
    with pytest.raises(StoreExistsError, match="already exists"):
        location.create(make_manifest(4))


def test_open_or_create_creates_then_opens_and_checks_layout(location):
    manifest = make_manifest(4)
    kwargs = dict(manifest=manifest, num_ws=NUM_WS, w_dim=W_DIM, generator=GENERATOR, config=CONFIG,
                  chunk_items=4, storage_options=location.storage_options)
    created = LatentStore.open_or_create(location.url, **kwargs)
    opened = LatentStore.open_or_create(location.url, **kwargs)
    assert created.attributes == opened.attributes
    with pytest.raises(StoreMismatchError, match="chunk_items"):
        LatentStore.open_or_create(location.url, **{**kwargs, "chunk_items": 8})


# ---------------------------------------------------------------- growth
def test_append_adds_only_new_content_and_keeps_done_items(location):
    store = location.create(make_manifest(6))
    write_all(store)
    ws_before = store.array("ws")[:6]
    grown = Manifest.from_records(
        [dataclasses.asdict(it) for it in make_manifest(9).items]
        + [dict(image_id="extra", path="extra.png", source_sha256=sha("extra"), labels={"glasses": 1.0})],
        root="/data/faces")
    assert store.append(grown) == 4
    back = location.open("r")
    assert len(back) == 10 and back.status_counts() == {"pending": 4, "done": 6, "failed": 0}
    np.testing.assert_array_equal(back.array("ws")[:6], ws_before)
    assert back.pending_shards() == [Shard(1, 4, 8), Shard(2, 8, 10)]
    assert back.read_shard_inputs(back.shard(1)).indices.tolist() == [6, 7]  # done 4, 5 are not redone
    assert back.attributes.layout.labels == ("age", "glasses", "smile")
    glasses = back.array("labels/glasses")[:]
    assert np.isnan(glasses[:9]).all() and glasses[9] == 1.0
    history = back.attributes.dataset.history
    assert [h["added"] for h in history] == [6, 4]
    assert back.attributes.dataset.manifest_hash == grown.manifest_hash
    write_all(back := location.open("r+"))
    assert back.verify().ok and back.status_counts()["done"] == 10


def test_append_of_known_or_repeated_content_adds_nothing(location):
    manifest = make_manifest(5)
    store = location.create(manifest)
    assert store.append(manifest) == 0
    twin = dataclasses.replace(manifest.items[0], image_id="copy-of-0", path="copy.png")
    new = dataclasses.replace(manifest.items[0], image_id="new", source_sha256=sha("new"))
    same_new = dataclasses.replace(new, image_id="new-again", path="again.png")
    assert store.append(Manifest(items=(twin, new, same_new))) == 1
    assert store.image_ids().tolist()[-1] == "new"


def test_append_refuses_changed_content_under_a_known_image_id(location):
    manifest = make_manifest(3)
    store = location.create(manifest)
    edited = dataclasses.replace(manifest.items[1], source_sha256=sha("edited pixels"))
    with pytest.raises(ValueError, match="img00001"):
        store.append(Manifest(items=(edited,)))
    assert len(location.open("r")) == 3


def test_an_interrupted_append_is_finished_by_appending_again(location, monkeypatch):
    store = location.create(make_manifest(6))
    write_all(store)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut before the commit")

    monkeypatch.setattr(growth, "commit", crash)
    with pytest.raises(KeyboardInterrupt):
        store.append(make_manifest(11))
    monkeypatch.undo()
    half = location.open("r+")
    assert len(half) == 6 and half.status_counts()["done"] == 6
    assert half.verify().problems  # arrays longer than the committed item count
    assert half.append(make_manifest(11)) == 5
    assert half.verify().ok and len(location.open("r")) == 11
    assert location.open("r").image_ids().tolist() == [f"img{i:05d}" for i in range(11)]


# ---------------------------------------------------------------- reading
def test_xarray_open_zarr_reads_the_store_directly(location):
    store = location.create(make_manifest(10), thumbnail_size=THUMB)
    write_all(store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(location.url, storage_options=location.storage_options or None)
    assert ds.ws.dims == ("item", "layer", "channel") and ds.ws.shape == (10, NUM_WS, W_DIM)
    raw_ids = ds.image_id.values  # fixed-width UTF-8 rows (storage/text.py): the recipe of storage/dataset.py
    assert raw_ids.view(f"S{raw_ids.shape[1]}")[:, 0].astype(str).tolist()[3] == "img00003"
    np.testing.assert_array_equal(ds.ws.values, expected_ws(np.arange(10)))
    assert ds.status.dtype == np.uint8 and ds.attrs["schema_version"] == SCHEMA_VERSION


def test_to_xarray_exposes_metrics_and_labels_as_dask_item_variables(location):
    manifest = make_manifest(10)
    store = location.create(manifest)
    write_all(store)
    ds = store.to_xarray()
    assert ds.ws.chunks is not None and ds.ws.chunks[0] == (4, 4, 2)  # dask, one block per chunk
    assert ds.metric_psnr.dims == ("item",) and ds.label_smile.dims == ("item",)
    np.testing.assert_array_equal(ds.metric_psnr.values, np.arange(10) + 10.0)
    np.testing.assert_array_equal(ds.label_age.values, np.asarray(manifest.label_column("age"), np.float32))
    np.testing.assert_array_equal(ds.sel(image_id="img00004").ws.values, expected_ws([4])[0])
    assert ds.attrs["generator"]["sha256"] == GENERATOR.sha256


def test_result_groups_say_how_they_were_made(location):
    store = location.create(make_manifest(4))
    group = store.result_group("directions", "smile", made_by={"method": "interfacegan", "label": "smile"})
    group.create_array("boundary", shape=(NUM_WS, W_DIM), dtype="float32", dimension_names=("layer", "channel"))
    store.consolidate()
    listed = location.open("r").result_groups("directions")
    assert listed["smile"]["made_by"] == {"method": "interfacegan", "label": "smile"}
    assert listed["smile"]["store_num_items"] == 4
    with pytest.raises(ValueError, match="how the result was made"):
        store.result_group("edits", "run1", made_by={})
    with pytest.raises(ValueError, match="directions"):
        store.result_group("boundaries", "x", made_by={"method": "sefa"})


def test_memory_stores_are_separate_per_url():
    """memory:// is process-global in fsspec: distinct URLs must not see each other."""
    a, b = f"memory://tests/a-{id(object())}.zarr", f"memory://tests/b-{id(object())}.zarr"
    from _store_helpers import Location
    Location(a).create(make_manifest(3))
    with pytest.raises(StoreNotFoundError):
        Location(b).open()
    fsspec.filesystem("memory").rm(a.removeprefix("memory://"), recursive=True)


def test_s3_store_end_to_end(s3_endpoint, tmp_path):
    """The write protocol, growth, lease and xarray on an S3 bucket (moto server on 127.0.0.1)."""
    loc = location_for("s3", tmp_path, s3_endpoint)
    store = loc.create(make_manifest(6))
    with store.acquire_lease("run-1", ttl_s=60):
        with pytest.raises(LeaseHeldError, match="run-1"):
            loc.open("r+").acquire_lease("run-2", ttl_s=60)
        write_all(store)
        assert store.append(make_manifest(8)) == 2
        write_all(store)
    assert loc.open("r").verify().ok
    ds = xr.open_zarr(loc.url, storage_options=loc.storage_options)
    np.testing.assert_array_equal(ds.ws.values, expected_ws(np.arange(8)))
    with pytest.raises(StoreMismatchError, match="new store"):
        loc.open("r+", generator=GeneratorIdentity(sha256=sha("other")))


def test_a_store_pickles_as_its_url_and_refresh_sees_another_process_append(location):
    import pickle

    store = location.create(make_manifest(4))
    copy = pickle.loads(pickle.dumps(store))
    assert (copy.url, copy.mode, len(copy)) == (store.url, "r+", 4)
    store.append(make_manifest(6))
    assert len(copy) == 4  # metadata is read at open
    copy.refresh()
    assert len(copy) == 6 and copy.pending_shards()[-1] == Shard(1, 4, 6)
