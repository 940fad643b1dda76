"""A small StyleGAN2 trainer for the embedded world (not a general GAN trainer).

What it follows (Karras et al. 2020a/b): non-saturating logistic loss; lazy regularisation (R1 on reals every
`r1_interval` D steps, path-length regularisation every `pl_interval` G steps, with the learning rate and Adam betas
rescaled by `interval / (interval + 1)`); style-mixing regularisation; Adam(0, 0.99); an exponential moving average
of G (`G_ema`) with ramp-up; bf16 autocast for the main passes on CUDA (regularisers in fp32). It trains in chunks of
`minutes` (`ganinv train-gan --minutes`), each ending in a checkpoint that the next chunk resumes from, so it fits
machines lent for 10 minutes. With `classifier` set, a third lazy regulariser asks G for InterFaceGAN's linear,
separately editable attributes (linear_attributes.py; its classifier runs in G's autocast); a chunk may switch it on.

The dataset is held in device memory as uint8 (64x64 images are small): a folder of PNGs, an `.npy` array
`[N, H, W, 3]`, or `procedural:N:SEED[:vVERSION]`, rendered on all cores by the embedded world's `render_batch`.
"""

from __future__ import annotations

import copy
import dataclasses
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

from ganinv.datasets.folder import IMAGE_SUFFIXES, DecodePolicy, decode_image, is_image_name
from ganinv.builtin_models import recorded_world_version
from ganinv.datasets.procedural_faces import parse_procedural_spec, render_batch, world
from ganinv.generators.stylegan2 import Generator
from ganinv.models.attributes import BUILTIN, load_classifier
from ganinv.models.attributes import read_metadata as read_classifier_metadata
from ganinv.training.checkpoint import (compact_adam_state, config_from_dict, full_adam_state, half_state_dict,
                                        load_checkpoint, load_checkpoint_entry, save_checkpoint)
from ganinv.training.checkpoint import parse_settings as parse_config_settings
from ganinv.training.discriminator import Discriminator
from ganinv.training.linear_attributes import LinearAttributes, attribute_statistics
from ganinv.training.sampling import style_mixed_ws, training_autocast
from ganinv.utils.images import to_model_input, to_uint8


def _resumable(default: Any) -> Any:
    """A `GANTrainConfig` field that a resumed chunk may change (`RESUMABLE_FIELDS`): the batch size (the log records
    it in every entry), the learning rates (a late chunk may lower them; Adam keeps its moments), G_ema's half-life
    and the linear-attribute regulariser's weights and options (a chunk may switch it on). The mark is field metadata
    only: `dataclasses.asdict`, equality and the saved config are those of a plain field."""
    return dataclasses.field(default=default, metadata={"resumable": True})


@dataclass(frozen=True)
class GANTrainConfig:
    """Hyper-parameters; the defaults are the ones `faces64` was trained with (see its MODEL_CARD.md)."""
    data: str = "procedural:60000:0"
    resolution: int = 64
    z_dim: int = 256
    w_dim: int = 256
    mapping_layers: int = 4
    channel_base: int = 4096
    channel_max: int = 128
    conv_clamp: float | None = 256
    d_channel_base: int = 4096
    d_channel_max: int = 128
    batch_size: int = _resumable(64)
    g_lr: float = _resumable(0.0025)
    d_lr: float = _resumable(0.0025)
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 0.05
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing_prob: float = 0.9
    # G_ema's half-life. StyleGAN2-ADA's rule is batch x 10/32 kimg (20 at batch 64, 160 at 512); resumable, as the
    # batch size is: a chunk that raises the batch may lengthen it (the average carries on with the new decay)
    ema_kimg: float = _resumable(20.0)
    ema_rampup: float | None = 0.05
    mixed_precision: bool = True
    seed: int = 0
    # Linear-attribute regulariser (linear_attributes.py): on when `classifier` names one ("builtin" or a
    # .safetensors path); each part acts on G only with a weight above 0.
    classifier: str | None = _resumable(None)
    attr_interval: int = _resumable(4)
    attr_batch_shrink: int = _resumable(2)
    probe_lr: float = _resumable(0.01)
    probe_warmup: int = _resumable(100)
    attr_decay: float = _resumable(0.05)
    linearity_weight: float = _resumable(0.0)
    linearity_rates: bool = _resumable(True)  # off, the pull feeds back on the probe's bias: rare attributes die out
    probe_orthogonality: float = _resumable(0.0)
    joint_weight: float = _resumable(0.0)
    edit_weight: float = _resumable(0.0)
    edit_sigmas: tuple[float, float] = _resumable((1.0, 3.0))
    edit_conditional: float = _resumable(0.0)
    correlated_pairs: tuple[tuple[str, str], ...] = _resumable(())
    attr_noise: str = _resumable("const")  # the noise of the images the classifier reads: G's constant one or "random"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GANTrainConfig:
        """Inverse of `dataclasses.asdict` after a JSON round trip (lists back to tuples)."""
        return config_from_dict(cls, values)

    def generator_kwargs(self) -> dict[str, Any]:
        return dict(z_dim=self.z_dim, c_dim=0, w_dim=self.w_dim, img_resolution=self.resolution, img_channels=3,
                    mapping_kwargs=dict(num_layers=self.mapping_layers),
                    synthesis_kwargs=dict(channel_base=self.channel_base, channel_max=self.channel_max,
                                          num_fp16_res=0, conv_clamp=self.conv_clamp, architecture="skip"))

    def discriminator_kwargs(self) -> dict[str, Any]:
        return dict(img_resolution=self.resolution, img_channels=3, channel_base=self.d_channel_base,
                    channel_max=self.d_channel_max, conv_clamp=self.conv_clamp)


def lazy_ratio(interval: int) -> float:
    """Lazy regularisation's correction (StyleGAN2, appendix B): a regulariser run every `interval` minibatches
    scales Adam's learning rate and betas by interval / (interval + 1)."""
    return interval / (interval + 1)


# What a resumed chunk may change: the fields declared `resumable`. Any other difference from the checkpoint is refused.
RESUMABLE_FIELDS = frozenset(f.name for f in dataclasses.fields(GANTrainConfig) if f.metadata.get("resumable"))


def refuse_changes(stored: GANTrainConfig, config: GANTrainConfig, run_dir: Path) -> None:
    """ValueError when `config` differs from the checkpoint's `stored` one outside `RESUMABLE_FIELDS`."""
    changed = [f.name for f in dataclasses.fields(stored)
               if f.name not in RESUMABLE_FIELDS and getattr(stored, f.name) != getattr(config, f.name)]
    if changed:
        raise ValueError(f"{run_dir} was trained with a different config ({', '.join(changed)} differ); a resumed "
                         f"run may change only {', '.join(sorted(RESUMABLE_FIELDS))}: resume it with the checkpoint's "
                         "config (train_gan does) or use a new run folder")


def load_training_images(spec: str, resolution: int) -> np.ndarray:
    """uint8 `[N, H, W, 3]` from `procedural:N:SEED[:vVERSION]`, an `.npy` file or a folder of images."""
    if spec.startswith("procedural:"):
        n, seed, version = parse_procedural_spec(spec)
        return render_batch(seed, range(n), size=resolution, workers=None, version=version)[0]
    path = Path(spec)
    if path.suffix == ".npy":
        return np.load(path)
    if path.is_dir():
        return _decode_folder(path, resolution)
    raise FileNotFoundError(f"training data {spec!r}: expected procedural:N:SEED[:vVERSION], an .npy file or an "
                            "image folder")


def _decode_folder(folder: Path, resolution: int) -> np.ndarray:
    """uint8 `[N, R, R, 3]`: every image file under `folder` (sorted paths, hidden ones skipped, as the inversion
    scan does), through the decoder inversion uses (`ganinv.datasets.folder`): EXIF orientation, any mode to RGB,
    transparency on white, the largest centred square, Lanczos to `resolution`. A file it refuses raises
    `ImageDecodeError` naming the file."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p)
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    policy = DecodePolicy(resolution=resolution)  # square, at the run's resolution: what G is trained to draw
    # to_uint8 gives back exactly the bytes the decoder produced (utils.images round trip).
    return np.stack([to_uint8(decode_image(f, policy)).permute(1, 2, 0).numpy() for f in files])


def path_length_penalty(G: Generator, ws: torch.Tensor, pl_mean: torch.Tensor, decay: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """StyleGAN2 eq. 4: (|J_w^T y| - a)^2 with y ~ N(0, I) / sqrt(HW) and `a` a running mean of the lengths."""
    img = G.synthesis(ws, noise_mode="random")
    noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
    (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
    lengths = grads.square().sum(2).mean(1).sqrt()
    pl_mean = pl_mean.lerp(lengths.mean().detach(), decay)
    return (lengths - pl_mean).square().mean(), pl_mean


def r1_penalty(D: Discriminator, real: torch.Tensor) -> torch.Tensor:
    """Mescheder et al. 2018: squared gradient norm of D on real images."""
    real = real.detach().requires_grad_(True)
    (grads,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    return grads.square().sum([1, 2, 3]).mean()


class GANTrainer:
    """Holds G, D, G_ema, their optimizers and the data; `train(minutes)` advances and checkpoints.

    With `config.classifier` set it also holds the linear-attribute regulariser (`attributes`); `classifier` (a module
    with `attribute_names` and `attribute_kinds`) is then used instead of loading the one the config names, and
    `attribute_stats` instead of measuring the training images with it."""

    def __init__(self, config: GANTrainConfig, run_dir: str | Path, *, device: str = "cuda",
                 images: np.ndarray | None = None, compile: bool = False, classifier: torch.nn.Module | None = None,
                 attribute_stats: dict[str, torch.Tensor] | None = None):
        self.config, self.run_dir, self.device = config, Path(run_dir), torch.device(device)
        torch.manual_seed(config.seed)
        self.rng = random.Random(config.seed)
        self.G = Generator(**config.generator_kwargs()).to(self.device).train()
        self.D = Discriminator(**config.discriminator_kwargs()).to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = self._adam(self.G, config.g_lr, config.pl_interval)
        self.opt_D = self._adam(self.D, config.d_lr, config.r1_interval)
        self.pl_mean = torch.zeros([], device=self.device)
        self.step = 0
        self.images_seen = 0
        self.train_seconds = 0.0
        if images is None:
            images = load_training_images(config.data, config.resolution)
        assert images.ndim == 4 and images.shape[1:] == (config.resolution, config.resolution, 3), images.shape
        self.images = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).contiguous()
        # The main passes may run compiled (the launch overhead of this small model dominates a step on a GPU); the
        # lazy regularisers differentiate twice, which compiled graphs do not support, so they stay eager. Both
        # share the same parameters.
        self.synthesis = torch.compile(self.G.synthesis) if compile else self.G.synthesis
        self.discriminate = torch.compile(self.D) if compile else self.D
        self.attributes = None
        if config.classifier is not None:
            classifier = load_classifier(config.classifier, self.device) if classifier is None else classifier
            self.attributes = LinearAttributes(classifier, config, w_dim=config.w_dim, device=self.device)
        if (self.run_dir / "checkpoint").exists():
            self.load()
        if self.attributes is not None and (attribute_stats is not None or self.attributes.stats is None):
            stats = attribute_stats or attribute_statistics(self.attributes.classifier, self.images,
                                                            autocast=self._autocast)
            self.attributes.stats = {k: v.to(self.device) for k, v in stats.items()}

    def _adam(self, net: torch.nn.Module, lr: float, interval: int) -> torch.optim.Adam:
        ratio = lazy_ratio(interval)
        betas = tuple(b ** ratio for b in self.config.betas)
        return torch.optim.Adam(net.parameters(), lr=lr * ratio, betas=betas, eps=1e-8)

    def _autocast(self) -> torch.autocast:
        return training_autocast(self.device, mixed_precision=self.config.mixed_precision)

    def real_batch(self, n: int) -> torch.Tensor:
        idx = torch.randint(len(self.images), [n], device=self.device)
        return to_model_input(self.images[idx])

    def mapped_ws(self, n: int) -> torch.Tensor:
        """Sample ws with style mixing: past a random cut-off layer the ws come from a second z."""
        return style_mixed_ws(self.G, n, self.rng, mixing_prob=self.config.style_mixing_prob, device=self.device)

    def train_step(self) -> dict[str, torch.Tensor]:
        """One G step, one D step, and the lazy regularisers when due; returns detached losses (no host sync)."""
        cfg, n = self.config, self.config.batch_size
        logs: dict[str, torch.Tensor] = {}
        # G main: non-saturating loss softplus(-D(G(z))).
        self.D.requires_grad_(False)
        with self._autocast():
            fake = self.synthesis(self.mapped_ws(n), noise_mode="random")
            loss_G = F.softplus(-self.discriminate(fake)).mean()
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()
        logs["loss_G"] = loss_G.detach()
        # G reg: lazy path-length regularisation.
        if cfg.pl_weight > 0 and self.step % cfg.pl_interval == 0:
            ws = self.mapped_ws(n // cfg.pl_batch_shrink)
            penalty, self.pl_mean = path_length_penalty(self.G, ws, self.pl_mean, cfg.pl_decay)
            self.opt_G.zero_grad(set_to_none=True)
            (penalty * cfg.pl_weight * cfg.pl_interval).backward()
            self.opt_G.step()
            logs["pl_penalty"] = penalty.detach()
        # G reg: lazy linear-attribute regularisation (linear_attributes.py).
        if self.attributes is not None and self.step % cfg.attr_interval == 0:
            penalty, attr_logs = self.attributes.penalty(self.G, n // cfg.attr_batch_shrink, self._autocast)
            if penalty is not None:
                self.opt_G.zero_grad(set_to_none=True)
                (penalty * cfg.attr_interval).backward()
                self.opt_G.step()
            logs.update(attr_logs)
        # D main: softplus(D(G(z))) + softplus(-D(x)).
        self.D.requires_grad_(True)
        real = self.real_batch(n)
        with self._autocast():
            with torch.no_grad():
                fake = self.synthesis(self.mapped_ws(n), noise_mode="random")
            loss_D = F.softplus(self.discriminate(fake)).mean() + F.softplus(-self.discriminate(real)).mean()
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        self.opt_D.step()
        logs["loss_D"] = loss_D.detach()
        # D reg: lazy R1.
        if cfg.r1_gamma > 0 and self.step % cfg.r1_interval == 0:
            penalty = r1_penalty(self.D, real)
            self.opt_D.zero_grad(set_to_none=True)
            (penalty * (cfg.r1_gamma / 2) * cfg.r1_interval).backward()
            self.opt_D.step()
            logs["r1_penalty"] = penalty.detach()
        self.update_ema(n)
        self.step += 1
        self.images_seen += n
        return logs

    @torch.no_grad()
    def update_ema(self, n: int) -> None:
        ema_nimg = self.config.ema_kimg * 1000
        if self.config.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.images_seen * self.config.ema_rampup)
        beta = 0.5 ** (n / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    def train(self, *, minutes: float | None = None, until: float | None = None, stop_at: int | None = None,
              log_every: int = 200, checkpoint_minutes: float = 3.0) -> None:
        """Train for about `minutes` of wall time, or until the wall-clock time `until` (seconds since the epoch: a
        lent machine's call ends at a fixed time, however long the set-up before took), checkpointing every
        `checkpoint_minutes` and at the end. `stop_at` ends the chunk at that step count instead (or at whichever
        of the two comes first): a chunk of a known number of steps, whatever the machine's speed. Every
        `log_every` steps an entry goes to `log.jsonl` with the latest value of each loss (a lazy regulariser's from
        the last step that ran it)."""
        check_chunk_length(minutes, until, stop_at)
        deadline = until if until is not None else math.inf if minutes is None else time.time() + minutes * 60
        self._clock = last_save = time.time()
        t_log, n_log = time.time(), self.images_seen
        logs: dict[str, torch.Tensor] = {}
        with (self.run_dir / "log.jsonl").open("a") as log:
            while time.time() < deadline and (stop_at is None or self.step < stop_at):
                logs.update(self.train_step())
                if self.step % log_every == 0:
                    now = time.time()
                    entry = dict(step=self.step, kimg=round(self.images_seen / 1000, 2), batch=self.config.batch_size,
                                 img_per_s=round((self.images_seen - n_log) / max(now - t_log, 1e-9), 1),
                                 train_minutes=round((self.train_seconds + now - self._clock) / 60, 2),
                                 **{k: round(float(v), 4) for k, v in logs.items()})
                    t_log, n_log = now, self.images_seen
                    log.write(json.dumps(entry) + "\n")
                    log.flush()
                    print(json.dumps(entry), flush=True)
                if time.time() - last_save > checkpoint_minutes * 60:
                    self.save()
                    last_save = time.time()
            self.save()

    def state(self) -> dict[str, Any]:
        """Everything a resumed chunk needs, compact enough to commit (<= 25 MB for the embedded world's sizes):
        network weights in fp16 (10-bit mantissa: a rounding far below one optimiser step), Adam's second moments in
        bf16 (fp16's range underflows on squared gradients), and no first moments: with beta1 = 0 Adam's first moment
        is the last gradient, overwritten by the next step."""
        return dict(config=dataclasses.asdict(self.config), step=self.step, images_seen=self.images_seen,
                    train_seconds=self.train_seconds, pl_mean=self.pl_mean,
                    G=half_state_dict(self.G.state_dict()), D=half_state_dict(self.D.state_dict()),
                    G_ema=half_state_dict(self.G_ema.state_dict()),
                    opt_G=compact_adam_state(self.opt_G), opt_D=compact_adam_state(self.opt_D),
                    rng_torch=torch.get_rng_state(), rng_python=list(self.rng.getstate()[1]),
                    rng_cuda=torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
                    attributes=self.attributes.state() if self.attributes is not None else None)

    def save(self) -> None:
        now = time.time()
        self.train_seconds += now - getattr(self, "_clock", now)
        self._clock = now
        state = self.state()
        save_checkpoint(self.run_dir / "checkpoint", state)
        self._continue_from(state)
        # config.json is for people reading the run folder (docs/training/faces64_gan_config.json is a copy); no
        # code reads it. The checkpoint's config is the source of truth; this is written from the same dict after
        # each checkpoint, so the two agree (a resumed chunk's --batch-size included).
        (self.run_dir / "config.json").write_text(json.dumps(state["config"], indent=1))

    def _continue_from(self, state: dict[str, Any]) -> None:
        """Continue from exactly what the checkpoint holds (the rounded weights and moments), so a run resumed from
        it follows the same trajectory as the uninterrupted one."""
        for name in ("G", "D", "G_ema"):
            getattr(self, name).load_state_dict(state[name])
        self.opt_G.load_state_dict(full_adam_state(state["opt_G"]))
        self.opt_D.load_state_dict(full_adam_state(state["opt_D"]))
        # the step sizes are this chunk's config's (a saved state dict carries the lr it was saved with)
        for opt, lr, interval in ((self.opt_G, self.config.g_lr, self.config.pl_interval),
                                  (self.opt_D, self.config.d_lr, self.config.r1_interval)):
            for group in opt.param_groups:
                group["lr"] = lr * lazy_ratio(interval)

    def load(self) -> None:
        state = load_checkpoint(self.run_dir / "checkpoint")
        refuse_changes(GANTrainConfig.from_dict(state["config"]), self.config, self.run_dir)
        self._continue_from(state)
        if self.attributes is not None:
            self.attributes.load_state(state.get("attributes"))
        self.step, self.images_seen = state["step"], state["images_seen"]
        self.train_seconds = state["train_seconds"]
        self.pl_mean = state["pl_mean"].to(self.device)
        torch.set_rng_state(state["rng_torch"])
        self.rng.setstate((3, tuple(state["rng_python"]), None))
        if state.get("rng_cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"])


def checkpoint_config(run_dir: str | Path) -> GANTrainConfig:
    """The config of the run in `run_dir` as its latest checkpoint stores it (the run's source of truth; config.json
    only mirrors it), read from `checkpoint.json` alone. FileNotFoundError when the run has no checkpoint."""
    return GANTrainConfig.from_dict(load_checkpoint_entry(Path(run_dir) / "checkpoint", "config"))


RUN_CLASSIFIER = "classifier.safetensors"  # a run folder's own attribute classifier (of its world), when it has one


def run_world(run_dir: str | Path, classifier: str | Path | None = None) -> tuple[int | None, str]:
    """(world version, classifier) that measure a training run: the version of its `procedural:` data (None: the
    shipped world's, or data of another kind) and the run folder's `classifier.safetensors` when there is one, else
    the built-in classifier (`"builtin"`). A `classifier` file given instead (another judge of the same world) must
    record that world in its metrics: ValueError naming both otherwise."""
    run_dir = Path(run_dir)
    data = checkpoint_config(run_dir).data
    version = parse_procedural_spec(data)[2] if data.startswith("procedural:") else None
    if classifier is not None:
        recorded = recorded_world_version(read_classifier_metadata(classifier)["metrics"])
        if recorded != world(version).version:
            raise ValueError(f"classifier {classifier} was trained on world {recorded}; the run {run_dir} learnt world "
                             f"{world(version).version}: pass a classifier of that world (ganinv train-classifier "
                             f"--world-version {world(version).version})")
        return version, str(classifier)
    own = run_dir / RUN_CLASSIFIER
    return version, str(own) if own.is_file() else BUILTIN


def generator_from_checkpoint(run_dir: str | Path) -> Generator:
    """The `G_ema` of a training run's latest checkpoint, in eval mode."""
    state = load_checkpoint(Path(run_dir) / "checkpoint")
    G = Generator(**GANTrainConfig.from_dict(state["config"]).generator_kwargs())
    G.load_state_dict(state["G_ema"])
    return G.eval().requires_grad_(False)


def check_chunk_length(minutes: float | None, until: float | None, stop_at: int | None = None) -> None:
    """ValueError unless a chunk is given exactly one of its length (`minutes`) and its end (`until`), or neither
    with a step to stop at (`stop_at`): the rule of `GANTrainer.train`, `train_gan` and `benchmarks.train_chunk`'s
    flags."""
    if minutes is not None and until is not None or minutes is None and until is None and stop_at is None:
        raise ValueError("give the chunk's length as minutes= or its end as until=, one of them")


def parse_settings(settings: list[str], config_class: type = GANTrainConfig) -> dict[str, Any]:
    """`checkpoint.parse_settings` with `GANTrainConfig` by default: the `--set` of `ganinv train-gan` and
    `benchmarks.train_chunk`."""
    return parse_config_settings(settings, config_class)


def run_config(run_dir: str | Path, config: GANTrainConfig | None = None, *, batch_size: int | None = None,
               changes: dict[str, Any] | None = None) -> GANTrainConfig:
    """The config the next chunk of the run in `run_dir` trains with: the checkpoint's when there is one (the source
    of truth; `config` is then ignored), else `config` (default `GANTrainConfig()`); `batch_size` and `changes`
    (`{field: value}`) override either, but a resumed run may change only `RESUMABLE_FIELDS` (ValueError).

    A resumed chunk keeps the batch size of the chunk before it unless told otherwise (runs from before this rule
    have a `config.json` with the batch size they started with; it is not read)."""
    stored = None
    if (Path(run_dir) / "checkpoint" / "checkpoint.json").exists():
        config = stored = checkpoint_config(run_dir)
    if batch_size is not None and (changes or {}).get("batch_size", batch_size) != batch_size:
        raise ValueError(f"batch size given twice: {batch_size} and batch_size={changes['batch_size']} (give one)")
    changes = dict(changes or {}, **({} if batch_size is None else dict(batch_size=batch_size)))
    config = dataclasses.replace(config or GANTrainConfig(), **changes)
    if stored is not None:
        refuse_changes(stored, config, Path(run_dir))
    return config


def train_gan(run_dir: str | Path, *, minutes: float | None = None, until: float | None = None,
              config: GANTrainConfig | None = None,
              device: str | None = None, batch_size: int | None = None, changes: dict[str, Any] | None = None,
              compile: bool = False) -> GANTrainer:
    """Create or resume the run in `run_dir` and train for `minutes`, or until the wall-clock time `until`.

    The config is fixed at creation (`run_config`), except `RESUMABLE_FIELDS`, which a resumed chunk may change
    through `batch_size` and `changes` (the log records the batch size of every entry, so the history stays
    readable)."""
    check_chunk_length(minutes, until)  # before the set-up (the data, the statistics: minutes on a device), not after
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_config(run_dir, config, batch_size=batch_size, changes=changes)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    trainer = GANTrainer(config, run_dir, device=device, compile=compile)
    trainer.train(minutes=minutes, until=until)
    return trainer
