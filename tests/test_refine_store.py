"""`ganinv refine STORE --steps N` (issue 23): a store's codes continue the inversion that made them, shard by shard,
resumably; what a pass replaces is kept; items appended later reach the same step count; refusals before anything
starts; one run through the CLI on real Prefect and Dask."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from _flow_helpers import FAST, prepare_store, save_tiny_encoder, save_tiny_generator, store_arrays
from _image_files import write_good_images
from cli.app import app
from ganinv.inversion.refine import refine
from ganinv.utils.seeds import seed_from_id
from runtime import models
from runtime.config import ExecutionOptions, InvertConfig, RefineStoreConfig
from runtime.errors import ConfigError
from runtime.refine_store import NothingToRefine, PassInProgress, check, plan, run_refine_shard, summarize
from runtime.shard import run_shard
from storage import LatentStore, LeaseHeldError, StoreMismatchError
from storage import code_refinements as passes
from storage.scores import write_item_metric

runner = CliRunner()
CONFIG = InvertConfig(inversion=FAST, thumbnail_size=16)  # 4 steps in W, pixel loss


@pytest.fixture(scope="module")
def generator(tiny_generator_file):
    return tiny_generator_file


def inverted_store(generator, tmp_path, n=5, *, config=CONFIG, chunk_items=2) -> str:
    write_good_images(tmp_path / "imgs", n)
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, config, chunk_items=chunk_items)
    for shard in store.pending_shards():
        run_shard(store.url, shard.index, generator=generator)
    return store.url


def refine_pass(url, generator, steps, *, only=None, space=None, execution=ExecutionOptions()):
    """Steps 0-3 of the flow, in this process; `only`: the shard indices to run (the others 'crash')."""
    settings = check(url, RefineStoreConfig(steps=steps, space=space))
    store = LatentStore.open(url, "r+")
    planned = plan(store, settings)
    reports = [run_refine_shard(url, s.index, generator=generator, name=planned.name, execution=execution)
               for s in planned.shards if only is None or s.index in only]
    return settings, planned, summarize(store, settings, reports)


def targets(folder, ids) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(Image.open(folder / i), np.float32)).permute(2, 0, 1) / 127.5 - 1
                        for i in ids])


def test_refined_codes_continue_the_stored_inversion_and_keep_what_they_replaced(generator, tmp_path):
    url = inverted_store(generator, tmp_path)
    before = store_arrays(url)
    settings, planned, summary = refine_pass(url, generator, 3)
    assert (settings.target_steps, planned.name, planned.items, len(planned.shards)) == (7, "steps-7", 5, 3)
    assert summary.complete and summary.refined == 5 and summary.remaining == 0 and not summary.failures
    store = LatentStore.open(url)
    assert (store.metrics(["steps"])["steps"] == 7).all()
    # The codes are what the algorithm makes of the stored ones, with the store's config and per-image seeds.
    ids = [str(i) for i in store.image_ids()]
    spec = settings.spec
    expected = refine(models.generator(generator, "cpu"), targets(tmp_path / "imgs", ids),
                      torch.from_numpy(before["ws"]), spec.config, more_steps=3,
                      seed=[seed_from_id(i, spec.seed) for i in ids])
    np.testing.assert_allclose(store.ws(), expected.ws.numpy(), atol=1e-5)
    np.testing.assert_allclose(store.metrics(["psnr"])["psnr"], expected.metrics["psnr"].numpy(), atol=1e-3)
    assert not np.array_equal(store.thumbnails(), before["thumbnails"])
    # What the pass replaced is kept, bit for bit; its attributes say how the codes were made.
    kept_ws, kept = passes.previous(store, "steps-7")
    assert np.array_equal(kept_ws, before["ws"]) and np.array_equal(kept["psnr"], before["metrics/psnr"])
    attrs = passes.passes(store)[0]
    assert attrs["complete"] and attrs["config"]["num_steps"] == 7 and attrs["from_steps"] == 4
    assert summary.psnr_before == pytest.approx(float(np.mean(before["metrics/psnr"])))
    assert store.attributes.inversion["inversion"]["num_steps"] == 4  # how new items are inverted: unchanged
    # The report shows the pass: before and after over its items.
    from report import ReportConfig, build_report

    report = build_report(url, tmp_path / "reports", ReportConfig(run="r", fid=False))
    body = json.loads((tmp_path / "reports" / "r" / "metrics.json").read_text())
    (entry,) = body["refinement_passes"]
    psnr = next(row for row in entry["rows"] if row["metric"] == "psnr")
    assert (entry["name"], entry["target_steps"], entry["refined"], entry["complete"]) == ("steps-7", 7, 5, True)
    assert psnr["before"] == pytest.approx(summary.psnr_before) and psnr["after"] == pytest.approx(summary.psnr_after)
    assert psnr["gain"] == pytest.approx(psnr["after"] - psnr["before"])
    assert "Refinement passes" in report.path.read_text()


def test_an_interrupted_pass_resumes_with_the_same_steps_and_a_redone_shard_writes_the_same_bytes(generator,
                                                                                                tmp_path):
    url = inverted_store(generator, tmp_path)
    _, _, first = refine_pass(url, generator, 3, only={0})
    assert not first.complete and first.remaining == 3
    with pytest.raises(PassInProgress, match="--steps 3"):
        check(url, RefineStoreConfig(steps=5))
    settings = check(url, RefineStoreConfig(steps=3))
    assert settings.resume and settings.target_steps == 7
    assert [s.index for s in plan(LatentStore.open(url, "r+"), settings).shards] == [1, 2]
    run_refine_shard(url, 1, generator=generator, name="steps-7")
    written = LatentStore.open(url).ws([2, 3])
    # A crash after the codes but before `steps` were written: the re-run starts again from the kept codes.
    store = LatentStore.open(url, "r+")
    steps = store.metrics(["steps"])["steps"]
    steps[2:4] = 4
    write_item_metric(store, "steps", steps)
    report = run_refine_shard(url, 1, generator=generator, name="steps-7")
    assert report.done == 2 and np.array_equal(LatentStore.open(url).ws([2, 3]), written)
    _, planned, summary = refine_pass(url, generator, 3)
    assert [s.index for s in planned.shards] == [2] and summary.complete and summary.refined == 5
    assert check(url, RefineStoreConfig(steps=2)).target_steps == 9  # a finished pass is the next one's base


def test_refined_codes_do_not_depend_on_the_batch_size_asked_of_the_workers(generator, tmp_path):
    urls = [inverted_store(generator, tmp_path / name, chunk_items=4) for name in ("a", "b")]
    refine_pass(urls[0], generator, 3, execution=ExecutionOptions(batch_size=1))
    refine_pass(urls[1], generator, 3, execution=ExecutionOptions(batch_size=4))  # CPU numerics: image by image
    first, second = (LatentStore.open(url).ws(np.arange(5)) for url in urls)
    assert np.array_equal(first, second)


def test_items_appended_later_reach_the_next_passes_target(generator, tmp_path):
    url = inverted_store(generator, tmp_path, n=3)
    refine_pass(url, generator, 2)
    write_good_images(tmp_path / "imgs", 2, start=3)  # the nightly run finds two more, inverted with 4 steps
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, CONFIG, chunk_items=2)
    for shard in store.pending_shards():
        run_shard(url, shard.index, generator=generator)
    assert LatentStore.open(url).metrics(["steps"])["steps"].tolist() == [6, 6, 6, 4, 4]
    settings, planned, summary = refine_pass(url, generator, 2, only={0})
    assert settings.target_steps == 8 and planned.items == 5 and not summary.complete
    write_good_images(tmp_path / "imgs", 1, start=5)  # one more arrives while the pass is open
    store = prepare_store(tmp_path / "imgs", tmp_path / "s.zarr", generator, CONFIG, chunk_items=2)
    run_shard(url, 2, generator=generator)
    _, planned, summary = refine_pass(url, generator, 2)  # the pass resumes, grown to the new item
    assert [s.index for s in planned.shards] == [1, 2] and summary.complete and summary.refined == 6
    store = LatentStore.open(url)
    assert (store.metrics(["steps"])["steps"] == 8).all()
    old_ws, _ = passes.previous(store, "steps-6")
    assert np.isnan(old_ws[3:]).all() and np.isfinite(old_ws[:3]).all()  # the first pass did not know them
    start_ws, start = passes.previous(store, "steps-8")
    assert start["steps"].tolist() == [6, 6, 6, 4, 4, 4] and np.isfinite(start_ws).all()


def test_w_codes_continue_in_w_plus_and_never_back(generator, tmp_path):
    url = inverted_store(generator, tmp_path, n=2)
    w = LatentStore.open(url).ws()
    assert np.allclose(w, w[:, :1])  # W codes: one w broadcast to every layer
    settings, _, summary = refine_pass(url, generator, 2, space="w+")
    assert settings.space == "w+" and summary.complete
    ws = LatentStore.open(url).ws()
    assert not np.allclose(ws, ws[:, :1])  # each layer its own w now
    with pytest.raises(ConfigError, match="w\\+"):
        check(url, RefineStoreConfig(steps=2, space="w"))
    assert check(url, RefineStoreConfig(steps=2)).space == "w+"  # the last pass's space by default


def test_stores_that_cannot_be_refined_are_refused_before_anything_starts(generator, tmp_path):
    write_good_images(tmp_path / "imgs", 2)
    empty = prepare_store(tmp_path / "imgs", tmp_path / "empty.zarr", generator, CONFIG)
    with pytest.raises(NothingToRefine, match="no done codes"):
        check(empty.url, RefineStoreConfig(steps=2))
    encoder = save_tiny_encoder(tmp_path, generator)
    by_encoder = prepare_store(tmp_path / "imgs", tmp_path / "enc.zarr", generator,
                               InvertConfig(mode="encoder", encoder=encoder, inversion=FAST))
    with pytest.raises(NothingToRefine, match="encoder alone"):
        check(by_encoder.url, RefineStoreConfig(steps=2))
    tuned = prepare_store(tmp_path / "imgs", tmp_path / "pti.zarr", generator,
                          InvertConfig(inversion=FAST, refine={"num_steps": 2, "loss": "mse"}))
    with pytest.raises(NothingToRefine, match="pivotal"):
        check(tuned.url, RefineStoreConfig(steps=2))
    done = inverted_store(generator, tmp_path / "done", n=1)
    with pytest.raises(StoreMismatchError, match="not the store's generator"):
        check(done, RefineStoreConfig(steps=2), generator=save_tiny_generator(tmp_path, seed=5))
    with pytest.raises(ConfigError, match="positive"):
        RefineStoreConfig(steps=0)


def test_cli_refines_a_store_on_real_prefect_and_dask_and_refuses_bad_input_with_exit_2(
        prefect_harness, dask_cluster, generator, tmp_path):
    url = inverted_store(generator, tmp_path, n=3)
    result = runner.invoke(app, ["refine", url, "--steps", "2", "--cluster", dask_cluster[0].scheduler_address])
    assert result.exit_code == 0, result.output
    assert "refinement to 6 steps (+2), complete" in result.output and "3 items at 6 steps" in result.output
    assert "refining (3 done, 0 failed): 3/3" in result.output  # its progress line (off a terminal), not "inverting"
    assert (LatentStore.open(url).metrics(["steps"])["steps"] == 6).all()
    info = runner.invoke(app, ["store-info", url])
    assert info.exit_code == 0 and "refinement  steps-6: +2 steps from 4 (w), 3 items, complete" in info.output
    for args, expected in ((["refine", str(tmp_path / "nope.zarr"), "--steps", "2"], "nope.zarr"),
                           (["refine", url, "--steps", "0"], "positive"),
                           (["refine", url, "--steps", "2", "--space", "z"], "w or w+")):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2 and expected in " ".join(refused.output.split()), (args, refused.output)


def test_a_hybrid_store_keeps_its_in_domain_anchor_at_the_encoders_output(generator, tmp_path):
    encoder = save_tiny_encoder(tmp_path, generator)
    config = InvertConfig(encoder=encoder, inversion={**FAST, "regularize_encoder_weight": 0.5}, thumbnail_size=16)
    url = inverted_store(generator, tmp_path, n=3, config=config, chunk_items=4)
    before = store_arrays(url)
    settings, _, summary = refine_pass(url, generator, 2)
    assert settings.spec.mode == "hybrid" and summary.complete
    store = LatentStore.open(url)
    ids = [str(i) for i in store.image_ids()]
    G, E = models.generator(generator, "cpu"), models.load_models(generator, encoder, "cpu").E
    target = targets(tmp_path / "imgs", ids)
    expected = refine(G, target, torch.from_numpy(before["ws"]), settings.spec.config, more_steps=2,
                      seed=[seed_from_id(i, settings.spec.seed) for i in ids], anchor_ws=E(target))
    np.testing.assert_allclose(store.ws(), expected.ws.numpy(), atol=1e-5)
    assert np.array_equal(store.metrics(["encoder_psnr"])["encoder_psnr"], before["metrics/encoder_psnr"])


def test_a_worker_of_a_run_that_lost_the_lease_writes_nothing(generator, tmp_path):
    url = inverted_store(generator, tmp_path, n=2)
    store = LatentStore.open(url, "r+")
    planned = plan(store, check(url, RefineStoreConfig(steps=2)))
    before = store_arrays(url)
    with store.acquire_lease("refine-store-a"):
        with pytest.raises(LeaseHeldError):
            run_refine_shard(url, 0, generator=generator, name=planned.name, run_id="refine-store-b")
    assert np.array_equal(store_arrays(url)["ws"], before["ws"])
    assert np.isnan(passes.previous(LatentStore.open(url), planned.name)[0]).all()
