"""benchmarks/ship_world.py packages a training run of the embedded world as the built-in faces64 assets: what it
writes loads by the built-in names and reproduces the run, the manifest's hashes are the files', and an encoder of
another generator, a classifier of another world or an over-size package is refused before anything is written."""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from benchmarks.ship_world import GOLDEN_TESTS, ShipError, builtins_at, golden_values, main, ship_world
from ganinv.builtin_models import BUILTIN_GENERATORS, builtin_world_version
from ganinv.generators import load_generator
from ganinv.generators.io import resolve_generator_source
from ganinv.models.attributes import builtin_path, load_classifier, read_metadata, save_classifier
from ganinv.models.encoder import load_encoder
from ganinv.training.train_classifier import TrainClassifierConfig, train_classifier
from ganinv.training.train_encoder import EncoderTrainConfig, train_encoder
from ganinv.training.train_gan import RUN_CLASSIFIER, GANTrainer, generator_from_checkpoint

from _gan_helpers import TINY, blob_images

ENCODER = EncoderTrainConfig(channels=(16, 32), style_channels=16, mixed_precision=False)


def _encoder_for(run, folder, data=None, perceptual="none"):
    """An encoder trained 2 steps for the run's current G_ema (and on `data`), exported as ganinv train-encoder does."""
    trainer = train_encoder(folder, gan_run=run, steps=2, batch_size=4, perceptual=perceptual, device="cpu",
                            config=ENCODER, data=data)
    return trainer.export(folder / "encoder.safetensors")


@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory):
    """(run, encoder of its latest checkpoint, encoder of the checkpoint before) for a tiny world-2 run with its own
    tiny world-2 classifier."""
    root = tmp_path_factory.mktemp("ship")
    run, config, images = root / "faces_v2", dataclasses.replace(TINY, data="procedural:8:0:v2"), blob_images()
    trainer = GANTrainer(config, run, device="cpu", images=images)
    trainer.train_step()
    trainer.save()
    stale = _encoder_for(run, root / "stale")
    trainer.train_step()  # the run goes on: its G_ema is another generator now
    trainer.save()
    train_classifier(TrainClassifierConfig(world_version=2, n_train=16, n_eval=8, steps=2, batch_size=4,
                                           eval_every=2, augment=False), run / RUN_CLASSIFIER)
    return run, _encoder_for(run, root / "fresh"), stale


def test_the_package_loads_by_the_builtin_names_and_reproduces_the_runs_g_ema(shipped_run, tmp_path):
    run, encoder, _ = shipped_run
    shipment = ship_world(run, tmp_path / "out", encoder_file=encoder)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["classifier.safetensors", "encoder.safetensors",
                                                      "generator.safetensors", "manifest.json"]
    z = torch.randn([3, TINY.z_dim], generator=torch.Generator().manual_seed(1))
    with builtins_at(out), torch.no_grad():
        G = load_generator("faces64")
        assert torch.equal(G(z, None, noise_mode="const"), generator_from_checkpoint(run)(z, None, noise_mode="const"))
        assert builtin_world_version() == shipment.world_version == 2
        E = load_encoder("faces64", generator=G)
        assert E(G(z, None)).shape == (3, G.num_ws, G.w_dim)
        assert read_metadata(builtin_path())["metrics"]["world_version"] == 2
        load_classifier("builtin")
    assert shipment.goldens["FACES64_IDENTITY"] == shipment.manifest["generator_identity"]
    assert len(shipment.goldens["ENCODER_WS"]) == 2  # the package's encoder on the tests' two held-out faces
    assert BUILTIN_GENERATORS["faces64"] == "assets/faces64/generator.safetensors"  # the names point home again
    assert builtin_path().parent != out


def test_the_manifest_holds_each_files_sha256_and_size(shipped_run, tmp_path):
    run, encoder, _ = shipped_run
    shipment = ship_world(run, tmp_path, encoder_file=encoder)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest == shipment.manifest and set(manifest["files"]) == {
        "generator.safetensors", "encoder.safetensors", "classifier.safetensors"}
    for name, entry in manifest["files"].items():
        data = (tmp_path / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert manifest["total_bytes"] == sum(e["bytes"] for e in manifest["files"].values())
    assert manifest["generator_identity"] == manifest["encoder"]["generator_identity"]
    assert (tmp_path / "classifier.safetensors").read_bytes() == (run / RUN_CLASSIFIER).read_bytes()


def test_an_encoder_of_an_earlier_checkpoint_is_refused_and_nothing_is_written(shipped_run, tmp_path):
    run, _, stale = shipped_run
    with pytest.raises(ShipError, match=r"not trained for the G_ema of .*earlier checkpoint.*train-encoder --gan-run"):
        ship_world(run, tmp_path / "out", encoder_file=stale)
    assert not (tmp_path / "out").exists()


def test_an_encoder_trained_on_faces_of_another_world_is_refused(shipped_run, tmp_path):
    run, _, _ = shipped_run
    world_1 = _encoder_for(run, tmp_path / "enc", data="procedural:4:0:v1")  # world 1 named: it may be the shipped one
    with pytest.raises(ShipError, match=r"trained on the faces of world 1 \(procedural:4:0:v1\).*--data ...:v2"):
        ship_world(run, tmp_path / "out", encoder_file=world_1)
    assert not (tmp_path / "out").exists()


def test_a_classifier_of_another_world_is_refused(shipped_run, tmp_path):
    """A world-1 classifier made here: the built-in one is world 1's only until world 2 is shipped."""
    run, encoder, _ = shipped_run
    world_1 = tmp_path / "world_1.safetensors"
    train_classifier(TrainClassifierConfig(world_version=1, n_train=16, n_eval=8, steps=2, batch_size=4, eval_every=2,
                                           augment=False), world_1)
    with pytest.raises(ShipError, match="records world 1; the run learnt world 2"):
        ship_world(run, tmp_path / "out", encoder_file=encoder, classifier_file=world_1)
    unrecorded = tmp_path / "unrecorded.safetensors"
    save_classifier(load_classifier(world_1), unrecorded, metrics={"passes": True})
    with pytest.raises(ShipError, match="records no world version; the run learnt world 2"):  # as world 1's first file
        ship_world(run, tmp_path / "out", encoder_file=encoder, classifier_file=unrecorded)
    assert not (tmp_path / "out").exists()


def test_an_over_size_package_is_refused(shipped_run, tmp_path):
    run, encoder, _ = shipped_run
    with pytest.raises(ShipError, match=r"over the 0.01 MB the built-in assets may take"):
        ship_world(run, tmp_path / "out", encoder_file=encoder, max_bytes=10_000)
    assert not (tmp_path / "out").exists()


def test_the_cli_dry_run_writes_nothing_and_lists_the_golden_tests(shipped_run, tmp_path, capsys):
    run, _, _ = shipped_run
    shipment = main(["--gan-run", str(run), "--out", str(tmp_path / "out"), "--dry-run"])
    printed = capsys.readouterr().out
    assert shipment.out is None and not (tmp_path / "out").exists()
    assert "SHIPPED_VERSION = 2" in printed and all(test in printed for test, _ in GOLDEN_TESTS)
    assert f'FACES64_IDENTITY = "{shipment.manifest["generator_identity"]}"' in printed
    assert "CLASSIFIER_LIGHTING = [" in printed and "ENCODER_WS" not in shipment.goldens  # no encoder, no ws
    for name, entry in shipment.manifest["files"].items():
        assert f"{entry['sha256']}  {name}" in printed
    with pytest.raises(SystemExit) as exit_info:  # a real package needs the encoder
        main(["--gan-run", str(run), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "train-encoder --gan-run" in capsys.readouterr().err


def test_the_golden_tests_it_lists_exist():
    """follow_up names these tests for whoever ships a world: a renamed file or test must not leave it pointing at
    nothing."""
    root = Path(__file__).resolve().parents[1]
    for test, _ in GOLDEN_TESTS:
        path, _, name = test.partition("::")
        assert (root / path).is_file(), test
        assert not name or f"def {name}(" in (root / path).read_text(), test


def test_the_goldens_it_prints_for_the_current_assets_are_the_shipped_tests_literals():
    """follow_up prints `golden_values` of the package for whoever ships a world to paste into
    tests/test_shipped_models.py: computed from today's assets they must be today's literals, or the printed ones
    would not be what the tests compute."""
    import test_shipped_models as shipped

    goldens = golden_values(Path(resolve_generator_source("faces64")).parent, builtin_world_version())
    assert sorted(goldens) == ["CLASSIFIER_LIGHTING", "ENCODER_WS", "FACES64_IDENTITY", "GENERATOR_PIXELS"]
    assert goldens["FACES64_IDENTITY"] == shipped.FACES64_IDENTITY
    for name in ("GENERATOR_PIXELS", "CLASSIFIER_LIGHTING", "ENCODER_WS"):
        assert torch.allclose(torch.tensor(goldens[name]), torch.tensor(getattr(shipped, name)), atol=1e-6), name


def test_an_encoder_whose_perceptual_term_read_another_worlds_classifier_is_refused(shipped_run, tmp_path):
    run, _, _ = shipped_run
    own = _encoder_for(run, tmp_path / "own", perceptual="clf-perceptual")  # the run's world-2 classifier
    assert ship_world(run, tmp_path / "out", encoder_file=own).manifest["encoder"]
    twin = tmp_path / "twin"  # the same G_ema in a folder without the run's classifier: the built-in one, not the run's
    shutil.copytree(run, twin, ignore=shutil.ignore_patterns(RUN_CLASSIFIER))
    builtin = _encoder_for(twin, tmp_path / "builtin", perceptual="clf-perceptual")
    with pytest.raises(ShipError, match="perceptual term read the classifier"):
        ship_world(run, tmp_path / "out2", encoder_file=builtin)
    assert not (tmp_path / "out2").exists()


def test_an_out_path_that_is_a_file_is_refused_first(shipped_run, tmp_path):
    run, encoder, _ = shipped_run
    (tmp_path / "assets").write_text("not a folder")
    with pytest.raises(ShipError, match="is a file: name a folder"):
        ship_world(run, tmp_path / "assets", encoder_file=encoder)

