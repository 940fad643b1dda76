"""Encoder training for any generator (issue 23): generator files, resumable compact chunks, the generator identity
an encoder belongs to, image sets, and hybrid inversion from an encoder file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_generator
from official_pickles import write_official_pickle
from ganinv.datasets.image_set import list_image_files, load_image_set
from ganinv.generators import generator_identity, save_generator
from ganinv.generators.stylegan2 import Generator
from ganinv.inversion import hybrid
from ganinv.models.encoder import (
    PARAMETER_BUDGET, Encoder, EncoderGeneratorMismatch, encoder_kwargs_for, encoder_record, load_encoder, save_encoder,
)
from ganinv.training.checkpoint import checkpoint_bytes, load_checkpoint
from ganinv.training.train_encoder import (
    EncoderTrainConfig, EncoderTrainer, RunConfigMismatch, learning_rate, load_generator_source, resolve_perceptual,
    train_encoder,
)

SMALL = EncoderTrainConfig(batch_size=4, total_steps=6, checkpoint_every=2, channels=(16, 32), style_channels=16,
                           perceptual="none", mixed_precision=False)


def tiny_images(n: int = 12, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, [n, size, size, 3], dtype=np.uint8)


@pytest.fixture(scope="module")
def generator_files(tmp_path_factory):
    """The same tiny generator as an official-format pickle and as a ganinv .safetensors file."""
    folder = tmp_path_factory.mktemp("generators")
    G = make_tiny_generator(resolution=16, seed=3)
    return G, {"pickle": write_official_pickle(folder / "snapshot.pkl", G, folder),
               "safetensors": save_generator(G, folder / "g.safetensors")}


@pytest.fixture(scope="module")
def trained(generator_files, tmp_path_factory):
    """(G, encoder file) trained 4 steps from the safetensors file with train_encoder."""
    G, files = generator_files
    folder = tmp_path_factory.mktemp("encoder")
    trainer = train_encoder(folder / "run", generator=str(files["safetensors"]), steps=4, batch_size=4,
                            perceptual="none", device="cpu")
    return G, trainer.export(folder / "e.safetensors")


@pytest.mark.parametrize("kind", ["pickle", "safetensors"])
def test_trains_from_a_generator_file_and_the_encoder_records_that_generator(generator_files, tmp_path, kind):
    G, files = generator_files
    trainer = train_encoder(tmp_path / "run", generator=str(files[kind]), steps=2, batch_size=4, perceptual="none",
                            device="cpu")
    assert trainer.step == 2 and load_checkpoint(tmp_path / "run" / "checkpoint")["step"] == 2
    E = load_encoder(trainer.export(tmp_path / "e.safetensors"), generator=G)
    assert E.generator_identity == generator_identity(G)  # the same generator whatever file format it came in
    assert E(torch.zeros(1, 3, 16, 16)).shape == (1, G.num_ws, G.w_dim)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["generator"] == str(files[kind]) and run["steps"] == 2 and run["images"] is None


def test_a_resumed_run_follows_the_uninterrupted_run_bitwise(tmp_path):
    """Chunks stop on checkpoint boundaries, where the state is rounded to what the compact checkpoint holds, so
    a run resumed from disk (in a new process: new trainer objects) continues exactly as one that never stopped."""
    G, images = make_tiny_generator(resolution=16), tiny_images()
    config = dataclasses.replace(SMALL, data="given images")
    whole = EncoderTrainer(config, G, tmp_path / "whole", device="cpu", images=images)
    whole.train(log_every=1)
    for stop in (2, 4, 6):
        chunk = EncoderTrainer(config, G, tmp_path / "chunks", device="cpu", images=images)
        chunk.train(stop_at=stop, log_every=1)
    assert chunk.step == whole.step == 6
    for key, value in whole.E.state_dict().items():
        assert torch.equal(value, chunk.E.state_dict()[key]), key
    logs = [[json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
            for run in ("whole", "chunks")]
    strip = lambda entries: [{k: v for k, v in e.items() if k not in ("img_per_s", "train_minutes")} for e in entries]  # noqa: E731
    assert strip(logs[0]) == strip(logs[1])


def test_a_chunk_stops_only_on_a_checkpoint_boundary(tmp_path):
    trainer = EncoderTrainer(SMALL, make_tiny_generator(resolution=16), tmp_path, device="cpu")
    with pytest.raises(ValueError, match="not a checkpoint boundary"):
        trainer.train(stop_at=3)
    trainer.train(minutes=0)  # no time: one interval, then it stops at the boundary
    assert trainer.step == SMALL.checkpoint_every


def test_the_embedded_world_sized_encoder_checkpoint_is_compact(tmp_path):
    """<= 25 MB with Adam's first moments (beta1 = 0.9): fp16 weights, bf16 moments."""
    from ganinv.training.train_gan import GANTrainConfig

    G = Generator(**GANTrainConfig().generator_kwargs()).eval().requires_grad_(False)
    config = EncoderTrainConfig(batch_size=2, total_steps=1, perceptual="none", mixed_precision=False)
    trainer = EncoderTrainer(config, G, tmp_path, device="cpu")
    assert sum(p.numel() for p in trainer.E.parameters()) <= PARAMETER_BUDGET
    trainer.train()
    assert checkpoint_bytes(tmp_path / "checkpoint") <= 25e6
    state = load_checkpoint(tmp_path / "checkpoint")
    assert {t.dtype for t in state["E"].values()} == {torch.float16}
    moments = [s for per_param in state["opt"]["state"].values() for k, s in per_param.items() if k.startswith("exp")]
    assert len(moments) == 2 * len(state["opt"]["state"]) and {m.dtype for m in moments} == {torch.bfloat16}


def test_the_learning_rate_warms_up_then_decays_to_zero():
    config = EncoderTrainConfig(total_steps=1000, warmup_fraction=0.02, lr=1e-3)
    assert learning_rate(0, config) == pytest.approx(1e-3 / 20)
    assert learning_rate(19, config) == pytest.approx(1e-3) and learning_rate(20, config) == pytest.approx(1e-3)
    assert learning_rate(999, config) < 1e-8 and learning_rate(500, config) < learning_rate(300, config)


# ------------------------------------------------------------------------------------------------ identity refusal

def test_an_encoder_is_refused_with_any_other_generator(trained, tmp_path):
    G, path = trained
    other = make_tiny_generator(resolution=16, seed=8)  # same shapes, other weights
    with pytest.raises(EncoderGeneratorMismatch, match="trained for generator"):
        load_encoder(path, generator=other)
    with pytest.raises(EncoderGeneratorMismatch):
        encoder_record(path, generator=generator_identity(other))
    with pytest.raises(EncoderGeneratorMismatch):
        hybrid(other, path, torch.zeros(1, 3, 16, 16), num_steps=1, loss="mse", w_avg_samples=100)
    with pytest.raises(EncoderGeneratorMismatch):
        hybrid(other, load_encoder(path), torch.zeros(1, 3, 16, 16), num_steps=1, loss="mse", w_avg_samples=100)


def test_a_run_refuses_to_resume_with_another_generator(generator_files, tmp_path):
    G, files = generator_files
    train_encoder(tmp_path / "run", generator=str(files["pickle"]), steps=2, batch_size=4, perceptual="none",
                  device="cpu")
    other = save_generator(make_tiny_generator(resolution=16, seed=9), tmp_path / "other.safetensors")
    with pytest.raises(EncoderGeneratorMismatch, match="resume it with its own generator"):
        train_encoder(tmp_path / "run", generator=str(other), device="cpu")


def test_a_file_without_a_recorded_generator_is_checked_by_shape(tmp_path):
    E = Encoder(img_resolution=16, num_ws=6, w_dim=16, channels=(16, 16), style_channels=16)
    save_encoder(E, tmp_path / "old.safetensors")  # no generator_identity: a file from before they were recorded
    assert load_encoder(tmp_path / "old.safetensors", generator=make_tiny_generator(resolution=16)).num_ws == 6
    with pytest.raises(EncoderGeneratorMismatch, match="32 px"):
        load_encoder(tmp_path / "old.safetensors", generator=make_tiny_generator(resolution=32))


def test_the_encoder_record_names_file_hash_and_generator(trained):
    G, path = trained
    record = encoder_record(path, generator=G)
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record.generator_identity == generator_identity(G) and record.path == str(path.resolve())
    assert set(record.to_dict()) == {"source", "path", "sha256", "generator_identity"}


def test_hybrid_takes_an_encoder_file(trained):
    G, path = trained
    target = G(torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(1)), None).clamp(-1, 1)
    options = dict(num_steps=3, loss="mse", w_avg_samples=200, seed=[4, 5])
    from_file, from_module = hybrid(G, path, target, **options), hybrid(G, load_encoder(path), target, **options)
    assert torch.equal(from_file.ws, from_module.ws)
    assert torch.equal(from_file.init_ws, load_encoder(path)(target))


# ------------------------------------------------------------------------------------------------------ the data

def test_the_users_images_train_with_the_inversion_decoder_and_bad_files_are_skipped(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    for i, where in enumerate(["a.png", "sub/b.jpg", ".hidden/c.png"]):
        Image.fromarray(np.full([40, 30, 3], 40 * i, np.uint8)).save(folder / where)
    (folder / "broken.png").write_bytes(b"not an image")
    assert [p.name for p in list_image_files(folder)] == ["a.png", "broken.png", "b.jpg"]
    images = load_image_set(folder, 16)
    assert images.images.shape == (2, 16, 16, 3) and images.skipped[0][0].endswith("broken.png")
    (tmp_path / "list.txt").write_text("# two files\nphotos/a.png\n\nphotos/sub/b.jpg\n")
    listed = load_image_set(tmp_path / "list.txt", 16)
    assert np.array_equal(listed.images, images.images) and listed.fingerprint == images.fingerprint
    G = make_tiny_generator(resolution=16)
    trainer = EncoderTrainer(dataclasses.replace(SMALL, data=str(folder)), G, tmp_path / "run", device="cpu")
    trainer.train(stop_at=2)
    assert trainer.metadata()["images"]["count"] == 2 and trainer.metadata()["images"]["skipped"] == 1


def test_a_run_refuses_to_resume_on_changed_images(tmp_path):
    G = make_tiny_generator(resolution=16)
    config = dataclasses.replace(SMALL, data="given images")
    EncoderTrainer(config, G, tmp_path, device="cpu", images=tiny_images(seed=0)).train(stop_at=2)
    with pytest.raises(RunConfigMismatch, match="other images"):
        EncoderTrainer(config, G, tmp_path, device="cpu", images=tiny_images(seed=1))


def test_the_perceptual_term_is_picked_for_the_generator(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert resolve_perceptual("auto", embedded_world=True) == "clf-perceptual"
    assert resolve_perceptual("auto", embedded_world=False) == "none"  # no LPIPS trunk on disk: pixels and latents
    from ganinv.losses.lpips_distance import trunk_weights_path

    trunk_weights_path("vgg").parent.mkdir(parents=True)
    trunk_weights_path("vgg").write_bytes(b"")
    assert resolve_perceptual("auto", embedded_world=False) == "lpips-vgg"
    assert load_generator_source("faces64").embedded_world  # the built-in world, known by its identity
    assert EncoderTrainConfig(perceptual="classifier").perceptual == "clf-perceptual"


# ---------------------------------------------------------------------------------------------- sized for the generator

@pytest.mark.parametrize("resolution, num_ws, w_dim", [(16, 6, 16), (64, 10, 256), (256, 14, 512), (1024, 18, 512)])
def test_the_encoder_is_sized_for_the_generator(resolution, num_ws, w_dim):
    kwargs = encoder_kwargs_for(SimpleNamespace(img_resolution=resolution, num_ws=num_ws, w_dim=w_dim))
    read = min(resolution, 256)
    assert kwargs["input_resolution"] == read and len(kwargs["channels"]) == int(np.log2(read)) - 2
    with torch.device("meta"):
        E = Encoder(**kwargs)
    assert sum(p.numel() for p in E.parameters()) <= PARAMETER_BUDGET
    assert E.level_resolutions[-1] == 4 and E.level_resolutions[0] == read // 2


def test_a_large_generators_encoder_reads_a_downsampled_view():
    E = Encoder(img_resolution=32, num_ws=8, w_dim=8, channels=(8, 8), style_channels=8, input_resolution=16).eval()
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    small = torch.nn.functional.interpolate(image, size=(16, 16), mode="area")
    assert torch.allclose(E(image), E(small)) and E.init_kwargs["input_resolution"] == 16


def test_a_legacy_run_folder_of_our_own_still_trains(tmp_path):
    """--gan-run keeps working: the encoder belongs to the run's G_ema."""
    from ganinv.training.train_gan import GANTrainConfig, GANTrainer, generator_from_checkpoint

    config = GANTrainConfig(resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16,
                            d_channel_base=256, d_channel_max=16, batch_size=4, data="tiny.npy")
    GANTrainer(config, tmp_path / "gan", device="cpu", images=tiny_images()).save()
    trainer = train_encoder(tmp_path / "enc", gan_run=tmp_path / "gan", steps=2, batch_size=4, device="cpu")
    assert trainer.config.perceptual in ("none", "lpips-vgg")  # not the embedded world: its data was not procedural
    assert trainer.E.generator_identity == generator_identity(generator_from_checkpoint(tmp_path / "gan"))


# ------------------------------------------------------------------------------------------------------ warm start

def offsets(E: Encoder, x: torch.Tensor) -> torch.Tensor:
    """What the encoder's weights predict, apart from the generator's average it adds (`E(x) - w_avg`)."""
    with torch.no_grad():
        return E(x) - E.w_avg


@pytest.fixture
def two_generators(tmp_path):
    """Two tiny generators of one architecture (an earlier and a later G of one GAN run, as it were), as files."""
    return [save_generator(make_tiny_generator(resolution=16, seed=seed), tmp_path / f"g{seed}.safetensors")
            for seed in (3, 4)]


def test_a_warm_started_run_begins_with_the_source_encoders_weights_and_its_own_w_avg(two_generators, tmp_path):
    earlier, later = two_generators
    source = train_encoder(tmp_path / "src", generator=str(earlier), config=SMALL, stop_at=2, device="cpu")
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    for init_from in (tmp_path / "src", source.export(tmp_path / "src.safetensors")):  # a run folder, a file
        G = load_generator_source(str(later)).G
        warm = EncoderTrainer(dataclasses.replace(SMALL, init_from=str(init_from)), G, tmp_path / f"w{init_from.name}",
                              device="cpu")
        cold = EncoderTrainer(SMALL, G, tmp_path / f"c{init_from.name}", device="cpu")
        assert torch.allclose(offsets(warm.E, x), offsets(source.E, x), atol=1e-6)  # the source's weights...
        assert not torch.allclose(offsets(cold.E, x), offsets(source.E, x), atol=1e-3)  # (not what a new one has)
        assert torch.equal(warm.E.w_avg, cold.E.w_avg) and not torch.equal(warm.E.w_avg, source.E.w_avg)  # ...G's mean
        assert warm.step == 0 and not warm.opt.state  # the schedule and Adam start fresh


def test_a_warm_start_records_the_sources_sha256_and_generator(two_generators, tmp_path):
    from ganinv.training.checkpoint import checkpoint_sha256
    from ganinv.utils.files import file_sha256

    earlier, later = two_generators
    source = train_encoder(tmp_path / "src", generator=str(earlier), config=SMALL, stop_at=2, device="cpu")
    file = source.export(tmp_path / "src.safetensors")
    for init_from, digest in ((tmp_path / "src", checkpoint_sha256(tmp_path / "src" / "checkpoint")),
                              (file, file_sha256(file))):
        run = tmp_path / f"warm_{init_from.name}"
        trainer = train_encoder(run, generator=str(later), init_from=init_from, config=SMALL, stop_at=2, device="cpu")
        recorded = load_checkpoint(run / "checkpoint")["config"]
        assert (recorded["init_from"], recorded["init_from_sha256"]) == (str(init_from), digest)
        assert recorded["init_from_generator"] == source.generator_identity != trainer.generator_identity
        exported = json.loads(encoder_metadata(trainer.export(tmp_path / "e.safetensors"))["config"])
        assert exported["init_from_sha256"] == digest  # the shipped file says where its weights began
    assert train_encoder(tmp_path / "cold", generator=str(later), config=SMALL, stop_at=2,
                         device="cpu").config.init_from_sha256 is None


def encoder_metadata(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_a_warm_start_from_another_architecture_is_refused_naming_both(two_generators, tmp_path):
    from ganinv.training.train_encoder import WarmStartMismatch

    earlier, later = two_generators
    train_encoder(tmp_path / "src", generator=str(earlier), config=SMALL, stop_at=2, device="cpu")
    wider = dataclasses.replace(SMALL, channels=(16, 16))
    with pytest.raises(WarmStartMismatch, match=r"init_from \S*src: .*\[16, 32\].*\[16, 16\]"):
        train_encoder(tmp_path / "warm", generator=str(later), init_from=tmp_path / "src", config=wider, device="cpu")
    assert not (tmp_path / "warm" / "checkpoint").exists()
    with pytest.raises(FileNotFoundError, match="nope"):
        train_encoder(tmp_path / "warm", generator=str(later), init_from=tmp_path / "nope", config=SMALL, device="cpu")


def test_a_resumed_warm_run_accepts_its_own_init_from_only(two_generators, tmp_path):
    """The chunk command is repeated as it is: the same --init-from goes on without reading the source again (it
    may be gone from the machine); another one, or one for a run created cold, is refused."""
    earlier, later = two_generators
    train_encoder(tmp_path / "src", generator=str(earlier), config=SMALL, stop_at=2, device="cpu")
    train_encoder(tmp_path / "other", generator=str(earlier), config=SMALL, stop_at=2, device="cpu")
    warm = dict(generator=str(later), config=SMALL, device="cpu")
    train_encoder(tmp_path / "warm", init_from=f"{tmp_path / 'src'}/", stop_at=2, **warm)
    shutil.rmtree(tmp_path / "src")
    assert train_encoder(tmp_path / "warm", init_from=tmp_path / "src", stop_at=4, **warm).step == 4
    assert train_encoder(tmp_path / "warm", stop_at=6, **warm).step == 6  # without the option: the run's own
    with pytest.raises(RunConfigMismatch, match=r"init_from='\S*src' \(asked '\S*other'\)"):
        train_encoder(tmp_path / "warm", init_from=tmp_path / "other", **warm)
    train_encoder(tmp_path / "cold", stop_at=2, **warm)
    with pytest.raises(RunConfigMismatch, match="init_from=None"):
        train_encoder(tmp_path / "cold", init_from=tmp_path / "other", **warm)


def test_a_run_folders_sha256_follows_its_checkpoint_files(tmp_path):
    from ganinv.training.checkpoint import checkpoint_sha256

    trainer = EncoderTrainer(SMALL, make_tiny_generator(resolution=16), tmp_path / "run", device="cpu")
    trainer.train(stop_at=2)
    first = checkpoint_sha256(tmp_path / "run" / "checkpoint")
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    assert checkpoint_sha256(tmp_path / "copy" / "checkpoint") == first  # the files, not where they are
    trainer.train(stop_at=4)  # new weights in the shards
    assert checkpoint_sha256(tmp_path / "run" / "checkpoint") != first
