"""`ganinv invert --refine pivotal` (issue 21) and the out-of-distribution scores of hybrid stores (issue 20): deltas
stored beside the codes survive the round trip bit for bit and render what the workers scored; refusals before any
server; one hybrid + refined run through the CLI on real Prefect and Dask, edited through its deltas and reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from _flow_helpers import FAST, prepare_store, save_tiny_encoder
from _image_files import write_good_images
from cli.app import app
from conftest import make_tiny_generator, make_tiny_sg3_generator
from ganinv.generators import save_generator
from ganinv.inversion import pivotal
from ganinv.inversion.batch import invert_batch
from ganinv.utils.seeds import seed_from_id
from runtime import models
from runtime.config import ExecutionOptions, InvertConfig, RenderEditsConfig
from runtime.coordinator import check_settings
from runtime.errors import ConfigError
from runtime.item_images import item_images
from runtime.shard import run_shard
from storage import LatentStore, refinements

runner = CliRunner()
REFINE = {"num_steps": 3, "loss": "mse"}


@pytest.fixture(scope="module")
def generator(tiny_generator_file):
    return tiny_generator_file


def test_deltas_survive_the_store_round_trip_bit_for_bit_and_render_what_the_worker_scored(generator, tmp_path):
    write_good_images(tmp_path / "imgs", 3)
    config = InvertConfig(inversion=FAST, refine=REFINE, thumbnail_size=16)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, config, chunk_items=4)
    run_shard(store.url, 0, generator=generator)
    store = LatentStore.open(store.url)
    G = models.generator(generator, "cpu")
    ids = [str(i) for i in store.image_ids()]
    spec = config.resolve(generator)
    targets = torch.stack([torch.from_numpy(np.asarray(Image.open(tmp_path / "imgs" / i), np.float32))
                           .permute(2, 0, 1) / 127.5 - 1 for i in ids])
    # a CPU worker inverts image by image (the store's recorded numerics, runtime/numerics.py): so does the check
    again = [invert_batch(G, targets[k:k + 1], mode=spec.mode, config=spec.config, refine=spec.refine,
                          seeds=[seed_from_id(i, spec.seed)], thumbnail_size=16) for k, i in enumerate(ids)]
    values, attrs = refinements.read_deltas(store, np.arange(3))
    assert values.dtype == np.float16 and values.shape == (3, attrs["values_per_item"])
    expected = np.concatenate([batch.deltas for batch in again])
    assert np.array_equal(values.view(np.uint16), expected.view(np.uint16))  # bit for bit
    deltas = pivotal.unpack(values, attrs)
    repacked, _ = pivotal.pack(deltas)
    assert np.array_equal(repacked.view(np.uint16), values.view(np.uint16))
    assert attrs["config"] == spec.refine.to_dict() and attrs["format"] == pivotal.DELTA_FORMAT
    tuned = item_images(store, np.arange(3), G)
    as_thumbnails = (tuned * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(as_thumbnails, store.thumbnails())  # the stored reconstructions, re-rendered
    untuned = item_images(store, np.arange(3), G, untuned=True)
    untuned_u8 = (untuned * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(untuned_u8, refinements.read_pivot_thumbnails(store, np.arange(3)))
    metrics = store.metrics()
    assert (metrics["steps"] == FAST["num_steps"] + REFINE["num_steps"]).all()
    assert np.isfinite(metrics["pivot_psnr"]).all() and not np.array_equal(metrics["pivot_psnr"], metrics["psnr"])


def test_refinement_is_refused_where_it_cannot_run(generator, tmp_path):
    with pytest.raises(ConfigError, match="optimize_noise must be off"):
        InvertConfig(refine={}, inversion={"optimize_noise": True}).resolve(generator)
    with pytest.raises(ConfigError, match="rank"):
        InvertConfig(refine={"rank": -1}).resolve(generator)
    sg3 = str(save_generator(make_tiny_sg3_generator(), tmp_path / "sg3.safetensors"))
    with pytest.raises(ConfigError, match="StyleGAN2's modulated convolutions.*stylegan3-t"):
        check_settings(sg3, InvertConfig(inversion=FAST, refine=REFINE))
    conditional = str(save_generator(make_tiny_generator(c_dim=3), tmp_path / "cond.safetensors"))
    with pytest.raises(ConfigError, match="conditional"):
        check_settings(conditional, InvertConfig(inversion=FAST, refine=REFINE))
    check_settings(conditional, InvertConfig(inversion=FAST, refine={**REFINE, "locality_weight": 0.0}))
    images = str(write_good_images(tmp_path / "imgs", 1)[0].parent)  # IMAGES without an image are refused first
    result = runner.invoke(app, ["invert", images, "--store", str(tmp_path / "s.zarr"), "--generator", sg3,
                                 "--steps", "2", "--loss", "mse", "--refine", "pivotal"])
    assert result.exit_code == 2 and "without --refine" in result.output  # before any server: no Prefect here
    result = runner.invoke(app, ["invert", images, "--store", str(tmp_path / "s.zarr"), "--refine-steps", "3"])
    assert result.exit_code == 2 and "need --refine pivotal" in " ".join(result.output.split())


@pytest.mark.slow
def test_hybrid_refined_run_stores_deltas_and_ood_scores_edits_through_the_deltas_and_reports_them(
        prefect_harness, dask_cluster, generator, tmp_path):
    from flows.discover_directions import discover_directions
    from flows.render_edits import render_edits
    from report import ReportConfig, build_report
    from runtime.config import DiscoverDirectionsConfig

    encoder = save_tiny_encoder(tmp_path, generator)
    write_good_images(tmp_path / "imgs", 5)
    url, cluster = str(tmp_path / "s.zarr"), dask_cluster[0].scheduler_address
    result = runner.invoke(app, ["invert", str(tmp_path / "imgs"), "--store", url, "--generator", generator,
                                 "--mode", "hybrid", "--encoder", encoder, "--steps", "3", "--loss", "mse",
                                 "--thumbnail-size", "16", "--refine", "pivotal", "--refine-steps", "3",
                                 "--refine-loss", "mse", "--refine-rank", "2", "--cluster", cluster])
    assert result.exit_code == 0, result.output
    store = LatentStore.open(url)
    assert refinements.pivotal_attrs(store)["rank"] == 2
    metrics = store.metrics()
    for name in ("encoder_mse", "encoder_psnr", "pivot_psnr", "psnr", "ood_score"):
        assert np.isfinite(metrics[name]).all(), name
    assert sorted(metrics["ood_score"]) == pytest.approx(np.arange(1, 10, 2) / 10)  # ranks among the store's own
    info = runner.invoke(app, ["store-info", url])
    assert "refinement  pivotal: rank 2, 3 steps" in info.output and "ood score   5 items from mse" in info.output
    # Edits render each item through its delta (strength 0 = the stored reconstruction), or not with --untuned.
    assert discover_directions(url, DiscoverDirectionsConfig(methods=("sefa",), num_directions=1)) == ["sefa-0"]
    on = ExecutionOptions(cluster=cluster)
    for run, untuned in (("tuned", False), ("untuned", True)):
        render_edits(url, RenderEditsConfig(directions=("sefa-0",), strengths=(-1.0, 0.0, 1.0), run=run,
                                            untuned=untuned, batch_size=5), on)
    tuned, untuned = (np.asarray(Image.open(f"{url}.edits/{run}/sefa-0.png")) for run in ("tuned", "untuned"))
    header = json.loads(Path(f"{url}.edits/tuned/index.json").read_text())["header_px"]  # the strengths' labels
    middle = slice(16, 32)  # the strength-0 column
    rows = lambda grid: grid[header:, middle].reshape(5, 16, 16, 3)  # noqa: E731
    assert np.abs(rows(tuned).astype(int) - store.thumbnails()).max() <= 1
    assert np.abs(rows(untuned).astype(int) - refinements.read_pivot_thumbnails(store)).max() <= 1
    assert not np.array_equal(tuned, untuned)
    # The report: pivot vs tuned, bytes per item, the most unusual items.
    report = build_report(url, tmp_path / "reports", ReportConfig(run="r", fid=False))
    body = json.loads((tmp_path / "reports" / "r" / "metrics.json").read_text())
    assert body["pivotal"]["rank"] == 2 and body["pivotal"]["bytes_per_item"] == 2 * refinements.pivotal_attrs(
        store)["values_per_item"]
    psnr_row = next(row for row in body["pivotal"]["rows"] if row["metric"] == "psnr")
    assert psnr_row["gain"] == pytest.approx(psnr_row["tuned"] - psnr_row["pivot"])
    assert len(body["ood"]["top"]) == 5 and body["ood"]["top"][0]["score"] == pytest.approx(0.9)
    html = report.path.read_text()
    assert "Pivotal refinement" in html and "Unusual items" in html
    assert (report.path.parent / "pivotal.png").is_file() and (report.path.parent / "ood_top.png").is_file()


def test_deltas_grow_with_the_store_and_new_items_get_theirs(generator, tmp_path):
    write_good_images(tmp_path / "imgs", 3)
    config = InvertConfig(inversion=FAST, refine=REFINE, thumbnail_size=16)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, config, chunk_items=2)
    for shard in store.pending_shards():
        run_shard(store.url, shard.index, generator=generator)
    write_good_images(tmp_path / "imgs", 2, start=3)  # the nightly run finds two more
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, config, chunk_items=2)
    assert len(store) == 5 and [s.index for s in store.pending_shards()] == [1, 2]
    values, _ = refinements.read_deltas(store)
    assert values.shape[0] == 5 and np.isnan(values[3:]).all() and np.isfinite(values[:3]).all()
    for shard in store.pending_shards():
        run_shard(store.url, shard.index, generator=generator)
    values, _ = refinements.read_deltas(LatentStore.open(store.url))
    assert np.isfinite(values).all()
