"""`ganinv restore` (issue 20): the restore-dataset flow on real Prefect (the session harness), real Dask (the session
cluster) and real stores on disk; its refusals before any server starts; the worker's handling of a missing mask;
`ganinv render-restored`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from _flow_helpers import FAST, prepare_store, store_arrays
from _image_files import write_good_images
from cli.app import app
from runtime.config import ExecutionOptions, InvertConfig, RestoreConfig
from runtime.errors import ConfigError
from runtime.shard import run_shard
from storage import LatentStore, Status, StoreMismatchError

runner = CliRunner()
HOLE = slice(5, 11)  # the 6 x 6 hole of every test mask, in 16 px images


@pytest.fixture(scope="module")
def generator(tiny_generator_file):
    return tiny_generator_file


def write_masks(folder, ids, *, holes: str = "white"):
    """One PNG per image id, `holes` colour in the centre box `HOLE`."""
    folder.mkdir(parents=True, exist_ok=True)
    hole, kept = (255, 0) if holes == "white" else (0, 255)
    for image_id in ids:
        mask = np.full((16, 16), kept, np.uint8)
        mask[HOLE, HOLE] = hole
        Image.fromarray(mask).save(folder / image_id)
    return folder


def write_small(clean, folder, factor):
    """The clean images `factor` times smaller (box filter): super-resolution's observations, same ids."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(clean.glob("*.png")):
        image = Image.open(path)
        image.resize((image.width // factor, image.height // factor), Image.Resampling.BOX).save(folder / path.name)
    return folder


@pytest.mark.slow
def test_inpainting_flow_scores_against_the_clean_images_keeps_the_observation_and_resumes(
        prefect_harness, dask_cluster, generator, tmp_path):
    from flows.restore import restore_dataset

    clean = tmp_path / "clean"
    write_good_images(clean, 4)
    masks = write_masks(tmp_path / "masks", [p.name for p in sorted(clean.glob("*.png"))])
    url = str(tmp_path / "inpainted.zarr")
    restore = RestoreConfig(task="inpaint", mask_dir=str(masks), clean=str(clean), keep_observed=True)
    execution = ExecutionOptions(cluster=dask_cluster[0].scheduler_address)
    config = InvertConfig(inversion=FAST, shard_size=2, thumbnail_size=16)
    summary = restore_dataset(str(clean), url, generator, restore=restore, config=config, execution=execution)
    assert summary.counts == {"pending": 0, "done": 4, "failed": 0} and summary.this_run.shards == 2
    store = LatentStore.open(url)
    record = store.attributes.inversion["restoration"]
    assert record["task"] == "inpaint" and record["keep_observed"] is True and record["clean"] == str(clean)
    assert record["degradation"] == {"kind": "mask", "source": {"kind": "folder", "path": str(masks),
                                                                "holes": "white"}}
    metrics = store.metrics()
    for name in ("restored_psnr", "kept_psnr", "baseline_psnr", "restored_ssim", "kept_ssim", "baseline_ssim"):
        assert np.isfinite(metrics[name]).all(), name
    # The observation is the clean image outside the hole, so keeping it can only bring the image closer.
    assert (metrics["kept_psnr"] >= metrics["restored_psnr"] - 1e-4).all()
    originals = np.stack([np.asarray(Image.open(clean / i)) for i in store.image_ids()])
    outside = np.ones((16, 16), bool)
    outside[HOLE, HOLE] = False
    thumbnails = store.thumbnails()
    assert np.abs(thumbnails[:, outside].astype(int) - originals[:, outside]).max() <= 1  # kept observed pixels
    assert not np.array_equal(thumbnails[:, ~outside], originals[:, ~outside])  # the hole is the generator's
    from report import ReportConfig, build_report

    report = build_report(url, tmp_path / "reports", ReportConfig(run="r", fid=False))
    section = json.loads((report.path.parent / "metrics.json").read_text())["restoration"]
    assert section["task"] == "inpaint" and section["against_clean"]["kept"]["psnr"]["n"] == 4
    assert section["against_clean"]["restored"]["ssim"]["mean"] == pytest.approx(metrics["restored_ssim"].mean())
    assert section["gain_over_baseline_db"] == pytest.approx(metrics["restored_psnr"].mean()
                                                             - metrics["baseline_psnr"].mean())
    assert "Restoration: inpaint" in report.path.read_text()
    assert (report.path.parent / "restoration.png").is_file()
    again = restore_dataset(str(clean), url, generator, restore=restore, config=config, execution=execution)
    assert again.this_run.shards == 0 and again.counts["done"] == 4  # resumed: nothing left to do
    with pytest.raises(StoreMismatchError, match="another inversion config"):  # other restorations never mix in
        restore_dataset(str(clean), url, generator, restore=RestoreConfig(task="colorize"), config=config,
                        execution=execution)


def test_super_resolution_flow_inverts_observations_decoded_at_the_reduced_size(prefect_harness, dask_cluster,
                                                                                 generator, tmp_path):
    from flows.restore import restore_dataset

    clean = tmp_path / "clean"
    write_good_images(clean, 3)
    small = write_small(clean, tmp_path / "small", 2)
    url = str(tmp_path / "sr.zarr")
    summary = restore_dataset(str(small), url, generator, restore=RestoreConfig(task="super-resolution", factor=2,
                                                                                clean=str(clean)),
                              config=InvertConfig(inversion=FAST), execution=ExecutionOptions(
                                  cluster=dask_cluster[0].scheduler_address))
    assert summary.counts == {"pending": 0, "done": 3, "failed": 0}
    store = LatentStore.open(url)
    assert store.attributes.inversion["restoration"]["degradation"] == {"kind": "downsample", "factor": 2}
    metrics = store.metrics()
    assert np.isfinite(metrics["restored_psnr"]).all() and np.isfinite(metrics["baseline_psnr"]).all()
    # The observation-space PSNR compares the restoration, downsampled, with the 8 px observation: a 16 px decode
    # of the inputs would have been refused as an 8x upscale... or compared the wrong images; both metrics exist.
    assert np.isfinite(metrics["psnr"]).all()


def test_worker_marks_an_image_whose_mask_is_missing_failed_and_names_the_file(generator, tmp_path):
    clean = tmp_path / "clean"
    write_good_images(clean, 3)
    masks = write_masks(tmp_path / "masks", [p.name for p in sorted(clean.glob("*.png"))])
    config = RestoreConfig(task="inpaint", mask_dir=str(masks)).invert_config(InvertConfig(inversion=FAST))
    store = prepare_store(clean, tmp_path / "s.zarr", generator, config)
    (masks / "good001.png").unlink()  # gone after the run's check: the worker must not lose the other images
    report = run_shard(store.url, 0, generator=generator)
    assert (report.done, report.failed) == (2, 1)
    store = LatentStore.open(store.url)
    failed = store.status() == Status.FAILED
    assert list(store.image_ids()[failed]) == ["good001.png"]
    assert store.errors()[failed][0] == f"no mask: expected {masks / 'good001.png'} (white = hole)"


def test_restore_refuses_bad_settings_before_any_server_starts(generator, tmp_path):
    clean = tmp_path / "clean"
    write_good_images(clean, 2)
    write_masks(tmp_path / "masks", ["good000.png"])
    store = str(tmp_path / "s.zarr")
    cases = {
        "super-resolution factor 3 is not a power of two": ["--task", "super-resolution", "--factor", "3"],
        "Downsample(32) needs images whose size divides by 32": ["--task", "super-resolution", "--factor", "32"],
        "unknown restoration task 'sharpen'": ["--task", "sharpen"],
        "task 'inpaint' needs masks": ["--task", "inpaint"],
        "1 of 2 images have no mask: expected": ["--task", "inpaint", "--mask-dir", str(tmp_path / "masks"), "--loss",
                                                 "mse"],  # settings that can run: the masks are checked after them
        "is not a folder": ["--task", "inpaint", "--mask-dir", str(tmp_path / "nowhere")],
        "task 'colorize' takes no --mask-rule (--mask-rule is for 'inpaint')": ["--task", "colorize", "--mask-rule",
                                                                           "center-box"],
    }
    for expected, args in cases.items():
        result = runner.invoke(app, ["restore", str(clean), "--store", store, "--generator", generator, *args])
        assert result.exit_code == 2, (expected, result.output)
        assert expected in " ".join(result.output.split()), (expected, result.output)
    assert not (tmp_path / "s.zarr").exists()  # refused before anything was written


def test_cli_restores_and_render_restored_writes_the_stored_restorations(prefect_harness, dask_cluster, generator,
                                                                          tmp_path):
    clean = tmp_path / "clean"
    write_good_images(clean, 2)
    store = str(tmp_path / "s.zarr")
    result = runner.invoke(app, ["restore", str(clean), "--store", store, "--task", "colorize", "--generator",
                                 generator, "--steps", "3", "--loss", "mse", "--thumbnail-size", "16",
                                 "--cluster", dask_cluster[0].scheduler_address])
    assert result.exit_code == 0, result.output
    assert "2 done, 0 failed" in result.output
    made = store_arrays(store)
    # a rerun resumes: with the same flags, or with only IMAGES and --store (the store's task, generator, settings)
    for rerun in (["--task", "colorize", "--generator", generator, "--steps", "3", "--loss", "mse",
                   "--thumbnail-size", "16"], []):
        result = runner.invoke(app, ["restore", str(clean), "--store", store, *rerun,
                                     "--cluster", dask_cluster[0].scheduler_address])
        assert result.exit_code == 0, result.output
        assert f"resuming with the settings recorded in {store}" in result.output
        assert "2 done, 0 failed" in result.output
        for name, again in store_arrays(store).items():  # nothing redone: the attempts counted too
            np.testing.assert_array_equal(again, made[name], err_msg=name)
    out = tmp_path / "restored"
    result = runner.invoke(app, ["render-restored", store, "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    s = LatentStore.open(store)
    for image_id, thumbnail in zip(s.image_ids(), s.thumbnails()):
        assert np.array_equal(np.asarray(Image.open(out / image_id)), thumbnail)  # what the worker rendered
    kept = tmp_path / "kept"
    assert runner.invoke(app, ["render-restored", store, "--out", str(kept), "--keep-observed", "--ids",
                               "good000.png"]).exit_code == 0
    image = np.asarray(Image.open(kept / "good000.png")).astype(float)
    unclipped = (image > 0).all(axis=-1) & (image < 255).all(axis=-1)  # clipping to [-1, 1] may cost luma
    weights = np.array([0.299, 0.587, 0.114])
    luma = np.asarray(Image.open(clean / "good000.png")).astype(float) @ weights
    assert unclipped.mean() > 0.5 and np.abs(image @ weights - luma)[unclipped].max() <= 2.5  # the observed luma


def test_restore_config_passes_its_own_defaults_and_denoises_with_a_pixel_loss():
    config = RestoreConfig(task="denoise").invert_config(InvertConfig())
    assert config.restoration["degradation"] == {"kind": "add-noise", "sigma": 0.1, "blur_sigma": 0.5}
    assert config.inversion["loss"] == "mse"
    given = RestoreConfig(task="denoise").invert_config(InvertConfig(inversion={"loss": "clf-perceptual"}))
    assert given.inversion["loss"] == "clf-perceptual"
    assert RestoreConfig(task="super-resolution").record()["degradation"] == {"kind": "downsample", "factor": 4}
    with pytest.raises(ConfigError, match="not both"):
        RestoreConfig(task="inpaint", mask_dir="m", mask_rule="center-box").record()


@pytest.mark.parametrize("config", [
    RestoreConfig(task="inpaint", mask_dir="/data/masks", mask_holes="black", keep_observed=True, clean="/data/clean"),
    RestoreConfig(task="inpaint", mask_rule="center-box:0.3"),
    RestoreConfig(task="inpaint", mask_rule="random-boxes:2", mask_seed=5),
    RestoreConfig(task="super-resolution", factor=2),
    RestoreConfig(task="colorize", clean="/data/clean"),
    RestoreConfig(task="denoise", sigma=0.2),
], ids=lambda c: c.task)
def test_a_stores_restoration_record_reads_back_without_torch_as_the_config_that_made_it(config):
    """What a rerun's flags are compared with, before torch loads (cli/preflight.py), is what made the store."""
    assert RestoreConfig.from_record(config.record()) == config
    assert RestoreConfig.from_record(RestoreConfig(task="inpaint", mask_rule="center-box").record()).record() == \
        RestoreConfig(task="inpaint", mask_rule="center-box").record()  # another spelling, the same record
