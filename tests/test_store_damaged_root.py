"""A store folder whose root metadata is lost, unreadable or stale is never adopted, written over or shrunk, and its
root can be rebuilt from the store's own copy (issue 24, item 2: two `invert` runs used to wipe every latent)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from _store_helpers import CONFIG, GENERATOR, NUM_WS, W_DIM, fake_result, make_manifest
from storage import LatentStore, StoreDamagedError, StoreExistsError


def written_store(location, n: int = 8) -> LatentStore:
    store = location.create(make_manifest(n))
    for shard in store.shards():
        inputs = store.read_shard_inputs(shard)
        store.write_shard(inputs, fake_result(inputs, store))
    return store


def lose_root(location) -> None:
    fs, root = location.fs()
    fs.rm(f"{root.rstrip('/')}/zarr.json")


def data_files(location) -> dict[str, bytes]:
    return {k: v for k, v in location.files().items() if not k.endswith("zarr.json")}


def open_or_create(location, manifest) -> LatentStore:
    """What `invert` does with its store: open it for writing, or create it."""
    return LatentStore.open_or_create(location.url, manifest=manifest, num_ws=NUM_WS, w_dim=W_DIM,
                                      generator=GENERATOR, config=CONFIG, chunk_items=4,
                                      storage_options=location.storage_options)


def test_a_folder_of_arrays_without_its_root_is_never_adopted_or_written_over(location):
    manifest = make_manifest(8)
    written_store(location)
    lose_root(location)
    before = data_files(location)
    for attempt in range(2):  # the second run used to resize every array to 0
        with pytest.raises(StoreDamagedError, match="root metadata .*zarr.json.* is missing") as err:
            open_or_create(location, manifest)
        assert location.url in str(err.value) and "store-rebuild-root" in str(err.value)
    with pytest.raises(StoreDamagedError, match="store-rebuild-root"):
        location.open("r")
    with pytest.raises(StoreDamagedError, match="not empty"):
        location.create(manifest)
    assert data_files(location) == before  # not a byte changed, and still no root
    assert "zarr.json" not in location.files()


def test_an_unreadable_root_is_named_and_left_alone(location):
    written_store(location)
    fs, root = location.fs()
    fs.pipe_file(f"{root.rstrip('/')}/zarr.json", b'{"zarr_format": 3, "node_')
    with pytest.raises(StoreDamagedError, match=r"zarr.json\) is unreadable"):
        open_or_create(location, make_manifest(8))
    assert location.files()["zarr.json"] == b'{"zarr_format": 3, "node_'


def test_append_never_shrinks_arrays_that_hold_finished_items(location):
    store = written_store(location)
    store.group.attrs.update({"dataset": {**store.attributes.to_json()["dataset"], "num_items": 0}})  # a stale root
    stale = location.open("r+")
    with pytest.raises(StoreDamagedError, match="8 finished items past item 0"):
        stale.append(make_manifest(8))
    assert np.asarray(location.open("r").array("status")[:8]).tolist() == [1] * 8  # nothing was cut


def test_the_root_is_rebuilt_from_the_stores_copy(location):
    original = written_store(location).attributes
    lose_root(location)
    rebuilt = LatentStore.rebuild_root(location.url, storage_options=location.storage_options)
    assert rebuilt.status_counts() == {"pending": 0, "done": 8, "failed": 0} and rebuilt.verify().ok
    back = location.open("r").attributes
    assert back.generator == original.generator and back.inversion == original.inversion
    assert back.layout == original.layout and back.dataset.num_items == 8
    assert back.dataset.history[:-1] == original.dataset.history and back.dataset.history[-1]["rebuilt_root"]
    assert open_or_create(location, make_manifest(10)).append(make_manifest(10)) == 2  # usable again
    with pytest.raises(StoreExistsError, match="nothing to rebuild"):
        LatentStore.rebuild_root(location.url, storage_options=location.storage_options)


def test_a_root_written_over_the_store_is_rebuilt_too(location):
    store = written_store(location)
    store.group.attrs.update({"dataset": {**store.attributes.to_json()["dataset"], "num_items": 0}})
    LatentStore.rebuild_root(location.url, storage_options=location.storage_options)
    assert location.open("r").status_counts()["done"] == 8


def test_without_a_copy_the_advice_is_to_move_the_folder_aside(location):
    written_store(location)
    fs, root = location.fs()
    fs.rm(f"{root.rstrip('/')}/root_copy", recursive=True)
    lose_root(location)
    with pytest.raises(StoreDamagedError, match="Move the folder aside"):
        LatentStore.rebuild_root(location.url, storage_options=location.storage_options)


def test_store_commands_advise_a_rebuild_never_a_new_inversion(tmp_path):
    from _store_helpers import location_for
    from cli.app import app

    location = location_for("local", tmp_path, None)
    written_store(location)
    lose_root(location)
    runner = CliRunner()
    for command in (["store-verify", location.url], ["store-info", location.url]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert f"ganinv store-rebuild-root {location.url}" in result.output and "create one" not in result.output
    rebuilt = runner.invoke(app, ["store-rebuild-root", location.url])
    assert rebuilt.exit_code == 0 and "8 items: done 8" in rebuilt.output, rebuilt.output
    assert runner.invoke(app, ["store-verify", location.url]).exit_code == 0


@pytest.mark.parametrize("key", ["zarr.json", "ws/zarr.json", "status/zarr.json", "metrics/mse/zarr.json"])
def test_a_garbage_zarr_json_is_named_with_the_repair_not_a_json_traceback(tmp_path, key):
    """Issue 24 item 7: garbage metadata gave "Expecting value: line 1 column 1" (exit 3) without the file's name."""
    from _store_helpers import location_for
    from cli.app import app

    location = location_for("local", tmp_path, None)
    written_store(location)
    (tmp_path / location.url / key).write_text('{"zarr_format": 3, "node_ty')
    result = CliRunner().invoke(app, ["store-verify", location.url])
    assert result.exit_code == 2, result.output
    assert f"{location.url}/{key}" in result.output and "Traceback" not in result.output
