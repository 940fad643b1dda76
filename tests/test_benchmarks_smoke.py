"""The benchmark scripts run end to end on CPU with --tiny (they are timed only on the GPU machine)."""

import json

import pytest

from benchmarks import inversion_quality, invert_throughput, saved_activations


@pytest.mark.slow
def test_throughput_benchmark_runs_tiny_and_writes_its_table(tmp_path):
    out = tmp_path / "throughput.json"
    payload = invert_throughput.main(["--tiny", "--device", "cpu", "--generators", "config-f,faces64",
                                      "--out", str(out)])
    all_rows = json.loads(out.read_text())["rows"]
    for generator in ("config-f", "faces64"):  # faces64 is shipped, so it is timed too
        rows = [r for r in all_rows if r["generator"] == generator]
        assert [r["method"] for r in rows] == ["baseline (projector loop)", "engine (batched)", "engine (batched)"]
        assert [r["batch"] for r in rows] == [1, 1, 4]
        assert all(r["image_steps_per_s"] > 0 for r in rows) and rows[0]["ratio_to_baseline"] == 1
    assert payload["loss"] == "vgg-random-trunk"  # never called LPIPS: the trunk is random


@pytest.mark.slow
def test_quality_report_runs_tiny_with_every_method(tmp_path):
    payload = inversion_quality.main(["--tiny", "--device", "cpu", "--steps", "2", "--out", str(tmp_path / "q.json")])
    assert [(r["method"], r["steps"]) for r in payload["rows"]] == [
        ("W", 2), ("W+", 2), ("encoder", 0), ("hybrid (W+)", 2)]
    assert all(0 < r["ssim"] <= 1 and r["psnr"] > 0 and r["perceptual"] >= 0 for r in payload["rows"])


def test_saved_activations_recomputing_stylegan3s_filtered_lrelu_keeps_less_and_computes_the_same():
    rows = saved_activations.main(["--resolution", "32", "--channel-divisor", "64", "--batch", "2", "--recompute",
                                   "--repeats", "1"])
    plain, recomputed = rows.values()
    assert recomputed["saved"] < plain["saved"] / 2 and recomputed["same"]
    assert len(plain["seconds"]) == len(recomputed["seconds"]) == 1


def test_quality_report_reads_held_out_images_from_a_folder(tmp_path):
    import numpy as np
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full([20, 20, 3], 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    images = inversion_quality.load_images(str(tmp_path), 16, limit=2)
    assert images.shape == (2, 3, 16, 16)
    assert images[0].max() == -1 and abs(images[1].mean().item() - (60 / 127.5 - 1)) < 1e-5


@pytest.mark.slow
def test_perf_benchmark_runs_tiny_with_baseline_variants_quality_and_profile(tmp_path):
    from benchmarks import perf_inversion

    payload = perf_inversion.main(["--tiny", "--device", "cpu", "--out", str(tmp_path / "perf.json"),
                                   "--profile", str(tmp_path / "profile.txt")])
    saved = json.loads((tmp_path / "perf.json").read_text())
    rows = [r for r in saved["rows"] if r["generator"] == "tiny 32 px"]
    assert [r["variant"] for r in rows] == ["baseline (projector loop)", "fp32", "bf16", "bf16+cl", "bf16+cl+graph"]
    assert all("error" not in r and r["image_steps_per_s"] > 0 and r["tflops"] > 0 for r in rows)
    assert saved["flops_per_image_step"]["tiny 32 px"] > 0
    quality = {(q["generator"], q["variant"]) for q in payload["quality"]}
    assert ("tiny 32 px", "bf16+cl+graph") in quality
    assert all(abs(q["psnr_rel"]) < 0.05 for q in payload["quality"])
    assert "aten::" in (tmp_path / "profile.txt").read_text()


@pytest.mark.slow
def test_perf_benchmark_records_what_each_compiled_variant_compiled(tmp_path):
    import torch._dynamo

    from benchmarks import perf_inversion

    torch._dynamo.reset()  # as in the benchmark's own fresh process: no compiled code from earlier tests
    payload = perf_inversion.main(["--tiny", "--device", "cpu", "--backend", "aot_eager", "--no-faces64",
                                   "--variants", "fp32,bf16+cl+compile", "--steps", "3",
                                   "--startup-resolutions", "", "--out", str(tmp_path / "perf.json")])
    rows = {r["variant"]: r for r in json.loads((tmp_path / "perf.json").read_text())["rows"]}
    assert "graphs" not in rows["fp32"]  # nothing compiled, nothing claimed
    # tiny 32 px: 4 blocks of 3 widths (32 at 4-16 px, 16 at 32 px), then the loss and the noise regulariser
    # (static block graphs, one per block: tests/test_regional_compile.py).
    row, stats = rows["bf16+cl+compile"], rows["bf16+cl+compile"]["compile"]
    assert "error" not in row and row["graphs"] == stats["graphs"] == 3 + 2, stats["frames"]
    assert stats["frames"][next(f for f in stats["frames"] if "stylegan2.py" in f)] == 3
    assert row["recompiles"] == 2  # the block forward's second and third width, each with the guard that failed
    assert all("size mismatch" in r["recompile_reason"] for r in stats["rows"] if r["recompile_reason"])
    assert stats["graph_breaks"] == 0 and stats["failed"] == [] and stats["restarts"] == 0
    forward = [r for r in stats["rows"] if r["kind"] == "forward"]
    assert len(forward) == 3 + 2 and all(r["seconds"] > 0 for r in forward)
    assert 0 < row["compile_s"] <= row["batch_s"] + row["warmup_s"]  # compiling happens inside those
    assert abs(payload["quality"][0]["psnr_rel"]) < 0.05


@pytest.mark.slow
def test_startup_timeline_times_a_cold_and_a_warm_worker_process():
    from benchmarks.startup_timeline import STAMPS, measure_startup

    # 16 px (4 graphs to trace, not 5 at 32 px: ~20% less CPU) and an MSE loss (its graph is a few ops; VGG16's took
    # 12 of each process's 24 s of CPU): the stamps, graphs and trajectory are checked alike
    result = measure_startup(16, 4, tiny=True, device="cpu", steps=1, backend="aot_eager", timeout=600, loss="mse")
    for start in ("cold", "warm"):
        timeline = result[start]
        assert "error" not in timeline, timeline
        stamps = [timeline["python_start_s"]] + [timeline[name] for name in STAMPS]
        assert all(0 < a <= b for a, b in zip(stamps, stamps[1:])), timeline
        assert timeline["steady_step_s"] > 0 and len(timeline["latent"]) == 4
        # every process traces its graphs (dynamo keeps no cache across processes; the backends' caches do): at
        # 16 px the tiny generator's blocks have 2 widths, then the loss and the noise regulariser
        assert timeline["compile"]["graphs"] == 2 + 2 and timeline["compile"]["graph_breaks"] == 0
    assert result["cold"]["latent"] == result["warm"]["latent"]  # two processes, one trajectory (CPU: bitwise)


@pytest.mark.slow
def test_perf_benchmark_runs_a_tiny_stylegan3_against_its_projector_baseline(tmp_path):
    from benchmarks import perf_inversion

    payload = perf_inversion.main(["--tiny", "--arch", "stylegan3-t", "--device", "cpu", "--variants", "fp32,bf16",
                                   "--steps", "4", "--out", str(tmp_path / "perf.json")])
    rows = [r for r in payload["rows"] if r["generator"] == "tiny stylegan3-t 32 px"]
    assert [r["variant"] for r in rows] == ["baseline (projector loop)", "fp32", "bf16"]
    assert all("error" not in r and r["image_steps_per_s"] > 0 and r["tflops"] > 0 for r in rows)
    assert payload["arch"] == "stylegan3-t" and payload["flops_per_image_step"]["tiny stylegan3-t 32 px"] > 0
    assert all(abs(q["psnr_rel"]) < 0.05 for q in payload["quality"])


def test_modconv_benchmark_runs_tiny_and_every_form_computes_the_same_function(tmp_path):
    from benchmarks import modconv_variants

    payload = modconv_variants.main(["--tiny", "--device", "cpu", "--out", str(tmp_path / "mc.json")])
    rows = payload["rows"]
    assert {r["form"] for r in rows} == {"unfused", "grouped", "bmm"} and not any("error" in r for r in rows)
    assert all(r["rel_err"] < (1e-5 if r["precision"] == "fp32" else 2e-2) for r in rows)


def test_scan_rescan_benchmark_reuses_every_hash_locally_and_on_s3(tmp_path):
    import socket

    from benchmarks import scan_rescan

    with socket.socket() as s:  # a free port for the benchmark's own moto server
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    payload = scan_rescan.main(["--n", "12", "--port", str(port), "--out", str(tmp_path / "o.json")])
    assert [row["where"] for row in payload["rows"]] == ["local folder", "S3 (moto, loopback)"]
    for row in payload["rows"]:
        assert (row["files"], row["hashed_on_rescan"], row["reused_on_rescan"]) == (12, 0, 12)


@pytest.mark.slow
def test_pivotal_benchmark_runs_tiny_with_every_part(tmp_path):
    from benchmarks import pivotal

    payload = pivotal.main(["--tiny", "--device", "cpu", "--out", str(tmp_path / "pivotal.json")])
    saved = json.loads((tmp_path / "pivotal.json").read_text())
    assert [r["method"] for r in saved["quality"]] == ["W+", "W+ (noise maps, not storable)", "hybrid (W+)",
                                                       "hybrid + pivotal"]
    assert all(r["steps"] == 8 for r in saved["quality"]) and saved["quality"][-1]["schedule"] == "4+4"
    assert 0 < saved["quality"][-1]["zstd_bytes_per_item"] <= saved["quality"][-1]["bytes_per_item"] < 2 ** 20
    assert [g["budget"] for g in saved["goals"]] == [8]
    assert [r["form"] for r in saved["forms"]] == ["pivot alone (hybrid)", "rank=0,tune_bias=True", "rank=1"]
    assert saved["forms"][1]["bytes_per_item"] < saved["forms"][2]["bytes_per_item"]
    assert {r["direction"] for r in payload["edits"]} == {"a", "b", "c", "d", "e"}  # the synthetic attributes
    assert list(payload["edits_raw"]) == ["untuned (hybrid, G)", "tuned (pivot + delta, G')"]
    assert [(r["batch"], r["image_steps_per_s"] > 0) for r in saved["speed"]] == [(1, True), (4, True)] * 2
    tables = pivotal.main(["--tables", str(tmp_path / "pivotal.json")])  # rebuilt from the raw rows the JSON keeps
    assert json.dumps(tables["edits"]) == json.dumps(payload["edits"])  # NaN (nothing eligible) both sides


@pytest.mark.slow
def test_encoder_any_generator_benchmark_trains_two_encoders_and_checks_every_goal(tmp_path):
    from benchmarks import encoder_any_generator

    payload = encoder_any_generator.main(["smoke", "--out", str(tmp_path / "enc.json")])
    rows = json.loads((tmp_path / "enc.json").read_text())["rows"]
    assert {(r["encoder"], r["method"]) for r in rows} >= {
        ("-", "W+"), ("generator", "encoder"), ("generator", "hybrid (W+)"), ("generator+24", "encoder"),
        ("generator+24", "hybrid (W+)"), ("-", "W+, 3 + 3 refined"), ("-", "W+, 6 in one go"),
        ("generator", "hybrid (W+), 3 + 3 refined"), ("generator", "hybrid (W+), 6 in one go")}
    assert payload["perceptual"] == "alex-random-trunk"  # a random trunk: never called LPIPS
    assert set(payload["goals"]) == {"generator", "generator+24", "refinement W+", "refinement hybrid (W+)"}
    assert all(payload["training"][name]["step"] == 4 for name in ("generator", "generator+24"))


def test_an_encoder_training_chunk_travels_from_the_device_and_back(tmp_path):
    from benchmarks import encoder_any_generator
    from benchmarks.common import tiny_generator
    from ganinv.generators import save_generator
    from ganinv.training.checkpoint import load_checkpoint

    generator = save_generator(tiny_generator(16), tmp_path / "g.safetensors")
    summary = encoder_any_generator.main(["train", "--run-dir", str(tmp_path / "run"), "--generator", str(generator),
                                          "--steps", "2", "--batch-size", "2", "--pixel-weight", "3", "--device", "cpu",
                                          "--out", str(tmp_path / "out")])
    assert summary["step"] == summary["total_steps"] == 2
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names[:2] == ["checkpoint-checkpoint.json", "checkpoint-tensors-000.safetensors"]
    assert names[-2:] == ["log.jsonl", "run.json"]
    encoder_any_generator.main(["install", "--source", str(tmp_path / "out"), "--run-dir", str(tmp_path / "back")])
    state = load_checkpoint(tmp_path / "back" / "checkpoint")
    assert state["step"] == 2 and state["config"]["pixel_weight"] == 3
    encoder_any_generator.main(["export", "--run-dir", str(tmp_path / "back"), "--to", str(tmp_path / "e.safetensors")])
    from ganinv.generators import load_generator
    from ganinv.models.encoder import load_encoder

    assert load_encoder(tmp_path / "e.safetensors", generator=load_generator(generator)).num_ws == 6


@pytest.mark.slow
def test_fault_injection_benchmark_kills_a_worker_at_a_random_write_and_loses_nothing(tmp_path):
    from benchmarks import fault_injection

    payload = fault_injection.main(["--only", "worker dies at a random store write", "--only", "garbage root",
                                    "--trials", "1", "--seed", "3", "--out", str(tmp_path / "faults.json")])
    rows = {row["fault"].split(",")[0]: row for row in payload["rows"]}
    assert set(rows) == {"worker dies at a random store write", "garbage root zarr.json"}
    killed = rows["worker dies at a random store write"]
    assert killed["trials"] == 1 and killed["writes_per_run"] > 20  # every chunk write of 6 shards is counted
    assert all(row["lost"] == 0 and row["duplicated"] == 0 for row in payload["rows"]), payload["rows"]
    assert rows["garbage root zarr.json"]["garbage_root_refused"]
    assert json.loads((tmp_path / "faults.json").read_text())["rows"] == json.loads(json.dumps(payload["rows"]))


@pytest.mark.slow
def test_cpu_per_image_benchmark_runs_every_variant_and_keeps_their_codes(tmp_path):
    from benchmarks import cpu_per_image

    rows = cpu_per_image.main(["--faces", "3", "--rounds", "1", "--steps", "1", "--batch", "2",
                               "--out", str(tmp_path / "cpu.json")])
    assert [r["variant"] for r in rows] == list(cpu_per_image.VARIANTS)
    assert all(r["same"] and r["cpu_s"] > 0 for r in rows)  # shortcuts change no bit; rows batches none either
