"""The multi-GPU scaling benchmark: its rates come from shard completions grouped by worker, and it runs end to end
on CPU workers (a smoke run of the same code the GPU run uses; timed only as the benchmark states)."""

import argparse

import pytest

from benchmarks import multi_gpu_scaling


def shard_event(pid: int, items: int, **timing) -> dict:
    return {"event": "shard", "pid": pid, "items": items, **timing}


def test_steady_rate_sums_each_workers_rate_after_its_first_shard_and_efficiency_compares_to_one_worker():
    args = argparse.Namespace(steps=10)
    one = {"wall_s": 50.0, "done": 40, "finished": [(10.0 + 5 * i, shard_event(7, 10)) for i in range(4)]}
    # two workers: worker 1 finishes shards at 10, 15; worker 2 at 12, 22 (slower)
    two = {"wall_s": 30.0, "done": 40, "finished": [(10.0, shard_event(1, 10)), (12.0, shard_event(2, 10)),
                                                    (15.0, shard_event(1, 10)), (22.0, shard_event(2, 10))]}
    rows = multi_gpu_scaling.with_efficiency([multi_gpu_scaling.rates(args, 1, one),
                                              multi_gpu_scaling.rates(args, 2, two)])
    assert rows[0]["steady_image_steps_per_s"] == pytest.approx(30 * 10 / 15)   # 3 shards after the first, in 15 s
    assert rows[1]["steady_image_steps_per_s"] == pytest.approx(10 * 10 / 5 + 10 * 10 / 10)
    assert rows[1]["steady_efficiency"] == pytest.approx(30 / (2 * 20))
    assert rows[1]["end_to_end_image_steps_per_s"] == pytest.approx(400 / 30)
    assert rows[1]["end_to_end_efficiency"] == pytest.approx((400 / 30) / (2 * 400 / 50))
    assert rows[1]["shards_per_worker"] == [2, 2] and rows[1]["workers_seen"] == 2


def test_a_worker_with_one_shard_leaves_the_steady_rate_unknown_rather_than_undercounted():
    args = argparse.Namespace(steps=1)
    run = {"wall_s": 9.0, "done": 3, "finished": [(1.0, shard_event(1, 1)), (2.0, shard_event(2, 1)),
                                                  (3.0, shard_event(1, 1))]}
    row = multi_gpu_scaling.rates(args, 2, run)
    assert row["steady_image_steps_per_s"] is None and row["images"] == 3


@pytest.mark.slow
def test_scaling_benchmark_runs_one_and_two_cpu_workers_through_the_flow(prefect_harness, tmp_path):
    # against the session's Prefect server (PREFECT_API_URL set: flows.prefect_api uses it, as a GPU run uses a
    # configured one) rather than a temporary one of its own: starting servers is tested elsewhere (test_cli_invert.py)
    payload = multi_gpu_scaling.main(["--world", "tiny", "--device", "cpu", "--cluster", "local", "--workers", "1,2",
                                      "--shards", "4", "--out", str(tmp_path / "o.json")])
    one, two = payload["rows"]
    assert (one["workers"], two["workers"]) == (1, 2)
    assert one["done"] == two["done"] == one["images"] == 16
    assert one["workers_seen"] == 1 and two["workers_seen"] == 2 and one["steady_efficiency"] == 1


def test_the_first_shard_of_each_worker_is_split_into_start_up_load_invert_and_the_rest():
    args = argparse.Namespace(steps=1)
    run = {"wall_s": 70.0, "done": 2, "finished": [
        (60.0, shard_event(5, 1, seconds=20.0, load_s=6.0, invert_s=12.0)),
        (70.0, shard_event(5, 1, seconds=10.0, load_s=0.0, invert_s=9.5))]}
    worker = multi_gpu_scaling.rates(args, 1, run)["per_worker"]["5"]
    assert (worker["first_shard_at_s"], worker["first_shard_before_task_s"]) == (60.0, 40.0)
    assert (worker["first_shard_load_s"], worker["first_shard_invert_s"], worker["first_shard_other_s"]) == (6, 12, 2)
