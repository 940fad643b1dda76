"""The flow-overhead benchmark runs end to end on CPU (it is timed only where stated), and its time budget cuts the
flow to the shards that fit."""

import json

import pytest

from benchmarks import flow_overhead
from benchmarks.common import Budget


@pytest.mark.slow
def test_flow_overhead_benchmark_runs_pure_and_task_parts(tmp_path):
    payload = flow_overhead.main(["--device", "cpu", "--shard-size", "2", "--shards", "1", "--steps", "1",
                                  "--batch-size", "2", "--parts", "pure,task", "--repeats", "1",
                                  "--out", str(tmp_path / "o.json")])
    parts = [row["part"] for row in payload["rows"]]
    assert parts == ["(a) pure inversion", "(b) task: decode + invert + store"]
    task = payload["rows"][1]
    assert task["detail"]["invert_s"] > 0 and task["seconds_per_shard"] >= task["detail"]["invert_s"]


@pytest.mark.slow
def test_flow_overhead_benchmark_inverts_a_sampled_world_through_the_flow_end_to_end(tmp_path):
    flow_overhead.main(["--world", "tiny", "--device", "cpu", "--cluster", "local", "--out", str(tmp_path / "o.json")])
    saved = json.loads((tmp_path / "o.json").read_text())
    assert [row["part"] for row in saved["rows"]] == [
        "(a) pure inversion", "(b) task: decode + invert + store", "(c) flow: Prefect + Dask, per shard",
        "(c) flow: end to end, server start to stop"]
    assert all(row["image_steps_per_s"] > 0 and row["seconds"] > 0 for row in saved["rows"])
    flow, world = saved["flow"], saved["world"]
    assert flow["items"] == flow["done"] == world["images"] == 8 and not flow["cut_by_budget"]
    assert flow["end_to_end_s"] >= flow["server_start_s"] + flow["flow_wall_s"]
    assert world["spec"]["mode"] == "optimize" and world["spec"]["encoder"] is None
    assert (world["spec"]["config"]["space"], world["spec"]["config"]["loss"]) == ("w+", "mse")


def test_config_f_world_defaults_to_2048_images_at_256_px_and_the_budget_cuts_its_flow():
    args = flow_overhead.parse_args(["--world", "config-f-256"])
    assert (args.shard_size * args.shards, args.batch_size, args.pure_images) == (2048, 64, 512)
    shard_s = 10.0
    room = lambda shards: Budget(flow_overhead.FLOW_FIXED_S + shards * shard_s * flow_overhead.FLOW_SLACK + 1)  # noqa
    assert flow_overhead.flow_shards(args, room(3), shard_s) == 3
    assert flow_overhead.flow_shards(args, room(100), shard_s) == args.shards
    assert flow_overhead.flow_shards(args, room(1), shard_s) == 0  # one shard gives no completion spacing
