"""The restoration benchmark runs end to end on CPU with --tiny (its numbers come from the GPU run)."""

import json

import pytest

from benchmarks import restoration


@pytest.mark.slow
def test_restoration_benchmark_runs_tiny_and_writes_rows_goals_and_figures(tmp_path):
    out = tmp_path / "restoration.json"
    restoration.main(["--tiny", "--device", "cpu", "--steps", "2", "--tasks", "super-resolution,denoise",
                      "--out", str(out), "--figures", str(tmp_path / "docs")])
    payload = json.loads(out.read_text())
    methods = [(r["task"], r["method"].split(":")[0].split(" (")[0] + ("+" if " + " in r["method"] else ""))
               for r in payload["rows"]]
    assert methods == [("super-resolution", "baseline"), ("super-resolution", "inversion"),
                       ("super-resolution", "inversion+"), ("denoise", "baseline"), ("denoise", "inversion")]
    assert payload["rows"][0]["method"] == "baseline: bicubic upsampling"
    assert payload["rows"][3]["method"].startswith("baseline: Gaussian blur (sigma")
    assert all(r["psnr"] > 0 and 0 < r["ssim"] <= 1 for r in payload["rows"])
    assert [g["task"] for g in payload["goals"]] == ["super-resolution", "denoise"]
    for task in ("super-resolution", "denoise"):
        assert (tmp_path / "docs" / f"restoration_{task}.png").stat().st_size > 1000
