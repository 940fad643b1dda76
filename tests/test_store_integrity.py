"""Every chunk of the store carries a CRC-32C (issue 24 item 3): flipped bytes in ws, thumbnails, metrics or status
are found by `store-verify`, `--repair` requeues exactly the items the corrupt chunk held, a corrupt `status` chunk
is rebuilt from the data arrays' checksums, and no command crashes on one with a codec's traceback."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from _store_helpers import fake_result, location_for, make_manifest
from cli.app import app
from runtime.coordinator import incomplete_message, plan
from runtime.shard import ShardReport
from storage import Status
from storage.errors import StoreCorruptError

runner = CliRunner()


def written_store(tmp_path, n: int = 12, *, fail_every: int = 4):
    """n items in shards of 4, z and thumbnails, every item written (items 3, 7, 11 failed)."""
    loc = location_for("local", tmp_path, None)
    store = loc.create(make_manifest(n), z_dim=6, thumbnail_size=4)
    for shard in store.shards():
        inputs = store.read_shard_inputs(shard)
        store.write_shard(inputs, fake_result(inputs, store, fail_every=fail_every))
    return loc, store


def flip_bytes(loc, key: str, *, count: int = 4) -> None:
    """Flips `count` bytes in the middle of the object `key` of the store (what the issue's probe did)."""
    fs, root = loc.fs()
    path = f"{root}/{key}"
    data = bytearray(fs.cat_file(path))
    middle = len(data) // 2
    for i in range(count):
        data[middle + i] ^= 0xFF
    fs.pipe_file(path, bytes(data))


def snapshot(store) -> dict[str, np.ndarray]:
    return {"ws": store.ws(), "z": store.array("z")[:], "thumbnails": store.thumbnails(), "status": store.status(),
            **{f"metric {k}": v for k, v in store.metrics().items()}}


@pytest.mark.parametrize("key, name", [("ws/c/1/0/0", "ws"), ("thumbnails/c/1/0/0/0", "thumbnails"),
                                       ("metrics/psnr/c/1", "metrics/psnr"), ("z/c/1/0", "z")])
def test_flipped_bytes_are_found_and_repair_requeues_exactly_the_items_of_the_chunk(tmp_path, key, name):
    loc, store = written_store(tmp_path)
    before = snapshot(store)
    flip_bytes(loc, key)
    report = loc.open().verify()
    assert not report.ok and report.checksums
    assert [c.split(":")[0] for c in report.corrupt_chunks] == [f"{name} chunk 1 (items 4-7)"]
    assert report.bad_items == (4, 5, 6)  # the done items of chunk 1; item 7 failed, its data is NaN anyway
    cli = runner.invoke(app, ["store-verify", loc.url])
    assert cli.exit_code == 1 and f"corrupt: {name} chunk 1" in cli.output and "checksums verified" in cli.output
    repaired = runner.invoke(app, ["store-verify", loc.url, "--repair"])
    assert repaired.exit_code == 0 and "marked 3 items pending" in repaired.output, repaired.output
    after = loc.open("r+")
    assert after.status().tolist() == [1, 1, 1, 2, 0, 0, 0, 2, 1, 1, 1, 2] and after.verify().ok
    for shard in after.pending_shards():  # the next run redoes them: the same bytes as before
        inputs = after.read_shard_inputs(shard)
        after.write_shard(inputs, fake_result(inputs, after, fail_every=4))
    done = before["status"] == Status.DONE  # a failed item's data is fill values for a real worker (NaN, 0)
    for array, values in snapshot(after).items():
        np.testing.assert_array_equal(values[done], before[array][done], err_msg=array)


def test_a_corrupt_status_chunk_is_named_by_every_reader_and_rebuilt_from_the_data(tmp_path):
    loc, store = written_store(tmp_path)
    store.array("status")[8:10] = [0, 0]  # items 8, 9: data written, status not yet (a worker died in between)
    store.array("ws")[9] = np.nan          # ... except that item 9's ws was never written
    flip_bytes(loc, "status/c/2", count=2)
    with pytest.raises(StoreCorruptError, match=r"chunk 2 \(items 8-11\) of `status`.*store-verify .* --repair"):
        loc.open().status()
    info = runner.invoke(app, ["store-info", loc.url])
    assert info.exit_code == 2 and "store-verify" in info.output and "Traceback" not in info.output
    report = loc.open().verify()
    assert report.corrupt_chunks and report.corrupt_chunks[0].startswith("status chunk 2")
    loc.open("r+").verify(repair=True)
    # item 8: its data verifies and ws is finite: done; 9: no ws: pending; 10: done; 11 failed with its message
    assert loc.open().status().tolist() == [1, 1, 1, 2, 1, 1, 1, 2, 1, 0, 1, 2]


def test_corrupt_error_and_attempts_chunks_are_rebuilt_and_lost_failures_retried(tmp_path):
    loc, store = written_store(tmp_path)
    flip_bytes(loc, "error/c/0/0")
    flip_bytes(loc, "attempts/c/1", count=1)
    assert not loc.open().verify().ok
    report = loc.open("r+").verify(repair=True)
    assert report.requeued == (3,)  # failed, and its message was lost: tried again
    fixed = loc.open()
    assert fixed.status().tolist()[:4] == [1, 1, 1, 0] and fixed.errors().tolist()[:4] == ["", "", "", ""]
    assert fixed.attempts().tolist()[4:8] == [1, 1, 1, 1] and fixed.verify().ok


def test_a_corrupt_identity_chunk_is_reported_as_beyond_repair(tmp_path):
    loc, store = written_store(tmp_path)
    flip_bytes(loc, "image_id/c/1/0")
    report = loc.open("r+").verify(repair=True)
    assert any("image_id of items 4-7 unreadable" in p for p in report.problems)
    assert loc.open().status().tolist()[4:8] == [1, 1, 1, 2]  # the codes are kept


@pytest.mark.parametrize("key, name", [("path/c/1/0", "path"), ("attempts/c/1", "attempts")])
def test_a_worker_reading_a_corrupt_chunk_of_its_shard_gets_the_repair_not_a_codec_error(tmp_path, key, name):
    """A ValueError from the codec would be retried as transient and end in "run again to resume", which never
    gets past it; the worker's read names the chunk and `store-verify --repair`, as a UserError (not retried)."""
    loc, store = written_store(tmp_path)
    store.array("status")[4:8] = Status.PENDING  # shard 1 to do again
    flip_bytes(loc, key)
    with pytest.raises(StoreCorruptError, match=rf"chunk 1 \(items 4-7\) of `{name}` is corrupt.*--repair"):
        loc.open("r+").read_shard_inputs(store.shard(1))


def test_planning_rebuilds_a_corrupt_status_chunk_so_a_rerun_can_resume(tmp_path):
    loc, store = written_store(tmp_path)
    flip_bytes(loc, "status/c/0", count=2)
    flip_bytes(loc, "ws/c/1/0/0")
    store.array("status")[5] = Status.PENDING  # chunk 1 is partly to do: workers would read its corrupt ws chunk
    result = plan(loc.open("r+"), make_manifest(12))
    assert any(r.startswith("repaired status chunk 0") for r in result.repairs)
    assert any(r.startswith("repaired ws chunk 1") for r in result.repairs)
    assert [s.index for s in result.shards] == [1] and result.items == 3  # items 4, 5, 6 (7 failed)
    assert loc.open().verify().ok


def test_a_run_blocked_by_an_error_a_rerun_would_meet_again_does_not_say_run_again_to_resume():
    crash = ShardReport(shard=2, error="OSError: worker lost")
    blocked = ShardReport(shard=3, error="StoreCorruptError: ... ganinv store-verify URL --repair", resumable=False)
    assert "run again to resume" in incomplete_message([crash])
    message = incomplete_message([crash, blocked])
    assert "run again to resume" not in message and "store-verify URL --repair" in message
