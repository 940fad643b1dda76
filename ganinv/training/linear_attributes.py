"""Linear-attribute regularisation: training G so that InterFaceGAN's edits work on it.

InterFaceGAN (Shen et al. 2020, "Interpreting the Latent Space of GANs for Semantic Face Editing", CVPR; TPAMI
2020) assumes that a hyperplane in W decides each binary attribute and that moving a code along the hyperplane's unit
normal changes that attribute and leaves the others alone (Sec. 2.1); for attributes the data correlates, the
conditional boundary (the normal with the partner's normal projected out) moves one without the other (Sec. 2.2).
A GAN trained on images alone owes neither: in the embedded world some attributes are not linear in W, and the
normals of independent attributes share directions, so an edit drags other attributes along. This regulariser asks G
for the assumption directly, with a frozen attribute classifier C (one logit per binary attribute and a normalised
value per continuous one, in `attribute_names` order) as the judge of G's images. It knows nothing of the renderer:
only C and the data's statistics as C reads them.

Every `attr_interval` G steps (lazily, like path-length regularisation, its loss scaled by the interval) it draws
codes w = mapping(z), reads C(G(w)) and adds the parts whose weight in `GANTrainConfig` is not 0:

1. Linear probe, linearity pull (`linearity_weight`). A linear probe P(w) = A w + b (its own Adam) is fitted to C's
   readings of G(w): BCE toward C's probabilities for binary attributes, MSE for continuous ones. G is pulled so that
   C agrees with P: BCE of C's logit toward P's decision, MSE toward P's value. The attributes become linear
   functions of w, and P's rows are their normals. `linearity_rates` (on by default): P decides at the threshold
   above which the data's share of the attribute lies (a running quantile of P's logits) instead of 0, so the pull
   also moves G's attribute rates to the data's. Without it the pull feeds on itself: P's bias follows G's rate, and
   G is pulled toward P's majority decision, so a rare attribute gets rarer (seen in the tests' toy world).
2. Probe orthogonality (`probe_orthogonality`): P's fit also pays the mean squared cosine between the normals of the
   attributes the world draws independently (every binary pair but `correlated_pairs`). It reaches G through the
   linearity and edit pulls, which make G follow P's normals.
3. Joint pull (`joint_weight`): the mean and covariance of C's readings on G's samples (sigmoid of binary logits,
   continuous values) pulled to the data's, in units of the data's standard deviations. A G that matches every
   rate can still tie two independent attributes together, and an edit of one then drags the other.
4. Edit pull (`edit_weight`): each code moves `edit_sigmas` (1 to 3) standard deviations of the batch's projections
   along one binary attribute's unit normal, toward and across its hyperplane: the edits InterFaceGAN makes. C must
   then read that attribute as P decides at the moved code (flipped where the move crossed), every independent binary
   attribute as before the move (BCE toward the original decisions) and the continuous ones unchanged (MSE).
5. Conditional edits (`edit_conditional`, a share): that share of the edits of an attribute with a correlated partner
   moves along the conditional direction instead, and the partner must not change either.

Parts 1, 3 and 4 act on G only after `probe_warmup` probe updates (ramped in linearly): before that P's normals are
noise. The regulariser's random draws (codes, edited attributes, strengths) come from its own generator, so switching
parts on and off leaves the GAN's own draws as they were.

C reads images rendered with G's constant noise inputs (`attr_noise='const'`, what ganinv's inversion, edits and
`generate` use) or with fresh noise per code (`'random'`, what the GAN's adversarial loss sees). With constant noise
alone G can satisfy the pulls through its fixed noise pattern: the world-2 run at 6 M images, regularised that way
from 2.3 M, drew hats in 29.7 % of its images with constant noise and 21.4 % with random noise (data 30.5 %;
n = 1,000, training/faces64v2/chunks.md). Random noise asks for attributes that follow w whatever the noise.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganinv.directions.interfacegan import conditional_boundary
from ganinv.generators.io import state_dict_identity
from ganinv.utils.images import to_model_input

CLASSIFIER_IDENTITY_TAG = "ganinv.classifier.identity.v1"
SEED_OFFSET = 0x5EED  # the regulariser's random stream is seeded from the run's seed, apart from the GAN's
ATTR_NOISE = ("const", "random")  # GANTrainConfig.attr_noise: the noise inputs of the images C reads
Autocast = Callable[[], contextlib.AbstractContextManager]


def attribute_pairs(names: Sequence[str], kinds: Sequence[str], correlated: Sequence[tuple[str, str]]
                    ) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """(binary pairs (i < j) the world draws independently, partner matrix `[A, A]` bool of the correlated ones)."""
    index = {name: i for i, name in enumerate(names)}
    partner = torch.zeros(len(names), len(names), dtype=torch.bool)
    for pair in correlated:
        bad = [name for name in pair if name not in index or kinds[index[name]] != "binary"]
        if len(pair) != 2 or bad:
            raise ValueError(f"correlated_pairs entry {tuple(pair)}: each pair names two binary attributes of the "
                             f"classifier ({', '.join(n for n, k in zip(names, kinds) if k == 'binary')})")
        a, b = index[pair[0]], index[pair[1]]
        partner[a, b] = partner[b, a] = True
    binary = [i for i, kind in enumerate(kinds) if kind == "binary"]
    pairs = [(i, j) for i in binary for j in binary if i < j and not partner[i, j]]
    return pairs, partner


def readings(raw: torch.Tensor, binary: torch.Tensor) -> torch.Tensor:
    """`[N, A]` classifier outputs -> probabilities for binary attributes, the (normalised) values for the others."""
    return torch.where(binary, torch.sigmoid(raw), raw)


@torch.no_grad()
def attribute_statistics(classifier: nn.Module, images: torch.Tensor, *, batch_size: int = 256,
                         autocast: Autocast = contextlib.nullcontext) -> dict[str, torch.Tensor]:
    """The data as `classifier` reads it: `mean` `[A]` and `cov` `[A, A]` of its readings, `rates` `[A]` of its binary
    decisions (0 for continuous attributes). images: uint8 `[N, 3, H, W]`."""
    assert images.ndim == 4 and images.dtype == torch.uint8, (images.shape, images.dtype)
    raw = []
    for start in range(0, len(images), batch_size):
        with autocast():
            raw.append(classifier(to_model_input(images[start:start + batch_size])).float())
    raw = torch.cat(raw)
    binary = _binary_mask(classifier, raw.device)
    values = readings(raw, binary)
    return dict(mean=values.mean(0), cov=torch.cov(values.T), rates=((raw > 0) & binary).float().mean(0))


def _binary_mask(classifier: nn.Module, device: torch.device) -> torch.Tensor:
    return torch.tensor([kind == "binary" for kind in classifier.attribute_kinds], device=device)


class LinearAttributes:
    """The regulariser: the probe, its Adam, its running thresholds, the data's statistics and its random stream.

    `penalty(G, n, autocast)` fits the probe one step on `n` fresh codes and returns G's loss (None when no part
    that acts on G is on) with detached logs. `state()` / `load_state()` carry it through a checkpoint."""

    def __init__(self, classifier: nn.Module, config: Any, *, w_dim: int, device: torch.device | str):
        self.config, self.device = config, torch.device(device)
        self.classifier = classifier.to(self.device).eval().requires_grad_(False)
        # what a resumed run checks: a classifier file replaced at the same path is another judge
        self.classifier_identity = state_dict_identity(classifier.state_dict(), tag=CLASSIFIER_IDENTITY_TAG)
        names, kinds = list(classifier.attribute_names), list(classifier.attribute_kinds)
        self.names = names
        self.binary = _binary_mask(classifier, self.device)
        self.binary_index = torch.tensor([i for i, kind in enumerate(kinds) if kind == "binary"])
        if len(self.binary_index) == 0:
            raise ValueError(f"the classifier has no binary attribute to regularise ({', '.join(names)})")
        pairs, partner = attribute_pairs(names, kinds, config.correlated_pairs)
        self.pairs = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
        # [A, A] bool, the one record of the correlated pairs; on the host, so which edits are conditional and whose
        # partners they hold is known without a device sync (`partners` is derived from it)
        self.partner = partner
        if not 0 <= config.edit_conditional <= 1:
            raise ValueError(f"edit_conditional is a share in [0, 1], got {config.edit_conditional}")
        self.probe = nn.Linear(w_dim, len(names)).to(self.device)
        nn.init.zeros_(self.probe.weight)  # no draw from the run's random stream; the first fit steps move it
        nn.init.zeros_(self.probe.bias)
        self.opt = torch.optim.Adam(self.probe.parameters(), lr=config.probe_lr)
        self.thresholds = torch.zeros(len(names), device=self.device)
        self.updates = 0
        self.stats: dict[str, torch.Tensor] | None = None
        self.generator = torch.Generator().manual_seed(config.seed + SEED_OFFSET)
        if config.attr_noise not in ATTR_NOISE:
            raise ValueError(f"attr_noise must be one of {ATTR_NOISE}, got {config.attr_noise!r}")
        # the noise inputs of attr_noise='random', drawn where they are used (no host-device copy)
        self.noise_generator = torch.Generator(self.device).manual_seed(config.seed + SEED_OFFSET)

    @functools.cached_property
    def partners(self) -> dict[int, torch.Tensor]:
        """{attribute: its partners' indices, on the device} for the attributes that have partners (the only ones a
        conditional edit moves off their normal), from `partner` once."""
        return {a: row.nonzero()[:, 0].to(self.device) for a, row in enumerate(self.partner) if row.any()}

    # ------------------------------------------------------------------------------------------------ the step
    def penalty(self, G: nn.Module, n: int, autocast: Autocast) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """G's loss on `n` fresh codes (None when every part that acts on G is off) and the logs; fits the probe."""
        cfg = self.config
        acts_on_G = (cfg.linearity_weight, cfg.joint_weight, cfg.edit_weight) != (0, 0, 0)
        z = torch.randn([n, G.z_dim], generator=self.generator).to(self.device)
        with torch.set_grad_enabled(acts_on_G):
            with autocast():
                w = G.mapping(z, None, skip_w_avg_update=True)[:, 0].float()
            noise = self._noise(G, n)
            raw = self._read(G, w, autocast, noise)
        logs = self._fit_probe(w.detach(), raw.detach())
        if not acts_on_G:
            return None, logs
        parts = []
        if cfg.linearity_weight:
            logs["linearity"] = self._linearity(w.detach(), raw)
            parts.append(cfg.linearity_weight * logs["linearity"])
        if cfg.joint_weight:
            logs["joint"] = self._joint(raw)
            parts.append(cfg.joint_weight * logs["joint"])
        if cfg.edit_weight:
            edit, edit_logs = self._edit(G, w, raw, autocast, noise)
            logs.update(edit=edit, **edit_logs)
            parts.append(cfg.edit_weight * edit)
        ramp = min(1.0, self.updates / cfg.probe_warmup) if cfg.probe_warmup else 1.0
        logs = {k: v.detach() for k, v in logs.items()}
        return ramp * sum(parts), logs

    def _noise(self, G: nn.Module, n: int) -> list[torch.Tensor] | None:
        """The noise inputs of `n` codes' images: None for G's constant ones (`attr_noise='const'`: as edits are
        evaluated), else fresh ones per code (`'random'`: as the GAN's own samples), which the code's edited image
        then shares, so an edit's reading changes with the move alone."""
        if self.config.attr_noise == "const":
            return None
        return [torch.randn([n, 1, layer.resolution, layer.resolution], generator=self.noise_generator,
                            device=self.device) for layer in G.synthesis.noise_layers()]

    def _read(self, G: nn.Module, w: torch.Tensor, autocast: Autocast,
              noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """C's raw outputs `[N, A]` (fp32) on G(w), w `[N, w_dim]` broadcast to every layer, with `noise` (see
        `_noise`)."""
        with autocast():
            img = G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="const", noise=noise)
            return self.classifier(img).float()

    def _offsets(self) -> torch.Tensor:
        """`[A]` where the probe decides: the running thresholds with `linearity_rates`, else 0."""
        return self.thresholds if self.config.linearity_rates else torch.zeros_like(self.thresholds)

    def _decisions(self, logits: torch.Tensor) -> torch.Tensor:
        return logits > self._offsets()

    # ------------------------------------------------------------------------------------------ 1-2: the probe
    def _fit_probe(self, w: torch.Tensor, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step of the probe on (w, C's readings); agreement is measured before the step (fresh codes)."""
        cfg, b = self.config, self.binary
        logits = self.probe(w)
        agreement = (self._decisions(logits) == (raw > 0))[:, b].float().mean()
        fit = F.binary_cross_entropy_with_logits(logits[:, b], torch.sigmoid(raw[:, b]))
        if not b.all():
            fit = fit + F.mse_loss(logits[:, ~b], raw[:, ~b])
        cos2 = self.normal_cosines().square().mean() if len(self.pairs) else torch.zeros([], device=self.device)
        self.opt.zero_grad(set_to_none=True)
        (fit + cfg.probe_orthogonality * cos2).backward()
        self.opt.step()
        if cfg.linearity_rates:
            self._update_thresholds(self.probe(w).detach())
        self.updates += 1
        return dict(probe_fit=fit.detach(), probe_agreement=agreement, probe_cosine=cos2.detach().sqrt())

    def normal_cosines(self) -> torch.Tensor:
        """`[P]` cosines between the probe normals of the independent pairs (differentiable)."""
        normals = F.normalize(self.probe.weight, dim=1, eps=1e-12)
        return (normals[self.pairs[:, 0]] * normals[self.pairs[:, 1]]).sum(1)

    def _update_thresholds(self, logits: torch.Tensor) -> None:
        """Each binary threshold tracks the batch quantile above which the data's share of the attribute lies; a
        running mean over the first `1 / attr_decay` updates, then an exponential one."""
        assert self.stats is not None, "the data's statistics are needed for linearity_rates"
        quantiles = torch.quantile(logits, 1 - self.stats["rates"].clamp(0, 1), dim=0).diagonal()
        quantiles = torch.where(self.binary, quantiles, 0)
        self.thresholds = self.thresholds.lerp(quantiles, max(self.config.attr_decay, 1 / (self.updates + 1)))

    def _linearity(self, w: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """C's readings pulled to the probe's: BCE toward its decisions, MSE toward its values."""
        b = self.binary
        with torch.no_grad():
            linear = self.probe(w)
        loss = F.binary_cross_entropy_with_logits(raw[:, b], self._decisions(linear)[:, b].float())
        return loss + F.mse_loss(raw[:, ~b], linear[:, ~b]) if not b.all() else loss

    # --------------------------------------------------------------------------------------------- 3: joint
    def _joint(self, raw: torch.Tensor) -> torch.Tensor:
        """Squared differences of the readings' mean and covariance from the data's, in the data's std units."""
        assert self.stats is not None, "the data's statistics are needed for the joint pull"
        values = readings(raw, self.binary)
        std = self.stats["cov"].diagonal().sqrt().clamp_min(0.05)  # an attribute the data barely varies
        mean = (values.mean(0) - self.stats["mean"]) / std
        cov = (torch.cov(values.T) - self.stats["cov"]) / (std[:, None] * std[None, :])
        return mean.square().mean() + cov.square().mean()

    # ----------------------------------------------------------------------------------------- 4-5: edits
    def _edit(self, G: nn.Module, w: torch.Tensor, raw: torch.Tensor, autocast: Autocast,
              noise: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Each code moves along one binary attribute's direction, toward and across its hyperplane; C must read
        what the probe decides there for that attribute and the codes' own decisions for the attributes held."""
        cfg, n, b = self.config, len(w), self.binary
        lo, hi = cfg.edit_sigmas
        draws = torch.rand([3, n], generator=self.generator)  # on the host: which edits are conditional is known
        attr = self.binary_index[(draws[0] * len(self.binary_index)).long()]  # without a device sync
        partner = self.partner[attr]  # [N, A]: each code's edited attribute's partners
        conditional = (draws[2] < cfg.edit_conditional) & partner.any(1)
        any_conditional = bool(conditional.any())
        attr, conditional, partner = attr.to(self.device), conditional.to(self.device), partner.to(self.device)
        strength = (lo + (hi - lo) * draws[1]).to(self.device)
        with torch.no_grad():
            directions, logit, slope = self._directions(w, attr, conditional)
            sigma = (w @ directions.T).std(0)  # each direction's spread over the batch's codes
            step = -torch.sign(logit) * strength * sigma
            target = (logit + slope * step) > 0  # the probe's decision at the moved code
        moved = self._read(G, w + step[:, None] * directions, autocast, noise)
        edited = F.one_hot(attr, len(self.names)).bool()
        independent = b & ~edited & ~partner
        held = independent | (partner & conditional[:, None])
        before = raw.detach() > 0
        targets = torch.where(edited, target[:, None], before).float()
        bce = F.binary_cross_entropy_with_logits(moved, targets, reduction="none")
        loss = bce[edited | held].mean()
        if not b.all():
            loss = loss + F.mse_loss(moved[:, ~b], raw[:, ~b].detach())
        logs = self._edit_logs(moved.detach() > 0, before, edited, independent, crossed=target != (logit > 0))
        if any_conditional:  # edit_partner_change: share of the conditional edits' partner decisions that changed
            held_partner = partner & conditional[:, None]
            logs["edit_partner_change"] = ((moved.detach() > 0) != before)[held_partner].float().mean()
        return loss, logs

    def _directions(self, w: torch.Tensor, attr: torch.Tensor, conditional: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per code: the unit edit direction `[N, w_dim]` (the normal, or the conditional one), the probe's logit
        relative to its threshold `[N]`, and the logit's rate of change per unit move along the direction `[N]`."""
        weight = self.probe.weight
        normals = F.normalize(weight, dim=1, eps=1e-12)
        conditioned = normals.clone()  # an attribute without partners moves along its normal either way
        for a, partners in self.partners.items():
            conditioned[a] = conditional_boundary(normals[a], normals[partners])
        directions = torch.where(conditional[:, None], conditioned[attr], normals[attr])
        logit = (self.probe(w) - self._offsets()).gather(1, attr[:, None])[:, 0]
        return directions, logit, (weight[attr] * directions).sum(1)

    @staticmethod
    def _edit_logs(after: torch.Tensor, before: torch.Tensor, edited: torch.Tensor, independent: torch.Tensor, *,
                   crossed: torch.Tensor) -> dict[str, torch.Tensor]:
        """edit_flip: share of the codes moved across the probe's hyperplane whose reading flipped;
        edit_interference: share of the independent decisions that changed."""
        changed = after != before
        return dict(edit_flip=(changed[edited] & crossed).sum() / crossed.sum().clamp_min(1),
                    edit_interference=changed[independent].float().mean())

    # ---------------------------------------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """fp32 throughout (the probe is `[A, w_dim]`: kilobytes), so a resumed run continues exactly."""
        return dict(names=self.names, classifier=self.config.classifier, classifier_identity=self.classifier_identity,
                    probe=self.probe.state_dict(),
                    opt=self.opt.state_dict(), thresholds=self.thresholds, updates=self.updates, stats=self.stats,
                    generator=self.generator.get_state(), noise_generator=self.noise_generator.get_state())

    def load_state(self, state: dict[str, Any] | None) -> bool:
        """Continue from `state` when it was made with the same classifier (path and, where the state records them,
        weights); returns whether it did (a run that switches the regulariser on, or to another classifier, starts
        a fresh probe and measures the data's statistics again)."""
        if state is None or state["names"] != self.names or state["classifier"] != self.config.classifier:
            return False
        if state.get("classifier_identity", self.classifier_identity) != self.classifier_identity:
            return False
        self.probe.load_state_dict(state["probe"])
        self.opt.load_state_dict(state["opt"])
        for group in self.opt.param_groups:  # the moments carry on; the learning rate is this chunk's
            group["lr"] = self.config.probe_lr
        self.thresholds, self.updates = state["thresholds"].to(self.device), state["updates"]
        self.stats = None if state["stats"] is None else {k: v.to(self.device) for k, v in state["stats"].items()}
        self.generator.set_state(state["generator"])
        noise_state = state.get("noise_generator")  # absent before attr_noise; per device kind (CPU: mt19937)
        if noise_state is not None and noise_state.numel() == self.noise_generator.get_state().numel():
            self.noise_generator.set_state(noise_state.cpu())
        return True
