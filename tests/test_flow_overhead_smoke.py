"""The flow-overhead benchmark runs end to end on CPU without its flow part (it is timed only where stated)."""

import pytest

from benchmarks import flow_overhead


@pytest.mark.slow
def test_flow_overhead_benchmark_runs_pure_and_task_parts(tmp_path):
    payload = flow_overhead.main(["--device", "cpu", "--shard-size", "2", "--shards", "1", "--steps", "1",
                                  "--batch-size", "2", "--parts", "pure,task", "--repeats", "1",
                                  "--out", str(tmp_path / "o.json")])
    parts = [row["part"] for row in payload["rows"]]
    assert parts == ["(a) pure inversion", "(b) task: decode + invert + store"]
    task = payload["rows"][1]
    assert task["detail"]["invert_s"] > 0 and task["seconds_per_shard"] >= task["detail"]["invert_s"]
