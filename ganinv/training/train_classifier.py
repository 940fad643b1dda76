"""Train the procedural-faces attribute classifier (`ganinv.models.attributes`) on rendered images.

Images come from `render_batch` (no disk) or from a folder written by `write_dataset`. Light augmentation (mirror
with yaw/lighting negated, +-2 px shifts, brightness/contrast/gain jitter, blur, pixel noise) is there so the
classifier also reads GAN-generated faces, which are blurrier and noisier than the renderer's.

Held-out metrics: accuracy for binary attributes (threshold 0.5), R^2 for continuous ones, on a different world seed.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import asdict, dataclass
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


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> uint8 [N, 3, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def render_pool(seed: int, n: int, *, workers: int | None = None, version: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 [n, 3, 64, 64], float32 [n, A]) faces 0..n-1 of world `seed` (world `version`), rendered on `workers`
    processes (default all CPUs; the faces are the same for any count)."""
    images, attrs = world.render_batch(seed, range(n), workers=workers, version=version)
    return _to_tensor(images), torch.from_numpy(attrs)


def load_folder(dataset_dir: str | Path, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 [N, 3, H, W], float32 [N, A]) from `dataset_dir/images/*.png` and `dataset_dir/attributes.csv`."""
    from PIL import Image
    root = Path(dataset_dir)
    ids, attrs = world.read_attributes_csv(root / "attributes.csv")
    ids, attrs = ids[:n], attrs[:n]
    images = np.stack([np.asarray(Image.open(root / "images" / i).convert("RGB")) for i in ids])
    return _to_tensor(images), torch.from_numpy(attrs)


def augment(x: torch.Tensor, attrs: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [N, 3, H, W] in [-1, 1]; attrs [N, A] in original units. Returns augmented copies."""
    n = x.shape[0]
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    negate = torch.tensor([name in MIRROR_NEGATES for name in world.ATTRIBUTE_NAMES])
    attrs = torch.where(flip[:, None] & negate, -attrs, attrs)
    dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
    x = F.pad(x, (2, 2, 2, 2), mode="replicate")[:, :, 2 + dy:2 + dy + x.shape[2], 2 + dx:2 + dx + x.shape[3]]
    if torch.rand(1, generator=g).item() < 0.3:
        x = _blur(x, sigma=0.3 + 0.6 * torch.rand(1, generator=g).item())
    gain = 1 + 0.03 * (2 * torch.rand(n, 3, 1, 1, generator=g) - 1)
    contrast = 1 + 0.07 * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
    bright = 0.05 * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + bright
    x = x * gain + 0.04 * torch.rand(n, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return x.clamp(-1, 1), attrs


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


def _training_data(cfg: TrainClassifierConfig) -> tuple[torch.Tensor, torch.Tensor]:
    if cfg.dataset_dir:
        return load_folder(cfg.dataset_dir, cfg.n_train)
    log.info("rendering %d training faces", cfg.n_train)
    return render_pool(cfg.seed, cfg.n_train, version=cfg.world_version)


def train_classifier(cfg: TrainClassifierConfig, out: str | Path) -> dict:
    """Train, evaluate on `n_eval` held-out faces of `eval_seed`, save to `out`; returns the metrics record."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, out)
    finally:
        torch.set_num_threads(threads)


def _step(model: AttributeClassifier, opt: torch.optim.Optimizer, train_x: torch.Tensor, train_y: torch.Tensor,
          step: int, cfg: TrainClassifierConfig, g: torch.Generator) -> float:
    """One optimiser step on a random (augmented) batch of the pool; returns the loss."""
    idx = torch.randint(0, len(train_x), (cfg.batch_size,), generator=g)
    x, y = to_model_input(train_x[idx]), train_y[idx]
    if cfg.augment:
        x, y = augment(x, y, g)
    for group in opt.param_groups:
        group["lr"] = _lr_at(step, cfg)
    x, y = x.to(cfg.device, non_blocking=True), y.to(cfg.device, non_blocking=True)
    loss = classifier_loss(model, model(x.contiguous(memory_format=torch.channels_last)), y,
                           continuous_weight=cfg.continuous_weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def _train(cfg: TrainClassifierConfig, out: str | Path) -> dict:
    torch.manual_seed(cfg.torch_seed)
    t0 = time.perf_counter()
    train_x, train_y = _training_data(cfg)
    eval_x, eval_y = render_pool(cfg.eval_seed, cfg.n_eval, version=cfg.world_version)
    log.info("data ready: %d train, %d eval faces in %.0f s", len(train_x), len(eval_x), time.perf_counter() - t0)
    model = AttributeClassifier(ClassifierConfig.from_world()).to(cfg.device, memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.torch_seed)
    t1 = time.perf_counter()
    for step in range(cfg.steps):
        loss = _step(model, opt, train_x, train_y, step, cfg, g)
        if step % 50 == 0:
            log.info("step %d loss %.4f (%.1f img/s)", step, loss,
                     (step + 1) * cfg.batch_size / (time.perf_counter() - t1))
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            log.info("step %d held-out %s", step + 1,
                     {k: round(v, 4) for k, v in evaluate(model, eval_x, eval_y).items()})
    model.eval()
    record = _record(cfg, model, eval_x, eval_y, out, time.perf_counter() - t0)
    log.info("saved %s: %s", out, record)
    return record


def _record(cfg: TrainClassifierConfig, model: AttributeClassifier, eval_x: torch.Tensor, eval_y: torch.Tensor,
            out: str | Path, seconds: float) -> dict:
    model = model.to("cpu", memory_format=torch.contiguous_format)
    save_classifier(model, out)  # fp16 weights: evaluate what was saved, not what was trained
    from ganinv.models.attributes import load_classifier
    heldout = evaluate(load_classifier(out), eval_x, eval_y)
    record = {"heldout": heldout, "passes": passes(heldout, model.attribute_kinds),
              "eval": {"seed": cfg.eval_seed, "n": cfg.n_eval}, "train_config": asdict(cfg),
              "world_version": world.world(cfg.world_version).version,
              "train_seconds": round(seconds, 1), "device": _device_name(cfg)}
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
