"""The whole product on a handful of images, as a user chains it: invert-dataset -> discover-directions ->
render-edits -> evaluation-report, on real Prefect (the session harness), real Dask (the session cluster) and a real
store on disk. The report must show what the inversion workers wrote (their metric names, their thumbnails) and
what the edit flows wrote (a gallery grid and the edit-evaluation table)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _flow_helpers import FAST
from _image_files import write_good_images
from ganinv.inversion.batch import item_metric_names
from runtime.config import DiscoverDirectionsConfig, ExecutionOptions, InvertConfig, RenderEditsConfig
from report import ReportConfig
from storage import LatentStore
from storage.runs import read_runs


@pytest.mark.slow
def test_invert_discover_render_and_report_line_up(prefect_harness, dask_cluster, tiny_generator_file, tmp_path):
    from flows.discover_directions import discover_directions
    from flows.evaluation_report import evaluation_report
    from flows.invert_dataset import invert_dataset
    from flows.render_edits import render_edits

    cluster = dask_cluster[0].scheduler_address
    generator = tiny_generator_file
    write_good_images(tmp_path / "images", 4)
    url = str(tmp_path / "corpus.zarr")
    # 1. invert, 2. directions from the store's generator, 3. edits rendered on the same workers, evaluated
    on_cluster = ExecutionOptions(cluster=cluster)
    inverted = invert_dataset(str(tmp_path / "images"), url, generator,
                              config=InvertConfig(inversion=FAST, shard_size=2), execution=on_cluster)
    assert inverted.counts == {"pending": 0, "done": 4, "failed": 0}
    rerun = invert_dataset(str(tmp_path / "images"), url, generator, config=InvertConfig(inversion=FAST),
                           execution=on_cluster)  # nothing left to do: it must not count in the throughput
    assert rerun.this_run.items == 0
    runs = read_runs(LatentStore.open(url))
    assert [(r["items"], r["done"], r["devices"]) for r in runs] == [(4, 4, ["cpu"])] and runs[0]["workers"] in (1, 2)
    assert discover_directions(url, DiscoverDirectionsConfig(methods=("sefa",), num_directions=1)) == ["sefa-0"]
    edited = render_edits(url, RenderEditsConfig(directions=("sefa-0",), strengths=(-1.0, 0.0, 1.0), run="e2e",
                                                 batch_size=2, evaluate_with="builtin"), on_cluster)
    assert edited.items == 4 and list(edited.grid_files) == ["sefa-0"]
    # 4. the report
    state = evaluation_report(url, str(tmp_path / "reports"), ReportConfig(run="e2e", fid=False), return_state=True)
    assert state.is_completed(), state.message
    folder = tmp_path / "reports" / "e2e"
    metrics = json.loads((folder / "metrics.json").read_text())
    store = LatentStore.open(url)
    written = set(item_metric_names(store.attributes.inversion["inversion"]["loss"]))
    assert set(store.layout.metrics) == written  # the store's metric arrays are the worker's names
    assert {"mse", "psnr", "ssim", "final_loss", "seconds"} <= set(metrics["quality"]) <= written
    psnr = store.array("metrics/psnr")[:4]
    assert metrics["quality"]["psnr"]["n"] == 4 and np.isclose(metrics["quality"]["psnr"]["mean"], psnr.mean())
    throughput = metrics["throughput"]
    assert throughput["timed_items"] == 4 and (throughput["runs"], throughput["run_items"]) == (1, 4)
    assert throughput["wall_seconds"] == runs[0]["seconds"] == inverted.seconds
    assert throughput["images_per_second"] == 4 / inverted.seconds  # the run that did the work, not the rerun
    assert store.array("thumbnails")[:4].any()  # the worker's reconstructions, shown beside the originals
    assert metrics["figures"]["grid_sample"] == "grid_sample.png" and (folder / "grid_sample.png").is_file()
    assert [(r["direction"], r["strength"]) for r in metrics["edits"]["evaluation"]] == [
        ("sefa-0", -1.0), ("sefa-0", 0.0), ("sefa-0", 1.0)]
    html = (folder / "index.html").read_text()
    assert "edit run e2e: sefa-0" in html and "PSNR" in html
    galleries = list((folder / "galleries").glob("*.png"))
    assert len(galleries) == 1 and galleries[0].read_bytes() == (tmp_path / "corpus.zarr.edits/e2e/sefa-0.png"
                                                                  ).read_bytes()
