"""The evaluation report: numbers that match the store, regressions against the previous run, a self-contained
folder, FID only with real weights, the CLI's exit codes and the Prefect flow's final state and artifact."""

from __future__ import annotations

import json
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from _report_helpers import make_run_store
from report import ReportConfig, Thresholds, build_report, load_history
from report.schema import SCHEMA_NAME, SCHEMA_VERSION
from ganinv.metrics import (INCEPTION_WEIGHTS_FILE, InceptionWeightsMissing, embedding_frechet_distance,
                            fid_unavailable_reason)
from storage import LatentStore, Status

TOP_LEVEL_KEYS = {"schema", "schema_version", "run", "generated_at", "counts", "quality", "perceptual_metrics",
                  "by_label", "failures", "distribution", "throughput", "provenance", "edits", "comparison", "figures",
                  "restoration", "pivotal", "refinement_passes", "ood"}  # the last four: null for a store
# without those stages


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag in ("a", "link") and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "script":
            self.scripts += 1


def links_of(html_path: Path) -> _Links:
    parser = _Links()
    parser.feed(html_path.read_text())
    return parser


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> dict:
    """A good night, then a worse one (noisier reconstructions, failures), reported in that order."""
    tmp = tmp_path_factory.mktemp("runs")
    good = make_run_store(tmp, "good", noise=6.0)
    worse = make_run_store(tmp, "worse", noise=14.0, fail_every=5, seconds=0.6)
    reports = tmp / "reports"
    first = build_report(good, reports, ReportConfig(run="night1", fid=False))
    second = build_report(worse, reports, ReportConfig(run="night2", fid=False))
    return dict(tmp=tmp, good=good, worse=worse, reports=reports, first=first, second=second)


def test_metrics_json_has_the_documented_keys_and_matches_the_store(two_runs):
    result = two_runs["second"]
    body = json.loads((result.path.parent / "metrics.json").read_text())
    assert set(body) == TOP_LEVEL_KEYS
    assert (body["schema"], body["schema_version"], body["run"]) == (SCHEMA_NAME, SCHEMA_VERSION, "night2")
    assert body["restoration"] is None and body["pivotal"] is None and body["refinement_passes"] is None
    store = LatentStore.open(two_runs["worse"])
    status = store.array("status")[:]
    psnr = store.array("metrics/psnr")[:][status == Status.DONE]
    assert body["counts"] == dict(items=24, done=int((status == Status.DONE).sum()),
                                  failed=int((status == Status.FAILED).sum()), pending=0,
                                  failure_rate=pytest.approx((status == Status.FAILED).mean()))
    assert body["quality"]["psnr"]["mean"] == pytest.approx(float(psnr.mean()), rel=1e-6)
    assert body["quality"]["psnr"]["n"] == len(psnr)
    assert body["perceptual_metrics"] == ["clf-perceptual"]
    assert "not LPIPS" in body["quality"]["clf-perceptual"]["label"]
    smiling = body["by_label"]["smiling"]
    assert smiling["kind"] == "binary" and sum(g["n"] for g in smiling["groups"]) == body["counts"]["done"]
    assert [g["group"] for g in body["by_label"]["yaw"]["groups"]] == ["low", "mid", "high"]
    assert body["throughput"]["device_seconds_per_image"] == pytest.approx(0.6)
    assert body["provenance"]["generator"]["sha256"] == store.attributes.generator.sha256
    assert json.dumps(body, allow_nan=False)  # strict JSON: no NaN anywhere


def test_failures_are_grouped_by_reason_with_examples(two_runs):
    failures = two_runs["second"].metrics["failures"]
    assert failures["count"] == sum(r["count"] for r in failures["reasons"]) > 0
    assert {r["reason"] for r in failures["reasons"]} == {"CUDA out of memory", "unreadable image: truncated file"}
    assert all(0 < len(r["examples"]) <= r["count"] for r in failures["reasons"])
    html = two_runs["second"].path.read_text()
    assert "CUDA out of memory" in html and "unreadable image: truncated file" in html


def test_a_worse_run_is_flagged_at_the_top_of_its_report(two_runs):
    first, second = two_runs["first"], two_runs["second"]
    assert first.regressions == () and first.metrics["comparison"]["previous_run"] is None
    flagged = {r.check for r in second.regressions}
    assert {"psnr_drop_db", "ssim_drop", "failure_rate_rise", "perceptual_rise_rel"} <= flagged
    assert second.metrics["comparison"]["previous_run"] == "night1"
    html = second.path.read_text()
    banner = html.index('class="banner bad"')
    assert banner < html.index("<h2") and "regression" in html[banner:banner + 300]
    psnr = next(r for r in second.regressions if r.check == "psnr_drop_db")
    assert psnr.message in html and psnr.current < psnr.previous - 0.5


def test_an_improvement_is_not_a_regression(two_runs, tmp_path):
    result_a = build_report(two_runs["worse"], tmp_path, ReportConfig(run="a", fid=False))
    result_b = build_report(two_runs["good"], tmp_path, ReportConfig(run="b", fid=False))
    assert result_a.regressions == () and result_b.regressions == ()
    assert 'class="banner good"' in result_b.path.read_text()


def test_a_run_made_differently_is_compared_with_a_caveat(two_runs, tmp_path):
    assert two_runs["second"].metrics["comparison"]["caveats"] == []
    shutil.copytree(two_runs["reports"] / "night1", tmp_path / "night1")
    result = build_report(make_run_store(tmp_path, "fewer_steps", steps=30), tmp_path,
                          ReportConfig(run="night2", fid=False))
    assert result.metrics["comparison"]["caveats"] == ["the previous run used another inversion config"]
    assert "Compare with care: the previous run used another inversion config" in result.path.read_text()


def test_thresholds_are_configurable(two_runs, tmp_path):
    shutil.copytree(two_runs["reports"] / "night1", tmp_path / "night1")
    lenient = Thresholds(psnr_drop_db=100, ssim_drop=1, failure_rate_rise=1, perceptual_rise_rel=100,
                         fd_clf_rise_rel=100, seconds_per_image_rise_rel=100)
    config = ReportConfig(run="night2", thresholds=lenient, fid=False)
    assert build_report(two_runs["worse"], tmp_path, config).regressions == ()
    assert Thresholds.parse(["psnr_drop_db=0.25"]).psnr_drop_db == 0.25
    with pytest.raises(ValueError, match="psnr_drop_db"):
        Thresholds.parse(["psnr=1"])
    assert Thresholds.with_overrides({"ssim_drop": 0.5}) == Thresholds(ssim_drop=0.5)


def test_reports_index_lists_runs_newest_first_and_history_reads_them_oldest_first(two_runs):
    index = two_runs["reports"] / "index.html"
    links = [h for h in links_of(index).links if h.endswith("/index.html")]
    assert links == ["night2/index.html", "night1/index.html"]
    assert [b["run"] for b in load_history(two_runs["reports"])] == ["night1", "night2"]


def test_report_folder_is_self_contained_and_movable(two_runs, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(two_runs["reports"], moved)
    page = moved / "night2" / "index.html"
    found = links_of(page)
    assert found.scripts == 0 and len(found.images) >= 4
    for src in found.images:
        assert not re.match(r"^[a-z]+:|^/", src), src  # relative links only
        with Image.open(page.parent / src) as image:
            assert image.size[0] > 50
    assert all(not re.match(r"^[a-z]+:", h) for h in found.links)
    assert "@import" not in page.read_text() and "url(" not in page.read_text()


def test_grids_show_originals_beside_reconstructions(two_runs):
    folder = two_runs["second"].path.parent
    figures = two_runs["second"].metrics["figures"]
    assert {"grid_sample", "grid_worst", "histograms", "by_label_psnr", "trends"} <= set(figures)
    with Image.open(folder / figures["grid_sample"]) as grid:
        assert grid.size[0] >= 4 * 2 * 128


def test_trends_need_an_earlier_run(two_runs):
    assert "trends" not in two_runs["first"].metrics["figures"]
    assert "trends" in two_runs["second"].metrics["figures"]


def test_edit_rows_and_galleries_are_rendered_and_copied(two_runs, tmp_path):
    rows = [dict(direction="interfacegan-smiling", method="interfacegan", target="smiling", strength=3.0,
                 flip_rate=0.8, interference=0.05, interference_max=0.1, pixel_change=0.07)]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    gallery = tmp_path / "smiling.png"
    Image.new("RGB", (80, 40), "orange").save(gallery)
    result = build_report(two_runs["good"], tmp_path / "reports", ReportConfig(
        run="r", fid=False, edit_rows=tmp_path / "rows.json", galleries=[("smiling -3 .. 3", gallery)]))
    html = result.path.read_text()
    assert "interfacegan-smiling" in html and "80.0 %" in html and "smiling -3 .. 3" in html
    copied = [src for src in links_of(result.path).images if src.startswith("galleries/")]
    assert len(copied) == 1 and (result.path.parent / copied[0]).read_bytes() == gallery.read_bytes()
    assert result.metrics["edits"]["evaluation"][0]["flip_rate"] == 0.8


def test_fid_without_inception_weights_says_which_file_goes_where(two_runs, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    reason = fid_unavailable_reason()
    assert reason is not None
    result = build_report(two_runs["good"], tmp_path / "reports", ReportConfig(run="r"))
    fid = result.metrics["distribution"]["fid"]
    assert fid["value"] is None and fid["reason"] == reason
    if "torch-fidelity is not installed" not in reason:
        assert INCEPTION_WEIGHTS_FILE in reason and str(tmp_path / "hub" / "checkpoints") in reason
    with pytest.raises(InceptionWeightsMissing, match="--fid"):
        build_report(two_runs["good"], tmp_path / "reports", ReportConfig(run="r2", fid=True))
    assert not (tmp_path / "reports" / "r2").exists()


def test_fd_clf_is_named_honestly_with_its_sample_size(two_runs):
    fd = two_runs["second"].metrics["distribution"]["fd_clf"]
    assert fd["name"].startswith("FD-clf") and "not FID" in fd["name"]
    assert fd["n"] == two_runs["second"].metrics["counts"]["done"] and fd["value"] > 0
    assert two_runs["second"].metrics["distribution"]["fd_clf"]["value"] > two_runs["first"].metrics[
        "distribution"]["fd_clf"]["value"]


def test_embedding_frechet_distance_grows_with_the_shift():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(64, 3, 8, 8, generator=g) * 2 - 1
    embed = lambda x: x.mean(dim=(2, 3))  # noqa: E731 - 3-d features
    same = embedding_frechet_distance(real, real.clone(), embed)
    near = embedding_frechet_distance(real, (real + 0.1).clamp(-1, 1), embed)
    far = embedding_frechet_distance(real, (real + 0.5).clamp(-1, 1), embed)
    assert abs(same) < 1e-6 and 0 < near < far


def test_fid_is_computed_when_weights_are_present(two_runs, tmp_path, monkeypatch):
    """With a file of the right name in the hub folder (random weights here), torchmetrics computes FID offline."""
    extractor = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(extractor.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    monkeypatch.setattr(extractor.torch, "load", lambda path, **kw: {})
    torch.manual_seed(0)
    random_net = extractor.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], "unused-path")
    monkeypatch.undo()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(extractor.torch, "load", lambda path, **kw: random_net.state_dict())
    assert fid_unavailable_reason() is not None  # the file is not there yet
    (hub / "checkpoints" / INCEPTION_WEIGHTS_FILE).write_bytes(b"present")
    assert fid_unavailable_reason() is None
    result = build_report(two_runs["good"], tmp_path / "reports", ReportConfig(run="r", fid=True, max_fd_items=6))
    fid = result.metrics["distribution"]["fid"]
    assert fid["value"] is not None and np.isfinite(fid["value"]) and fid["n"] == 6 and fid["reason"] is None


def test_cli_report_exit_code_says_regressed(two_runs, tmp_path):
    from cli.app import app
    from cli.report import REGRESSION_EXIT_CODE

    shutil.copytree(two_runs["reports"] / "night1", tmp_path / "night1")
    runner = CliRunner()
    args = ["report", two_runs["worse"], "--reports-root", str(tmp_path), "--no-fid"]
    failed = runner.invoke(app, [*args, "--run", "a"])
    assert failed.exit_code == REGRESSION_EXIT_CODE, failed.output
    assert "REGRESSION: mean PSNR fell" in failed.output
    assert (tmp_path / "a" / "index.html").resolve().as_uri() in failed.output
    ok = runner.invoke(app, [*args, "--run", "b", "--no-fail-on-regression", "--threshold", "psnr_drop_db=0.1"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, [*args, "--threshold", "nonsense=1"])
    assert bad.exit_code == 2 and "NAME=VALUE" in bad.output
    missing = runner.invoke(app, ["report", str(tmp_path / "nowhere.zarr"), "--reports-root", str(tmp_path)])
    assert missing.exit_code == 2 and "no latent store" in missing.output


@pytest.mark.slow
def test_flow_ends_failed_with_the_regressions_and_links_the_report(two_runs, tmp_path, prefect_harness):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.evaluation_report import ARTIFACT_KEY, evaluation_report

    shutil.copytree(two_runs["reports"] / "night1", tmp_path / "night1")
    regressed = evaluation_report(two_runs["worse"], str(tmp_path), ReportConfig(run="n2", fid=False),
                                  return_state=True)
    assert regressed.is_failed() and "regression(s) against run night1" in regressed.message
    assert "mean PSNR fell" in regressed.message
    shutil.copytree(two_runs["reports"] / "night1", tmp_path / "other" / "night1")
    relaxed = evaluation_report(two_runs["worse"], str(tmp_path / "other"),
                                ReportConfig(run="n3", fid=False, fail_on_regression=False), return_state=True)
    assert relaxed.is_completed() and relaxed.result()["regressions"]

    async def artifacts() -> list:
        async with get_client() as client:
            key = ArtifactFilterKey(any_=[ARTIFACT_KEY])
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=key))

    markdown = [a.data for a in asyncio.run(artifacts())]
    assert any((tmp_path / "n2" / "index.html").resolve().as_uri() in text and "mean PSNR fell" in text
               for text in markdown)


def test_directions_edit_rows_and_grids_recorded_in_the_store_are_reported(tmp_path):
    url = make_run_store(tmp_path, "edited", n=8)
    store = LatentStore.open(url, "r+")
    group = store.result_group("directions", "interfacegan-smiling", made_by={"flow": "fit-boundaries"})
    group.attrs.update({"direction": {"name": "interfacegan-smiling", "method": "interfacegan", "space": "w",
                                      "provenance": {"attribute": "smiling"}}})
    grids = tmp_path / "edited.zarr.edits" / "night"
    grids.mkdir(parents=True)
    Image.new("RGB", (64, 32), "purple").save(grids / "interfacegan-smiling.png")
    (grids / "index.json").write_text(json.dumps({"grids": {"interfacegan-smiling": "interfacegan-smiling.png"}}))
    row = dict(direction="interfacegan-smiling", method="interfacegan", target="smiling", strength=5.0,
               flip_rate=0.625, interference=0.1, interference_max=0.2, pixel_change=0.05)
    edits = store.result_group("edits", "night", made_by={"flow": "render-edits", "grids": str(grids)})
    edits.attrs.update({"evaluation": [row]})
    result = build_report(url, tmp_path / "reports", ReportConfig(run="r", fid=False))
    assert result.metrics["edits"]["directions"][0] | {"created": None} == dict(
        name="interfacegan-smiling", method="interfacegan", space="w", attribute="smiling", created=None,
        caveat=None)  # no SVM sample sizes recorded: nothing to warn of
    assert result.metrics["edits"]["evaluation"] == [dict(row, caveat=None)]  # rows without sample sizes: no warning
    html = result.path.read_text()
    assert "62.5 %" in html and "edit run night: interfacegan-smiling" in html
    copied = [src for src in links_of(result.path).images if src.startswith("galleries/")]
    assert [(result.path.parent / src).read_bytes() for src in copied] == [
        (grids / "interfacegan-smiling.png").read_bytes()]


def test_a_store_with_nothing_done_still_gets_a_report_that_says_so(tmp_path):
    from _report_helpers import write_images
    from _store_helpers import GENERATOR
    from storage import Manifest

    manifest = Manifest.from_records(write_images(tmp_path / "images", 5), root=str(tmp_path / "images"))
    url = str(tmp_path / "empty.zarr")
    LatentStore.create(url, manifest=manifest, num_ws=4, w_dim=8, generator=GENERATOR, config={"a": 1},
                       chunk_items=8, thumbnail_size=16)
    result = build_report(url, tmp_path / "reports", ReportConfig(run="r", fid=False))
    assert result.metrics["counts"] == dict(items=5, done=0, failed=0, pending=5, failure_rate=None)
    assert result.metrics["quality"] == {} and result.metrics["distribution"]["fd_clf"]["value"] is None
    html = result.path.read_text()
    assert "5 item(s) are still pending" in html and "No grids: no item is done." in html


def test_missing_originals_are_named_and_left_out_not_fatal(tmp_path):
    url = make_run_store(tmp_path, "moved", n=12)
    (tmp_path / "images" / "face003.png").unlink()
    result = build_report(url, tmp_path / "reports", ReportConfig(run="r", fid=False))
    fd = result.metrics["distribution"]["fd_clf"]
    assert fd["n"] == 11 and "face003.png" in fd["note"]
    assert "1 original(s) unreadable" in result.path.read_text()


def test_throughput_counts_the_runs_that_did_work_not_a_no_op_rerun(tmp_path):
    from storage.runs import record_run

    url = make_run_store(tmp_path, "log", n=12)
    unlogged = build_report(url, tmp_path / "reports", ReportConfig(run="r0", fid=False))
    assert (unlogged.metrics["throughput"]["wall_seconds"], unlogged.metrics["throughput"]["runs"]) == (None, 0)
    assert "its wall-clock speed is unknown" in unlogged.path.read_text()
    store = LatentStore.open(url, "r+")
    record_run(store, "first", seconds=4.0, items=8, done=8, failed=0, device_seconds=3.0, workers=2,
               devices=["cpu"])
    record_run(store, "second", seconds=2.0, items=4, done=3, failed=1, device_seconds=1.5, workers=1,
               devices=["cpu"])
    record_run(store, "nightly-no-op", seconds=30.0, items=0, done=0, failed=0, device_seconds=0.0, workers=0,
               devices=[])
    throughput = build_report(url, tmp_path / "reports", ReportConfig(run="r1", fid=False)).metrics["throughput"]
    assert (throughput["runs"], throughput["run_items"], throughput["wall_seconds"]) == (2, 12, 6.0)
    assert throughput["images_per_second"] == pytest.approx(2.0) and throughput["last_run"]["run_id"] == "second"
    assert throughput["unit"] == "device-seconds" and throughput["device_kind"] == "cpu"
