"""Train the pSp/e4e-style encoder (`ganinv.models.encoder`) for one frozen generator.

Each step mixes two kinds of images (pSp trains on real images; e4e and idinvert add generated ones so the codes
stay in the generator's domain):
- generated: ws sampled through the mapping (with style mixing, so W+ is covered), rendered with random noise;
  loss = latent regression to the true ws (normalised by W's variance) + image reconstruction;
- real: dataset images; loss = image reconstruction only.
Image reconstruction is pixel MSE plus, when a feature network is given, a perceptual distance on its features.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ganinv.generators.base import StyleGenerator
from ganinv.models.encoder import Encoder
from ganinv.training.checkpoint import config_from_dict, load_checkpoint, load_checkpoint_entry, save_checkpoint
from ganinv.training.sampling import style_mixed_ws, training_autocast
from ganinv.training.train_gan import generator_from_checkpoint, load_training_images
from ganinv.utils.images import to_model_input
from ganinv.errors import UserError


@dataclass(frozen=True)
class EncoderTrainConfig:
    data: str = "procedural:30000:1"
    batch_size: int = 64
    lr: float = 3e-4
    total_steps: int = 20000
    latent_weight: float = 1.0
    pixel_weight: float = 1.0
    perceptual_weight: float = 0.5
    real_fraction: float = 0.5
    style_mixing_prob: float = 0.5
    channels: tuple[int, ...] = (32, 64, 128, 256)
    style_channels: int = 64
    mixed_precision: bool = True
    seed: int = 0


class EncoderTrainer:
    def __init__(self, config: EncoderTrainConfig, G: StyleGenerator, run_dir: str | Path, *, device: str = "cuda",
                 images: np.ndarray | None = None,
                 perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        self.config, self.run_dir, self.device = config, Path(run_dir), torch.device(device)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)
        self.rng = random.Random(config.seed)
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.E = Encoder(img_resolution=G.img_resolution, num_ws=G.num_ws, w_dim=G.w_dim,
                         channels=tuple(config.channels), style_channels=config.style_channels,
                         ws_resolutions=G.ws_resolutions).to(self.device)
        w_avg, w_std = G.w_stats(10000, seed=config.seed)
        self.E.w_avg.copy_(w_avg)
        self.w_var = float(w_std) ** 2 / G.w_dim  # per-coordinate variance of W (w_std is a whole-vector norm)
        self.opt = torch.optim.Adam(self.E.parameters(), lr=config.lr)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=config.lr, total_steps=config.total_steps,
                                                         pct_start=0.05)
        self.perceptual = perceptual
        self.step = 0
        self.train_seconds = 0.0
        if images is None:
            images = load_training_images(config.data, G.img_resolution)
        self.images = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).contiguous()
        if (self.run_dir / "checkpoint").exists():
            self.load()

    def _autocast(self) -> torch.autocast:
        return training_autocast(self.device, mixed_precision=self.config.mixed_precision)

    @torch.no_grad()
    def generated_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        ws = style_mixed_ws(self.G, n, self.rng, mixing_prob=self.config.style_mixing_prob, device=self.device)
        return self.G.synthesis(ws, noise_mode="random"), ws

    def reconstruction_loss(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.config.pixel_weight * F.mse_loss(recon, target)
        if self.perceptual is not None and self.config.perceptual_weight > 0:
            loss = loss + self.config.perceptual_weight * self.perceptual(recon, target).mean()
        return loss

    def train_step(self) -> dict[str, torch.Tensor]:
        cfg = self.config
        n_real = int(round(cfg.batch_size * cfg.real_fraction))
        n_gen = cfg.batch_size - n_real
        gen_img, gen_ws = self.generated_batch(n_gen)
        real = to_model_input(self.images[torch.randint(len(self.images), [n_real], device=self.device)])
        target = torch.cat([gen_img, real])
        with self._autocast():
            ws = self.E(target)
            recon = self.G.synthesis(ws, noise_mode="const", fused_modconv=False)
        ws, recon = ws.float(), recon.float()
        latent = F.mse_loss(ws[:n_gen], gen_ws) / self.w_var
        image = self.reconstruction_loss(recon, target)
        loss = cfg.latent_weight * latent + image
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.step += 1
        return dict(loss=loss.detach(), latent=latent.detach(), image=image.detach(),
                    real_mse=F.mse_loss(recon[n_gen:], real).detach())

    def train(self, *, minutes: float, log_every: int = 100) -> None:
        deadline = time.time() + minutes * 60
        self._clock = time.time()
        with (self.run_dir / "log.jsonl").open("a") as log:
            while time.time() < deadline and self.step < self.config.total_steps:
                logs = self.train_step()
                if self.step % log_every == 0:
                    entry = dict(step=self.step, lr=self.sched.get_last_lr()[0],
                                 **{k: round(float(v), 5) for k, v in logs.items()})
                    log.write(json.dumps(entry) + "\n")
                    log.flush()
                    print(json.dumps(entry), flush=True)
        self.save()

    def save(self) -> None:
        now = time.time()
        self.train_seconds += now - getattr(self, "_clock", now)
        self._clock = now
        save_checkpoint(self.run_dir / "checkpoint", dict(
            config=dataclasses.asdict(self.config), step=self.step, train_seconds=self.train_seconds,
            E=self.E.state_dict(), opt=self.opt.state_dict(), sched=self.sched.state_dict()))

    def load(self) -> None:
        state = load_checkpoint(self.run_dir / "checkpoint")
        self.E.load_state_dict(state["E"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.step, self.train_seconds = state["step"], state["train_seconds"]

    def metadata(self) -> dict[str, Any]:
        return dict(config=dataclasses.asdict(self.config), steps=self.step,
                    train_minutes=round(self.train_seconds / 60, 2))


PERCEPTUAL_TERMS = ("classifier", "none")


def train_encoder(run_dir: str | Path, *, gan_run: str | Path, minutes: float, steps: int | None = None,
                  data: str | None = None, perceptual: str | None = None, device: str | None = None
                  ) -> EncoderTrainer:
    """Create or resume the encoder run in `run_dir` for the `G_ema` of the GAN run `gan_run`; train for `minutes`
    of wall time or until `steps` (the length of the one-cycle learning-rate schedule), then checkpoint.

    `data`: the real images, as `GANTrainConfig.data` (`procedural:N:SEED`, an `.npy` array or an image folder).
    `perceptual`: `'classifier'` adds the embedded world's attribute-classifier feature distance to the pixel loss;
    `'none'` trains on pixels and latents only. `steps`, `data` and `perceptual` are fixed when the run is created
    (defaults: `EncoderTrainConfig`'s, 'classifier'); a resumed run keeps its own (`encoder_run_config`).
    `device` defaults to CUDA when available.
    """
    if perceptual is not None and perceptual not in PERCEPTUAL_TERMS:
        raise ValueError(f"perceptual={perceptual!r}: expected one of {', '.join(PERCEPTUAL_TERMS)}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    G = generator_from_checkpoint(gan_run)
    config = encoder_run_config(run_dir, steps=steps, data=data, perceptual=perceptual)
    loss = _classifier_perceptual(device) if config.perceptual_weight > 0 else None
    trainer = EncoderTrainer(config, G, run_dir, device=device, perceptual=loss)
    trainer.train(minutes=minutes)
    return trainer


class RunConfigMismatch(UserError, ValueError):
    """A resumed run was asked to train with options other than those it was created with."""


def encoder_run_config(run_dir: str | Path, *, steps: int | None = None, data: str | None = None,
                       perceptual: str | None = None) -> EncoderTrainConfig:
    """The config of the encoder run in `run_dir`: a new run's from the options given (None: the defaults), a
    resumed run's from its checkpoint, which fixed the schedule's length and the data when the run was created.
    Resuming with an option that differs from the run's is a RunConfigMismatch naming both values (the one-cycle
    schedule cannot change length mid-run)."""
    asked = dict(total_steps=steps, data=data,
                 perceptual_weight=None if perceptual is None else
                 (EncoderTrainConfig.perceptual_weight if perceptual == "classifier" else 0.0))
    asked = {k: v for k, v in asked.items() if v is not None}
    checkpoint = Path(run_dir) / "checkpoint"
    if not (checkpoint / "checkpoint.json").exists():
        return EncoderTrainConfig(**asked)
    saved = config_from_dict(EncoderTrainConfig, load_checkpoint_entry(checkpoint, "config"))
    clash = [f"{k}={getattr(saved, k)!r} (asked {v!r})" for k, v in asked.items() if getattr(saved, k) != v]
    if clash:
        raise RunConfigMismatch(f"encoder run {run_dir} was created with {', '.join(clash)}: resume it without those "
                         "options (or with the same values), or start a new --run-dir")
    return saved


def _classifier_perceptual(device: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    from ganinv.losses.classifier_perceptual import ClassifierPerceptualLoss
    loss = ClassifierPerceptualLoss.builtin().to(device)
    return lambda recon, target: loss(recon, loss.prepare(target))
