"""Train the pSp/e4e-style encoder (`ganinv.models.encoder`) for any frozen generator ganinv loads.

The generator comes from a source (`--generator`: an official StyleGAN2-ADA pickle, a ganinv `.safetensors` file, a
built-in name) or from a GAN run of our own (`--gan-run`). The encoder only uses the generator's public interface
(`z_dim, w_dim, num_ws, img_resolution, mapping, synthesis(ws, noise_mode=...), w_stats`), so any style-based
generator that provides it (StyleGAN3 included) trains the same way. Each step mixes two kinds of images:

- generated (pSp/e4e's in-domain half; idinvert trains on these alone): ws sampled through the mapping with style
  mixing (so W+ is covered, not just W), rendered with random noise; loss = latent regression to the true ws
  (normalised by W's per-coordinate variance) + image reconstruction;
- the user's images, when given (`data`: a folder, a list file, an `.npy` array, `procedural:N:SEED`), decoded by the
  inversion's own decoder: image reconstruction only.

Image reconstruction = `pixel_weight` x MSE + `perceptual_weight` x a perceptual distance, picked when the run is
created (`perceptual='auto'`): the embedded world's `clf-perceptual` when the generator is the embedded world's (the
built-in faces64 or a GAN run on procedural faces: its attribute classifier knows that domain; a run folder's own
`classifier.safetensors`, when it has one, for a run of another world version), else LPIPS-VGG when
torchvision's VGG16 trunk is on disk, else none (pixel and latent terms only). An uncalibrated network is never
called LPIPS: the log names the term the loss registry names.

Generators above 256 px are trained through an area-downsampled view (the encoder's input size, pSp's 256 px): the
user's images are decoded at that size and the reconstruction losses compare at it.

Chunks and checkpoints. `train(minutes=M)` runs whole intervals of `checkpoint_every` steps and stops at the last
interval boundary that fits in M minutes, so a run advances in chunks that each fit a lent machine's slot. At every
boundary the trainer rounds its state to what a compact checkpoint holds (fp16 weights, bf16 Adam moments: about 6
bytes per parameter, <= 25 MB for the default sizes) and continues from the rounded values, so a run resumed from
any checkpoint, on any machine, follows the uninterrupted run exactly (bitwise on the CPU; on a GPU up to the
nondeterminism of its kernels). The checkpoint records the generator identity; resuming with another generator is
refused.

Warm start (`init_from`: an encoder file, a built-in name or an encoder run folder). A new run may start from the
weights of an encoder trained for another generator of the same architecture (an earlier checkpoint of the same GAN
run: the GAN moved on, and its encoder needs far fewer steps on the new G_ema than from scratch). Only the run's
creation reads the source: the encoder's constructor arguments must match (else `WarmStartMismatch` naming both),
`w_avg` is the new generator's (the encoder predicts offsets from it, as e4e does), Adam and the schedule start
fresh, and the config records the source's sha256 and the generator it was trained for. A resumed run keeps its
own start: repeating the same `init_from` (the same chunk command) is accepted without reading it again (it may be
gone from the machine), another one is a `RunConfigMismatch`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganinv.datasets.image_set import ImageSet, load_image_set
from ganinv.generators.base import StyleGenerator
from ganinv.models.attributes import BUILTIN
from ganinv.models.encoder import Encoder, EncoderGeneratorMismatch, encoder_kwargs_for, save_encoder
from ganinv.training.checkpoint import (
    checkpoint_sha256, compact_adam_state, config_from_dict, full_adam_state, half_state_dict, load_checkpoint,
    load_checkpoint_entry, save_checkpoint,
)
from ganinv.training.sampling import style_mixed_ws, training_autocast
from ganinv.utils.files import file_sha256
from ganinv.utils.images import to_model_input
from ganinv.errors import UserError

PERCEPTUAL_TERMS = ("auto", "clf-perceptual", "lpips-vgg", "lpips-alex", "none", "classifier")
_ALIASES = {"classifier": "clf-perceptual"}  # the name `ganinv train-encoder --perceptual` used first


@dataclass(frozen=True)
class EncoderTrainConfig:
    """The recipe, fixed when a run is created (the checkpoint keeps it). The defaults are what we would train the
    embedded world's encoder with (docs/encoder.md): 50,000 steps at batch 128, half of each batch the user's
    images when there are any; the encoder is sized for the generator unless `channels` is given."""

    data: str | None = None                 # the user's images (see the module doc); None: generated images only
    batch_size: int = 128
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    total_steps: int = 50_000               # the learning-rate schedule's length
    warmup_fraction: float = 0.02           # linear warm-up over this part of the run, then a cosine decay to 0
    latent_weight: float = 1.0              # mse(E(G(w)), w) / Var(W), generated images only
    pixel_weight: float = 1.0               # mse on [-1, 1] pixels (pSp's lambda_l2)
    perceptual: str = "auto"                # 'auto' is resolved when the run is created (see the module doc)
    perceptual_weight: float = 0.5
    perceptual_classifier: str | None = None  # sha256 of clf-perceptual's classifier file, recorded at creation
    real_fraction: float = 0.5              # of each batch, when `data` is given
    style_mixing_prob: float = 0.5
    channels: tuple[int, ...] | None = None  # encoder size; None: `encoder_kwargs_for(G)`
    style_channels: int | None = None
    mixed_precision: bool = True            # bf16 autocast for the passes on CUDA
    checkpoint_every: int = 500             # steps between state roundings (chunks end on these boundaries)
    seed: int = 0
    init_from: str | None = None            # warm start from this encoder (see the module doc); None: from scratch
    init_from_sha256: str | None = None     # recorded at creation: the source file's (a run folder: its checkpoint's)
    init_from_generator: str | None = None  # recorded at creation: the generator identity the source was trained for

    def __post_init__(self):
        if self.perceptual not in PERCEPTUAL_TERMS:
            raise ValueError(f"perceptual={self.perceptual!r}: expected one of {', '.join(PERCEPTUAL_TERMS)}")
        if self.total_steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError(f"total_steps, batch_size and checkpoint_every must be >= 1: {self}")
        if self.data is not None and not 0 < self.real_fraction < 1:
            raise ValueError(f"real_fraction must be in (0, 1) when data is given, got {self.real_fraction}")
        object.__setattr__(self, "perceptual", _ALIASES.get(self.perceptual, self.perceptual))
        if self.init_from is not None:  # one spelling per source: 'runs/enc/' and 'runs/enc' are the same start
            object.__setattr__(self, "init_from", str(Path(self.init_from)))


def learning_rate(step: int, config: EncoderTrainConfig) -> float:
    """Linear warm-up over `warmup_fraction` of the run, then a cosine decay to 0 at `total_steps` (a pure function
    of the step: nothing but the step counter needs saving)."""
    warmup = max(1, round(config.warmup_fraction * config.total_steps))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, config.total_steps - warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


@dataclass(frozen=True)
class GeneratorSource:
    """A frozen generator to train an encoder for, its identity, and where it came from."""

    G: nn.Module
    identity: str
    description: str       # the source as given ('faces64', a path, 'gan-run:PATH')
    embedded_world: bool   # the procedural-faces world: its attribute classifier is a perceptual net for the domain
    classifier: str = BUILTIN  # that world's classifier: a GAN run's own (`run_world`), else the built-in one


def load_generator_source(generator: str | None = None, *, gan_run: str | Path | None = None) -> GeneratorSource:
    """The generator of `generator` (built-in name, official pickle, `.safetensors`) or of a GAN run's latest
    checkpoint (`G_ema`). Raises `GeneratorLoadError` / FileNotFoundError naming the source."""
    from ganinv.generators.io import generator_identity, load_generator_and_identity

    if (generator is None) == (gan_run is None):
        raise ValueError("give the generator either as a source (generator=...) or as a GAN run (gan_run=...)")
    if gan_run is not None:
        from ganinv.training.train_gan import checkpoint_config, generator_from_checkpoint, run_world

        G = generator_from_checkpoint(gan_run)
        data = checkpoint_config(gan_run).data
        return GeneratorSource(G, generator_identity(G), f"gan-run:{gan_run}", data.startswith("procedural:"),
                               classifier=run_world(gan_run)[1])
    G, identity = load_generator_and_identity(generator)
    return GeneratorSource(G, identity, str(generator), identity == _builtin_world_identity())


def _builtin_world_identity() -> str | None:
    """The identity the built-in faces64 generator file records (None when it is absent from this checkout)."""
    from ganinv.generators.io import GeneratorLoadError, read_generator_metadata, resolve_generator_source

    try:
        return read_generator_metadata(resolve_generator_source("faces64")).get("identity")
    except GeneratorLoadError:
        return None


def resolve_perceptual(term: str, *, embedded_world: bool) -> str:
    """A concrete term for 'auto' (see the module doc); other names pass through."""
    if term != "auto":
        return term
    from ganinv.losses.lpips_distance import trunk_weights_path

    if embedded_world:
        return "clf-perceptual"
    return "lpips-vgg" if trunk_weights_path("vgg").is_file() else "none"


def _downsample(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="area")


class EncoderTrainer:
    """Holds G (frozen), the encoder E, Adam and the user's images; `train(minutes=...)` advances and checkpoints.

    `images`: the user's images as an `ImageSet` (or uint8 `[N, r, r, 3]`, r the encoder's input size); default:
    loaded from `config.data`. `perceptual`: a loss object `(recon, prepared) -> [N]` with `prepare(target)`; default
    built from `config.perceptual` by the loss registry, its clf-perceptual term on `classifier` (the generator's
    world's attribute classifier)."""

    def __init__(self, config: EncoderTrainConfig, G: StyleGenerator, run_dir: str | Path, *, device: str = "cuda",
                 generator_identity: str | None = None, generator_description: str = "",
                 images: ImageSet | np.ndarray | None = None, perceptual: nn.Module | None = None,
                 classifier: str = BUILTIN):
        if config.perceptual == "auto":
            raise ValueError("config.perceptual 'auto' depends on the generator: resolve it first (resolve_perceptual, "
                             "or encoder_run_config does)")
        self.config, self.run_dir, self.device = config, Path(run_dir), torch.device(device)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)
        self.rng = random.Random(config.seed)
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.generator_identity = generator_identity
        self.generator_description = generator_description
        self.E = Encoder(**self.encoder_kwargs()).to(self.device)
        self.E.generator_identity = generator_identity
        w_avg, w_std = G.w_stats(10000, seed=config.seed)
        self.E.w_avg.copy_(w_avg)
        self.w_var = float(w_std) ** 2 / G.w_dim  # per-coordinate variance of W (w_std is a whole-vector norm)
        self.opt = torch.optim.Adam(self.E.parameters(), lr=config.lr, betas=config.betas)
        if perceptual is None and config.perceptual != "none":
            from ganinv.losses.registry import build_loss

            perceptual = build_loss(config.perceptual, device=self.device, classifier=classifier)
        self.perceptual = perceptual
        self.synthesis_kwargs = _batch_synthesis_kwargs(G)
        self.image_set = self._image_set(images)
        self.images = None if self.image_set is None else self._to_device(self.image_set.images)
        self.step, self.train_seconds = 0, 0.0
        if (self.run_dir / "checkpoint" / "checkpoint.json").exists():
            self.load()
        elif config.init_from is not None:
            self.warm_start()

    def encoder_kwargs(self) -> dict[str, Any]:
        kwargs = encoder_kwargs_for(self.G)
        if self.config.channels is not None:
            kwargs["channels"] = tuple(self.config.channels)
        if self.config.style_channels is not None:
            kwargs["style_channels"] = self.config.style_channels
        return kwargs

    @property
    def resolution(self) -> int:
        """What the encoder reads and the losses compare: `min(G.img_resolution, 256)`."""
        return self.E.input_resolution

    def _image_set(self, images: ImageSet | np.ndarray | None) -> ImageSet | None:
        if images is None and self.config.data is None:
            return None
        if images is None:
            images = load_image_set(self.config.data, self.resolution)
        elif isinstance(images, np.ndarray):
            images = ImageSet(images, tuple(str(i) for i in range(len(images))))
        want = (self.resolution, self.resolution, 3)
        if images.images.dtype != np.uint8 or images.images.shape[1:] != want:
            raise ValueError(f"training images must be uint8 [N, {', '.join(map(str, want))}] (the encoder's input "
                             f"size), got {images.images.dtype} {list(images.images.shape)}")
        return images

    def _to_device(self, images: np.ndarray) -> torch.Tensor:
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        return pixels.to(self.device) if pixels.numel() <= 2 * 2 ** 30 else pixels  # larger sets stay on the host

    # ------------------------------------------------------------------------------------------------ one step

    @torch.no_grad()
    def generated_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images `[n, 3, r, r]` at the encoder's input size, their ws `[n, num_ws, w_dim]`)."""
        ws = style_mixed_ws(self.G, n, self.rng, mixing_prob=self.config.style_mixing_prob, device=self.device)
        with training_autocast(self.device, mixed_precision=self.config.mixed_precision):
            images = self.G.synthesis(ws, noise_mode="random", **self.synthesis_kwargs)
        return _downsample(images.float(), self.resolution), ws

    def real_batch(self, n: int) -> torch.Tensor:
        index = torch.randint(len(self.images), [n], device=self.images.device)
        return to_model_input(self.images[index].to(self.device, non_blocking=True))

    def split(self) -> tuple[int, int]:
        """(generated, real) images per batch."""
        batch = self.config.batch_size
        n_real = 0 if self.images is None else min(batch - 1, int(round(batch * self.config.real_fraction)))
        return batch - n_real, n_real  # at least one generated image: the latent term needs one

    def train_step(self) -> dict[str, torch.Tensor]:
        """One Adam step at `learning_rate(step)`; returns detached losses (no host sync)."""
        cfg = self.config
        n_gen, n_real = self.split()
        gen_img, gen_ws = self.generated_batch(n_gen)
        target = gen_img if n_real == 0 else torch.cat([gen_img, self.real_batch(n_real)])
        with training_autocast(self.device, mixed_precision=cfg.mixed_precision):
            ws = self.E(target)
            recon = self.G.synthesis(ws, noise_mode="const", **self.synthesis_kwargs)
            recon = _downsample(recon, self.resolution)
            perceptual = None
            if self.perceptual is not None and cfg.perceptual_weight > 0:
                perceptual = self.perceptual(recon, self.perceptual.prepare(target)).float().mean()
        ws, recon = ws.float(), recon.float()
        logs = dict(latent=F.mse_loss(ws[:n_gen], gen_ws) / self.w_var, pixel=F.mse_loss(recon, target))
        loss = cfg.latent_weight * logs["latent"] + cfg.pixel_weight * logs["pixel"]
        if perceptual is not None:
            logs[self.perceptual_name] = perceptual
            loss = loss + cfg.perceptual_weight * perceptual
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(self.step, cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        if n_real:
            logs["real_mse"] = F.mse_loss(recon[n_gen:], target[n_gen:])
        return dict(loss=loss.detach(), **{k: v.detach() for k, v in logs.items()})

    @property
    def perceptual_name(self) -> str:
        return self.config.perceptual

    # --------------------------------------------------------------------------------------------------- chunks

    def boundary(self, step: int) -> bool:
        return step % self.config.checkpoint_every == 0 or step == self.config.total_steps

    def train(self, *, minutes: float | None = None, stop_at: int | None = None, log_every: int = 100,
              save_minutes: float = 2.0) -> None:
        """Train whole intervals of `checkpoint_every` steps until the schedule ends, `stop_at` (a boundary) is
        reached, or the next interval would not end within `minutes` of wall time; then checkpoint. The state is
        rounded at every boundary (and written to disk every `save_minutes`), so stopping anywhere is resumable."""
        stop_at = self.config.total_steps if stop_at is None else min(stop_at, self.config.total_steps)
        if not self.boundary(stop_at):
            raise ValueError(f"stop_at={stop_at} is not a checkpoint boundary (a multiple of checkpoint_every="
                             f"{self.config.checkpoint_every}, or total_steps): a run stops only where it rounds")
        deadline = math.inf if minutes is None else time.time() + minutes * 60
        self._clock = last_save = interval_start = t_log = time.time()
        n_log = self.step
        with (self.run_dir / "log.jsonl").open("a") as log:
            while self.step < stop_at:
                logs = self.train_step()
                if self.step % log_every == 0 or self.step == stop_at:
                    now = time.time()
                    entry = dict(step=self.step, lr=learning_rate(self.step - 1, self.config),
                                 img_per_s=round((self.step - n_log) * self.config.batch_size / max(now - t_log, 1e-9),
                                                 1),
                                 train_minutes=round((self.train_seconds + now - self._clock) / 60, 3),
                                 **{k: round(float(v), 5) for k, v in logs.items()})
                    t_log, n_log = now, self.step
                    log.write(json.dumps(entry) + "\n")
                    log.flush()
                    print(json.dumps(entry), flush=True)
                if self.boundary(self.step):
                    self.round_state()
                    now = time.time()
                    interval, interval_start = now - interval_start, now
                    if now + interval > deadline:
                        break
                    if now - last_save > save_minutes * 60:
                        self.save()
                        last_save = time.time()
        self.save()

    # ---------------------------------------------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs, compact (fp16 weights, bf16 Adam moments)."""
        return dict(config=dataclasses.asdict(self.config), step=self.step, train_seconds=self.train_seconds,
                    generator_identity=self.generator_identity, generator=self.generator_description,
                    encoder=self.E.init_kwargs,
                    images_fingerprint=None if self.image_set is None else self.image_set.fingerprint,
                    E=half_state_dict(self.E.state_dict()), opt=compact_adam_state(self.opt),
                    rng_torch=torch.get_rng_state(), rng_python=list(self.rng.getstate()[1]),
                    rng_cuda=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)

    def round_state(self) -> None:
        """Continue from exactly what a checkpoint taken now would hold (see the module doc)."""
        state = self.state()
        self.E.load_state_dict(state["E"])
        self.opt.load_state_dict(full_adam_state(state["opt"]))

    def save(self) -> None:
        now = time.time()
        self.train_seconds += now - getattr(self, "_clock", now)
        self._clock = now
        state = self.state()
        save_checkpoint(self.run_dir / "checkpoint", state)
        # For people reading the run folder; the checkpoint's config is the source of truth.
        (self.run_dir / "run.json").write_text(json.dumps(self.metadata(), indent=1))

    def load(self) -> None:
        state = load_checkpoint(self.run_dir / "checkpoint")
        if self.generator_identity is not None and state["generator_identity"] not in (None, self.generator_identity):
            raise EncoderGeneratorMismatch(
                f"encoder run {self.run_dir} trains for generator {state['generator_identity'][:12]}... "
                f"({state.get('generator')}), not {self.generator_identity[:12]}... ({self.generator_description}): "
                "resume it with its own generator, or start a new --run-dir")
        fingerprint = None if self.image_set is None else self.image_set.fingerprint
        if state["images_fingerprint"] != fingerprint:
            raise RunConfigMismatch(f"encoder run {self.run_dir} was trained on other images than {self.config.data} "
                                    "holds now (files added, removed or changed): restore them, or start a new "
                                    "--run-dir")
        self.E.load_state_dict(state["E"])
        self.opt.load_state_dict(full_adam_state(state["opt"]))
        self.step, self.train_seconds = state["step"], state["train_seconds"]
        torch.set_rng_state(state["rng_torch"])
        self.rng.setstate((3, tuple(state["rng_python"]), None))
        if state.get("rng_cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)

    def warm_start(self) -> None:
        """A new run's encoder takes the weights of `config.init_from` (see the module doc): all but `w_avg`, which
        stays the new generator's; the config then records the source's sha256 and generator."""
        source, digest = load_warm_start(self.config.init_from)
        if source.init_kwargs != self.E.init_kwargs:
            raise WarmStartMismatch(
                f"init_from {self.config.init_from}: that encoder is built with {source.init_kwargs}, this run's "
                f"with {self.E.init_kwargs}: warm start from an encoder of a generator of the same architecture "
                "(and the same channels / style_channels), or train from scratch")
        if self.config.init_from_sha256 not in (None, digest):
            raise WarmStartMismatch(f"init_from {self.config.init_from} has sha256 {digest[:12]}..., not the "
                                    f"{self.config.init_from_sha256[:12]}... the config asks for")
        self.E.load_state_dict(dict(source.state_dict(), w_avg=self.E.w_avg.detach().clone()))
        self.config = dataclasses.replace(self.config, init_from_sha256=digest,
                                          init_from_generator=source.generator_identity)
        print(f"warm start from {self.config.init_from} (sha256 {digest[:12]}..., trained for generator "
              f"{(source.generator_identity or 'unrecorded')[:12]}...)", flush=True)

    def metadata(self) -> dict[str, Any]:
        """Provenance for the exported encoder file and `run.json`."""
        images = None if self.image_set is None else dict(
            source=self.config.data, count=len(self.image_set.images), skipped=len(self.image_set.skipped),
            fingerprint=self.image_set.fingerprint)
        return dict(config=dataclasses.asdict(self.config), steps=self.step,
                    train_minutes=round(self.train_seconds / 60, 2), generator=self.generator_description,
                    images=images, encoder=self.E.init_kwargs,
                    device=torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu")

    def export(self, path: str | Path) -> Path:
        """Write the encoder (with the generator identity it belongs to and this run's provenance)."""
        return save_encoder(self.E.eval(), path, metadata=self.metadata())


def encoder_from_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """The encoder of an encoder run's latest checkpoint (its fp16 weights), with the generator identity it belongs
    to, in eval mode: what `EncoderTrainer.export` would write, without the run's generator or data."""
    state = load_checkpoint(Path(run_dir) / "checkpoint")
    E = Encoder(**state["encoder"])
    E.load_state_dict(state["E"])
    E.generator_identity = state["generator_identity"]
    return E.to(device).eval().requires_grad_(False)


class WarmStartMismatch(UserError, ValueError):
    """`init_from` names an encoder this run cannot start from (another architecture, or another file than the
    config's recorded sha256)."""


def load_warm_start(source: str | Path) -> tuple[Encoder, str]:
    """(the encoder of `source`, its sha256): an encoder run folder (its latest checkpoint; the digest covers the
    checkpoint's files, `checkpoint_sha256`), else an encoder file or built-in name (the file's sha256). Raises
    FileNotFoundError naming `source`."""
    from ganinv.models.encoder import ENCODER_WEIGHTS, load_encoder
    from ganinv.utils.weights import resolve_weights

    if Path(source).is_dir():
        return encoder_from_run(source), checkpoint_sha256(Path(source) / "checkpoint")
    return load_encoder(source), file_sha256(resolve_weights(str(source), ENCODER_WEIGHTS))


def _record_perceptual_classifier(run_dir: str | Path, config: EncoderTrainConfig,
                                  source: GeneratorSource) -> EncoderTrainConfig:
    """A new `clf-perceptual` run records which classifier file its perceptual term reads (sha256: the run's own or
    the built-in); resuming with another one (a GAN run folder that gained or changed its `classifier.safetensors`)
    is a RunConfigMismatch, and the exported encoder says which (ship_world checks it against the run's)."""
    if config.perceptual != "clf-perceptual":
        return config
    from ganinv.models.attributes import CLASSIFIER_WEIGHTS
    from ganinv.utils.weights import resolve_weights

    digest = file_sha256(resolve_weights(source.classifier, CLASSIFIER_WEIGHTS))
    if not (Path(run_dir) / "checkpoint" / "checkpoint.json").exists():
        return dataclasses.replace(config, perceptual_classifier=digest)
    if config.perceptual_classifier not in (None, digest):  # None: a run from before the record
        raise RunConfigMismatch(
            f"encoder run {run_dir} measures clf-perceptual with the classifier {config.perceptual_classifier[:12]}..."
            f", but {source.description} now has {source.classifier} ({digest[:12]}...): resume it with the classifier "
            "it started with, or start a new --run-dir")
    return config


def _batch_synthesis_kwargs(G: nn.Module) -> dict[str, Any]:
    """Unfused modulated convolutions where the synthesis network offers the choice (StyleGAN2): one shared
    convolution for the whole batch instead of a grouped one per image."""
    parameters = inspect.signature(G.synthesis.forward).parameters
    return {"fused_modconv": False} if "fused_modconv" in parameters else {}


class RunConfigMismatch(UserError, ValueError):
    """A resumed run was asked to train with options or images other than those it was created with."""


def encoder_run_config(run_dir: str | Path, *, steps: int | None = None, data: str | None = None,
                       perceptual: str | None = None, batch_size: int | None = None,
                       init_from: str | Path | None = None, embedded_world: bool = False,
                       base: EncoderTrainConfig | None = None) -> EncoderTrainConfig:
    """The config of the encoder run in `run_dir`: a new run's from `base` (default `EncoderTrainConfig()`) and the
    options given, with 'auto' resolved for this generator; a resumed run's from its checkpoint, which fixed the
    schedule, the data, the losses and the warm start when the run was created (`base` is then not read). Resuming
    with an option that differs is a RunConfigMismatch naming both values (the schedule cannot change length
    mid-run; a run cannot change where it started)."""
    asked = dict(total_steps=steps, data=data, batch_size=batch_size,
                 perceptual=None if perceptual is None else _ALIASES.get(perceptual, perceptual),
                 init_from=None if init_from is None else str(Path(init_from)))
    asked = {k: v for k, v in asked.items() if v is not None}
    checkpoint = Path(run_dir) / "checkpoint"
    if not (checkpoint / "checkpoint.json").exists():
        config = dataclasses.replace(base or EncoderTrainConfig(), **asked)
        return dataclasses.replace(config, perceptual=resolve_perceptual(config.perceptual,
                                                                         embedded_world=embedded_world))
    saved = config_from_dict(EncoderTrainConfig, load_checkpoint_entry(checkpoint, "config"))
    clash = [f"{k}={getattr(saved, k)!r} (asked {v!r})" for k, v in asked.items()
             if getattr(saved, k) != v and not (k == "perceptual" and v == "auto")]
    if clash:
        raise RunConfigMismatch(f"encoder run {run_dir} was created with {', '.join(clash)}: resume it without those "
                                "options (or with the same values), or start a new --run-dir")
    return saved


def train_encoder(run_dir: str | Path, *, minutes: float | None = None, generator: str | None = None,
                  gan_run: str | Path | None = None, steps: int | None = None, data: str | None = None,
                  perceptual: str | None = None, batch_size: int | None = None, device: str | None = None,
                  stop_at: int | None = None, images: ImageSet | None = None, init_from: str | Path | None = None,
                  config: EncoderTrainConfig | None = None) -> EncoderTrainer:
    """Create or resume the encoder run in `run_dir` for `generator` (built-in name, official pickle,
    `.safetensors`) or the `G_ema` of the GAN run `gan_run`; train for `minutes` of wall time (whole checkpoint
    intervals) or to `stop_at`, then checkpoint. Export with `trainer.export(path)`.

    `steps` (schedule length), `data` (the user's images), `perceptual` (one of PERCEPTUAL_TERMS), `batch_size` and
    `init_from` (warm start from an encoder file or encoder run folder: see the module doc) are fixed when the run is
    created (defaults: `EncoderTrainConfig`'s); a resumed run keeps its own and refuses others
    (`RunConfigMismatch`), and refuses another generator (`EncoderGeneratorMismatch`). `images`: already
    decoded images (an `ImageSet`) instead of decoding `data` (e.g. files listed by a dataset scan). `config`: the
    rest of a new run's recipe (loss weights, sizes...; not read when resuming)
    `device` defaults to CUDA when available."""
    if perceptual is not None and perceptual not in PERCEPTUAL_TERMS:
        raise ValueError(f"perceptual={perceptual!r}: expected one of {', '.join(PERCEPTUAL_TERMS)}")
    source = load_generator_source(generator, gan_run=gan_run)
    config = encoder_run_config(run_dir, steps=steps, data=data, perceptual=perceptual, batch_size=batch_size,
                                init_from=init_from, embedded_world=source.embedded_world, base=config)
    config = _record_perceptual_classifier(run_dir, config, source)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    trainer = EncoderTrainer(config, source.G, run_dir, device=device, generator_identity=source.identity,
                             generator_description=source.description, images=images,
                             classifier=source.classifier)
    trainer.train(minutes=minutes, stop_at=stop_at)
    return trainer

