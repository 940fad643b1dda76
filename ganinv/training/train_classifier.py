"""Train the procedural-faces attribute classifier (`ganinv.models.attributes`) on rendered images.

Images come from `render_batch` (no disk) or from a folder written by `write_dataset`. Light augmentation (mirror
with yaw/lighting negated, +-2 px shifts, brightness/contrast/gain jitter, blur, pixel noise) is there so the
classifier also reads GAN-generated faces, which are blurrier and noisier than the renderer's.

Counterfactual invariance (`invariance_weight` > 0): training faces also come with a twin that has one binary attribute
flipped and everything else kept, and the pair must agree on every other attribute's output (`invariance_loss`), so
that one attribute's score does not move with another (InterFaceGAN fits on the extreme 2 % of the scores). With
`invariance_continuous` the changed attribute is any of them, a continuous one moved half its range
(`procedural_faces.counterfactual_value`): the binary scores' confidence must then not follow skin tone, lighting,
yaw, face width or background either, which otherwise decide which codes form a score's extreme 2 %
(benchmarks/boundary_geometry.py).

Held-out metrics: accuracy for binary attributes (threshold 0.5), R^2 for continuous ones, on a different world seed.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganinv.datasets import procedural_faces as world
from ganinv.models.attributes import AttributeClassifier, ClassifierConfig, save_classifier
from ganinv.utils.images import to_model_input

log = logging.getLogger(__name__)

MIRROR_NEGATES = ("yaw", "lighting")  # the renderer is mirror-symmetric up to these signs


@dataclass(frozen=True)
class TrainClassifierConfig:
    seed: int = 0  # world seed of the training faces
    world_version: int | None = None  # procedural_faces version (None: the shipped one)
    n_train: int = 16000
    eval_seed: int = 1  # a different world seed: held-out faces
    n_eval: int = 2000
    steps: int = 2400
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    continuous_weight: float = 3.0  # MSE on [-1, 1] targets vs BCE on logits
    augment: bool = True
    dataset_dir: str | None = None  # read PNGs + attributes.csv instead of rendering
    threads: int = 1
    device: str = "cpu"  # the steps run here; rendering and augmentation stay on the CPU
    eval_every: int = 400
    torch_seed: int = 0
    # Counterfactual invariance: each of the first `invariance_share` of the training faces gets a twin with one random
    # binary attribute flipped (`procedural_faces.counterfactual_toggle`), style and other attributes kept; each step
    # adds invariance_weight x the mean squared difference of the pair's raw outputs over every attribute but the
    # flipped one, so one attribute's score does not move with another's (0: no twins, today's training exactly).
    invariance_weight: float = 0.0
    invariance_share: float = 1.0
    invariance_continuous: bool = False  # twins change any attribute, continuous ones too (False: binary flips only)

    def __post_init__(self):
        if self.invariance_weight < 0 or not 0 < self.invariance_share <= 1:
            raise ValueError(f"invariance_weight must be >= 0 and invariance_share in (0, 1], got "
                             f"{self.invariance_weight} and {self.invariance_share}")
        if self.invariance_weight > 0 and self.dataset_dir:
            raise ValueError("invariance_weight > 0 renders counterfactual twins of world faces; it cannot train on a "
                             "dataset_dir")

    @property
    def n_pairs(self) -> int:
        """Training faces 0 .. n_pairs - 1 have a counterfactual twin (none when invariance is off)."""
        return round(self.invariance_share * self.n_train) if self.invariance_weight > 0 else 0


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> uint8 [N, 3, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def render_pool(seed: int, n: int, *, workers: int | None = None, version: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 [n, 3, 64, 64], float32 [n, A]) faces 0..n-1 of world `seed` (world `version`), rendered on `workers`
    processes (default all CPUs; the faces are the same for any count)."""
    images, attrs = world.render_batch(seed, range(n), workers=workers, version=version)
    return _to_tensor(images), torch.from_numpy(attrs)


def render_twins(seed: int, n: int, *, workers: int | None = None, version: int | None = None,
                 continuous: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The counterfactual twins of faces 0..n-1 of world `seed`: (uint8 [n, 3, 64, 64], float32 [n, A] their own
    attributes, int64 [n] the column of the changed attribute), rendered as `render_pool` renders (same faces for any
    worker count); `continuous`: any attribute changes, else a binary one flips (`counterfactual_toggle`)."""
    toggles = [world.counterfactual_toggle(seed, i, continuous=continuous) for i in range(n)]
    images, attrs = world.render_counterfactual_batch(seed, range(n), toggles, workers=workers, version=version)
    columns = torch.tensor([world.ATTRIBUTE_NAMES.index(t) for t in toggles], dtype=torch.int64)
    return _to_tensor(images), torch.from_numpy(attrs), columns


def load_folder(dataset_dir: str | Path, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 [N, 3, H, W], float32 [N, A]) from `dataset_dir/images/*.png` and `dataset_dir/attributes.csv`."""
    from PIL import Image
    root = Path(dataset_dir)
    ids, attrs = world.read_attributes_csv(root / "attributes.csv")
    ids, attrs = ids[:n], attrs[:n]
    images = np.stack([np.asarray(Image.open(root / "images" / i).convert("RGB")) for i in ids])
    return _to_tensor(images), torch.from_numpy(attrs)


@dataclass(frozen=True)
class AugmentDraws:
    """The random draws of one augmented batch, so that a face and its counterfactual twin can share them: per image
    (`flip`, `gain`, `contrast`, `bright`, `noise_amp`, `noise`) and per batch (`dx`, `dy`, `blur_sigma`)."""
    flip: torch.Tensor  # [N] bool
    dx: int
    dy: int
    blur_sigma: float | None
    gain: torch.Tensor  # [N, 3, 1, 1]
    contrast: torch.Tensor  # [N, 1, 1, 1]
    bright: torch.Tensor  # [N, 1, 1, 1]
    noise_amp: torch.Tensor  # [N, 1, 1, 1]
    noise: torch.Tensor  # [N, 3, H, W]

    def take(self, rows: torch.Tensor) -> "AugmentDraws":
        """The draws of images `rows` (with `cat`, a twin gets the draws of its face)."""
        return self._map(lambda name, t: t[rows])

    def cat(self, other: "AugmentDraws") -> "AugmentDraws":
        """These images' draws followed by `other`'s; both must share the per-batch draws."""
        assert (other.dx, other.dy, other.blur_sigma) == (self.dx, self.dy, self.blur_sigma)
        return self._map(lambda name, t: torch.cat([t, getattr(other, name)]))

    def _map(self, fn) -> "AugmentDraws":
        per_image = ("flip", "gain", "contrast", "bright", "noise_amp", "noise")
        return replace(self, **{name: fn(name, getattr(self, name)) for name in per_image})


def draw_augment(shape: tuple[int, ...], g: torch.Generator) -> AugmentDraws:
    """The draws for a batch of `shape` [N, 3, H, W], in the order `augment` has always drawn them from `g`."""
    n = shape[0]
    flip = torch.rand(n, generator=g) < 0.5
    dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
    blur_sigma = 0.3 + 0.6 * torch.rand(1, generator=g).item() if torch.rand(1, generator=g).item() < 0.3 else None
    gain = 1 + 0.03 * (2 * torch.rand(n, 3, 1, 1, generator=g) - 1)
    contrast = 1 + 0.07 * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
    bright = 0.05 * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
    noise_amp = 0.04 * torch.rand(n, 1, 1, 1, generator=g)
    noise = torch.randn(tuple(shape), generator=g)
    return AugmentDraws(flip=flip, dx=dx, dy=dy, blur_sigma=blur_sigma, gain=gain, contrast=contrast, bright=bright,
                        noise_amp=noise_amp, noise=noise)


def apply_augment(x: torch.Tensor, attrs: torch.Tensor, draws: AugmentDraws) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [N, 3, H, W] in [-1, 1]; attrs [N, A] in original units; `draws` for N images. Returns augmented copies."""
    assert draws.noise.shape == x.shape, f"draws for {tuple(draws.noise.shape)}, images {tuple(x.shape)}"
    flip, dx, dy = draws.flip, draws.dx, draws.dy
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    negate = torch.tensor([name in MIRROR_NEGATES for name in world.ATTRIBUTE_NAMES])
    attrs = torch.where(flip[:, None] & negate, -attrs, attrs)
    x = F.pad(x, (2, 2, 2, 2), mode="replicate")[:, :, 2 + dy:2 + dy + x.shape[2], 2 + dx:2 + dx + x.shape[3]]
    if draws.blur_sigma is not None:
        x = _blur(x, sigma=draws.blur_sigma)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * draws.contrast + mean + draws.bright
    x = x * draws.gain + draws.noise_amp * draws.noise
    return x.clamp(-1, 1), attrs


def augment(x: torch.Tensor, attrs: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [N, 3, H, W] in [-1, 1]; attrs [N, A] in original units. Returns augmented copies (fresh draws from `g`)."""
    return apply_augment(x, attrs, draw_augment(x.shape, g))


def _blur(x: torch.Tensor, *, sigma: float) -> torch.Tensor:
    t = torch.arange(-1, 2, dtype=x.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (k[:, None] * k[None, :]) / k.sum() ** 2
    weight = k.expand(x.shape[1], 1, 3, 3).contiguous()
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=x.shape[1])


def classifier_loss(model: AttributeClassifier, raw: torch.Tensor, attrs: torch.Tensor, *,
                    continuous_weight: float) -> torch.Tensor:
    """BCE-with-logits on binary attributes + weighted MSE on continuous ones normalised to [-1, 1]."""
    target = model.normalize_continuous(attrs)
    mask = model.binary_mask
    bce = F.binary_cross_entropy_with_logits(raw[:, mask], target[:, mask])
    mse = F.mse_loss(raw[:, ~mask], target[:, ~mask])
    return bce + continuous_weight * mse


def invariance_loss(raw: torch.Tensor, raw_twin: torch.Tensor, toggled: torch.Tensor) -> torch.Tensor:
    """Counterfactual invariance: the mean squared difference between the raw outputs (logits, normalised values) of
    faces [P, A] and of their twins [P, A], over every attribute but each pair's flipped one (`toggled` [P] columns)."""
    assert raw.shape == raw_twin.shape and toggled.shape == raw.shape[:1]
    others = torch.ones_like(raw, dtype=torch.bool)
    others[torch.arange(len(toggled), device=raw.device), toggled.to(raw.device)] = False
    return ((raw - raw_twin)[others] ** 2).mean()


@torch.no_grad()
def evaluate(model: AttributeClassifier, images_u8: torch.Tensor, attrs: torch.Tensor, *,
             batch_size: int = 250) -> dict[str, float]:
    """{name: accuracy (binary) or R^2 (continuous)} on uint8 [N, 3, H, W] images and [N, A] true attributes."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    decoded = torch.cat([model.decode(model(to_model_input(images_u8[i:i + batch_size].to(device)))).cpu()
                         for i in range(0, len(images_u8), batch_size)])
    model.train(was_training)
    out = {}
    for j, (name, kind) in enumerate(zip(model.attribute_names, model.attribute_kinds)):
        pred, true = decoded[:, j], attrs[:, j]
        if kind == "binary":
            out[name] = ((pred > 0.5).float() == true).float().mean().item()
        else:
            out[name] = 1 - ((pred - true) ** 2).sum().item() / ((true - true.mean()) ** 2).sum().item()
    return out


def passes(metrics: dict[str, float], kinds: list[str], *, min_accuracy: float = 0.95, min_r2: float = 0.9) -> bool:
    return all(v >= (min_accuracy if k == "binary" else min_r2) for v, k in zip(metrics.values(), kinds))


def _lr_at(step: int, cfg: TrainClassifierConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


@dataclass(frozen=True)
class _Pool:
    """The training faces and, for faces 0 .. len(twin_x) - 1, their counterfactual twins."""
    x: torch.Tensor  # uint8 [N, 3, H, W]
    y: torch.Tensor  # float32 [N, A]
    twin_x: torch.Tensor  # uint8 [P, 3, H, W], P <= N
    twin_y: torch.Tensor  # float32 [P, A]
    twin_toggle: torch.Tensor  # int64 [P]: the changed attribute's column


def _training_data(cfg: TrainClassifierConfig) -> tuple[torch.Tensor, torch.Tensor]:
    if cfg.dataset_dir:
        return load_folder(cfg.dataset_dir, cfg.n_train)
    log.info("rendering %d training faces", cfg.n_train)
    return render_pool(cfg.seed, cfg.n_train, version=cfg.world_version)


def _training_pool(cfg: TrainClassifierConfig) -> _Pool:
    x, y = _training_data(cfg)
    if cfg.n_pairs:
        log.info("rendering %d counterfactual twins", cfg.n_pairs)
        return _Pool(x, y, *render_twins(cfg.seed, cfg.n_pairs, version=cfg.world_version,
                                         continuous=cfg.invariance_continuous))
    return _Pool(x, y, x[:0], y[:0], torch.zeros(0, dtype=torch.int64))


def train_classifier(cfg: TrainClassifierConfig, out: str | Path) -> dict:
    """Train, evaluate on `n_eval` held-out faces of `eval_seed`, save to `out`; returns the metrics record."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, out)
    finally:
        torch.set_num_threads(threads)


def _step(model: AttributeClassifier, opt: torch.optim.Optimizer, pool: _Pool, step: int, cfg: TrainClassifierConfig,
          g: torch.Generator) -> dict[str, float]:
    """One optimiser step on a random (augmented) batch of the pool, plus the twins of those of its faces that have
    one; returns {'loss': total, 'invariance': the unweighted invariance term (only when there are twins)}."""
    idx = torch.randint(0, len(pool.x), (cfg.batch_size,), generator=g)
    x, y = to_model_input(pool.x[idx]), pool.y[idx]
    paired = (idx < len(pool.twin_x)).nonzero().squeeze(1)  # rows of the batch whose face has a twin
    if len(paired):
        x = torch.cat([x, to_model_input(pool.twin_x[idx[paired]])])
        y = torch.cat([y, pool.twin_y[idx[paired]]])
    if cfg.augment:
        draws = draw_augment((cfg.batch_size, *x.shape[1:]), g)
        x, y = apply_augment(x, y, draws.cat(draws.take(paired)) if len(paired) else draws)  # a twin shares its face's
    for group in opt.param_groups:
        group["lr"] = _lr_at(step, cfg)
    x, y = x.to(cfg.device, non_blocking=True), y.to(cfg.device, non_blocking=True)
    raw = model(x.contiguous(memory_format=torch.channels_last))
    loss = classifier_loss(model, raw, y, continuous_weight=cfg.continuous_weight)
    out = {}
    if len(paired):
        inv = invariance_loss(raw[paired.to(raw.device)], raw[cfg.batch_size:], pool.twin_toggle[idx[paired]])
        loss = loss + cfg.invariance_weight * inv
        out["invariance"] = inv.item()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"loss": loss.item(), **out}


def _train(cfg: TrainClassifierConfig, out: str | Path) -> dict:
    torch.manual_seed(cfg.torch_seed)
    t0 = time.perf_counter()
    pool = _training_pool(cfg)
    eval_x, eval_y = render_pool(cfg.eval_seed, cfg.n_eval, version=cfg.world_version)
    log.info("data ready: %d train (%d with a twin), %d eval faces in %.0f s", len(pool.x), len(pool.twin_x),
             len(eval_x), time.perf_counter() - t0)
    model = AttributeClassifier(ClassifierConfig.from_world()).to(cfg.device, memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.torch_seed)
    t1 = time.perf_counter()
    invariance_log = []
    for step in range(cfg.steps):
        losses = _step(model, opt, pool, step, cfg, g)
        if step % 50 == 0:
            if "invariance" in losses:
                invariance_log.append([step, round(losses["invariance"], 6)])
            log.info("step %d loss %.4f%s (%.1f img/s)", step, losses["loss"],
                     f" invariance {losses['invariance']:.4f}" if "invariance" in losses else "",
                     (step + 1) * cfg.batch_size / (time.perf_counter() - t1))
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            log.info("step %d held-out %s", step + 1,
                     {k: round(v, 4) for k, v in evaluate(model, eval_x, eval_y).items()})
    model.eval()
    record = _record(cfg, model, eval_x, eval_y, out, time.perf_counter() - t0,
                     extra={"invariance_log": invariance_log} if cfg.n_pairs else {})
    log.info("saved %s: %s", out, record)
    return record


def _record(cfg: TrainClassifierConfig, model: AttributeClassifier, eval_x: torch.Tensor, eval_y: torch.Tensor,
            out: str | Path, seconds: float, *, extra: dict | None = None) -> dict:
    model = model.to("cpu", memory_format=torch.contiguous_format)
    save_classifier(model, out)  # fp16 weights: evaluate what was saved, not what was trained
    from ganinv.models.attributes import load_classifier
    heldout = evaluate(load_classifier(out), eval_x, eval_y)
    record = {"heldout": heldout, "passes": passes(heldout, model.attribute_kinds),
              "eval": {"seed": cfg.eval_seed, "n": cfg.n_eval}, "train_config": asdict(cfg),
              "world_version": world.world(cfg.world_version).version,
              "train_seconds": round(seconds, 1), "device": _device_name(cfg), **(extra or {})}
    save_classifier(model, out, metrics=record)
    return record


def _device_name(cfg: TrainClassifierConfig) -> str:
    if torch.device(cfg.device).type == "cuda":
        return f"{torch.cuda.get_device_name(cfg.device)}, torch {torch.__version__}"
    return f"cpu ({_cpu_name()}), torch {torch.__version__}, {cfg.threads} thread(s)"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
