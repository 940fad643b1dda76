"""The store is readable without zarr-python (issue 24 item 8) and opens as one xarray dataset or tree (issue 19
item 8): every array of a store reads the same through tensorstore's zarr3 driver as through zarr-python; text is
fixed-width UTF-8; `storage.open_dataset` aligns ws, metrics, labels and status on `image_id`; `xr.open_datatree`
opens every group, edit runs included. Stores of the old layout (schema v1) read as before and migrate."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from _store_helpers import Location, fake_result, make_manifest
from ganinv.directions.direction import Direction
from storage import LatentStore, open_dataset
from storage.directions import write_direction
from storage.edits import EditRun

V1_FIXTURE = Path(__file__).parent / "fixtures" / "store_v1" / "corpus.zarr"


def rich_store(url: str) -> LatentStore:
    """10 items in shards of 4 (z, thumbnails, labels, one failed item), a direction, an edit run, a scan cache."""
    store = Location(url).create(make_manifest(10), z_dim=6, thumbnail_size=4, metrics=("mse", "psnr"))
    for shard in store.shards():
        inputs = store.read_shard_inputs(shard)
        store.write_shard(inputs, fake_result(inputs, store, fail_every=4 if shard.index == 0 else 0))
    store.write_scan_cache({"/data/faces/img00000.png": ("size=1;mtime=1.0", "0" * 64)})
    vector = np.random.default_rng(0).standard_normal(8).astype(np.float32)
    direction = Direction(name="smile", method="interfacegan", space="w", vector=vector / np.linalg.norm(vector))
    write_direction(store, direction, made_by={"flow": "test"})
    run = EditRun.create(store, "demo", item_indices=np.array([0, 1, 5]), directions=[direction],
                         strengths=[-1.0, 1.0], made_by={"flow": "test"}, batch_size=2)
    for start, stop in run.batches():
        run.write(start, stop, run.edit(start, stop))
    store.consolidate()
    return store


def array_paths(root: Path) -> list[str]:
    """Every array of a store on disk (a zarr.json with node_type 'array'), as paths relative to the root."""
    return sorted(str(p.parent.relative_to(root)) for p in root.rglob("zarr.json")
                  if json.loads(p.read_text()).get("node_type") == "array")


def assert_tensorstore_reads_every_array(root: Path) -> int:
    import tensorstore as ts
    import zarr

    paths = array_paths(root)
    for path in paths:
        expected = zarr.open_array(str(root), path=path, mode="r")[...]
        got = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(root / path)}}).result()
        np.testing.assert_array_equal(got.read().result(), expected, err_msg=path)
    return len(paths)


def test_every_array_reads_the_same_through_tensorstore(tmp_path):
    store = rich_store(str(tmp_path / "corpus.zarr"))
    count = assert_tensorstore_reads_every_array(tmp_path / "corpus.zarr")
    assert count >= 20  # item arrays, metrics, labels, the direction, the edit run, the scan cache
    import tensorstore as ts

    ids = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp_path / "corpus.zarr/image_id")}}
                  ).result().read().result()
    as_text = [bytes(row).rstrip(b"\0").decode("utf-8") for row in ids]  # what the array's attributes say it is
    assert as_text == list(store.image_ids()) == [f"img{i:05d}" for i in range(10)]


def test_text_keeps_any_utf8_and_refuses_ids_longer_than_the_store_keeps(tmp_path):
    from storage import Manifest
    from storage.text import TextTooLongError

    from _store_helpers import sha

    names = ["café/été.png", "写真/猫.png", "a b/'quoted'.png"]
    manifest = Manifest.from_records([dict(image_id=n, path=n, source_sha256=sha(n)) for n in names], root="/d")
    store = Location(str(tmp_path / "s.zarr")).create(manifest)
    assert list(store.image_ids()) == names and list(store.paths()) == [f"/d/{n}" for n in names]
    long = Manifest.from_records([dict(image_id="x" * 2000, path="x.png", source_sha256=sha("long"))], root="/d")
    with pytest.raises(TextTooLongError, match="2000 bytes"):
        store.append(long)
    assert len(LatentStore.open(store.url)) == 3


def test_open_dataset_aligns_ws_metrics_labels_and_status_on_image_id(tmp_path):
    store = rich_store(str(tmp_path / "corpus.zarr"))
    ds = open_dataset(store.url)
    assert ds.ws.dims == ("image_id", "layer", "channel") and "image_id" in ds.indexes
    one = ds.sel(image_id="img00005")
    np.testing.assert_array_equal(one.ws.values, store.ws([5])[0])
    assert float(one.metric_psnr) == store.metrics(["psnr"])["psnr"][5]
    assert float(one.label_smile) == 1.0 and int(one.status) == 1 and int(one.item) == 5
    assert str(ds.sel(image_id="img00003").error.values) == "item 3 diverged"
    labels = xr.Dataset({"score": ("image_id", np.arange(3.0))}, coords={"image_id": ["img00009", "img00001", "x"]})
    left, right = xr.align(ds, labels, join="inner")
    assert list(left.image_id.values) == ["img00001", "img00009"] == list(right.image_id.values)


def test_open_datatree_opens_every_group_of_a_store_with_edit_runs(tmp_path):
    rich_store(str(tmp_path / "corpus.zarr"))
    tree = xr.open_datatree(str(tmp_path / "corpus.zarr"), engine="zarr")
    assert tree["edits/demo"].ws.dims[0] == "edit_item" and tree["metrics"].mse.sizes["item"] == 10
    assert tree["directions/smile"].vector.shape == (8,)


# ---------------------------------------------------------------- the old layout (schema v1)
@pytest.fixture
def v1_store(tmp_path) -> str:
    """A copy of the schema v1 store written by ganinv before v2 (tests/fixtures/store_v1/make_store_v1.py)."""
    shutil.copytree(V1_FIXTURE, tmp_path / "v1.zarr")
    return str(tmp_path / "v1.zarr")


def test_a_v1_store_reads_as_before_and_verify_says_it_has_no_checksums(v1_store):
    store = LatentStore.open(v1_store)
    assert store.attributes.schema_version == 1
    assert list(store.image_ids()) == [f"img{i:05d}" for i in range(10)]
    assert store.paths()[2] == "/data/faces/img00002.png" and store.errors()[3] == "item 3 diverged"
    assert store.status_counts() == {"pending": 0, "done": 9, "failed": 1}
    assert EditRun.open(store, "demo").image_ids == ["img00000", "img00001", "img00005"]
    report = store.verify()
    assert report.ok and not report.checksums
    assert any("no checksums" in n and "store-migrate" in n for n in report.notes)
    ds = open_dataset(v1_store)
    assert str(ds.sel(image_id="img00003").error.values) == "item 3 diverged"


def test_a_v1_store_grows_in_its_own_layout(v1_store):
    store = LatentStore.open(v1_store, "r+")
    assert store.append(make_manifest(12)) == 2
    inputs = store.read_shard_inputs(store.shard(2))
    store.write_shard(inputs, fake_result(inputs, store))
    again = LatentStore.open(v1_store)
    assert list(again.image_ids())[-2:] == ["img00010", "img00011"] and again.verify().ok
    assert again.attributes.schema_version == 1


def test_migrating_a_v1_store_copies_every_item_into_the_checksummed_layout(v1_store, tmp_path):
    old = LatentStore.open(v1_store)
    new = LatentStore.migrate(v1_store, str(tmp_path / "v2.zarr"))
    assert new.attributes.schema_version == 2 and new.attributes.dataset.history[-1]["migrated_from"] == v1_store
    report = new.verify()
    assert report.ok and report.checksums and not report.notes
    for read in ("image_ids", "paths", "source_sha256", "status", "errors", "attempts", "ws", "thumbnails"):
        np.testing.assert_array_equal(getattr(new, read)(), getattr(old, read)(), err_msg=read)
    for a, b in ((new.metrics(), old.metrics()), (new.labels(), old.labels())):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    assert new.result_groups("directions").keys() == old.result_groups("directions").keys()
    run = EditRun.open(new, "demo")
    np.testing.assert_array_equal(run.to_xarray().ws.values, EditRun.open(old, "demo").to_xarray().ws.values)
    assert LatentStore.read_scan_cache(new.url)[0] == LatentStore.read_scan_cache(old.url)[0]
    assert_tensorstore_reads_every_array(tmp_path / "v2.zarr")
    xr.open_datatree(new.url, engine="zarr")  # the v1 edit run's `item` axis became `edit_item`
    with pytest.raises(ValueError, match="not aligned"):
        xr.open_datatree(v1_store, engine="zarr")  # why v1 stores with edit runs need the migration


def test_the_documented_xarray_recipe_gives_what_open_dataset_gives(tmp_path):
    """The xarray-only recipe in storage/dataset.py's docstring (what a user without ganinv types) runs as written
    and aligns the same values on image_id."""
    import storage.dataset

    store = rich_store(str(tmp_path / "corpus.zarr"))
    recipe = storage.dataset.__doc__.split("::", 1)[1].split("\n\n")[1]  # the indented block after '::'
    namespace = {"url": store.url}
    exec(textwrap.dedent(recipe), namespace)  # noqa: S102 - the project's own documented code
    ds, ours = namespace["ds"], open_dataset(store.url)
    assert list(ds.image_id.values) == list(ours.image_id.values)
    np.testing.assert_array_equal(ds.ws.values, ours.ws.values)
    np.testing.assert_array_equal(ds.metric_psnr.values, ours.metric_psnr.values)
    np.testing.assert_array_equal(ds.label_smile.values, ours.label_smile.values)
    assert float(ds.sel(image_id="img00005").metric_mse) == store.metrics(["mse"])["mse"][5]
