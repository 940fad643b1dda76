"""Every flow's config dataclass and the execution options: the one place their defaults live.

The CLI (or a Prefect deployment's parameters) builds them; flows, tasks and runtime receive them and never restate
a default; the names are the same from flag to field to algorithm (`--num-steps` -> `inversion["num_steps"]` ->
`InversionConfig.num_steps`). A config says what a flow computes; `ExecutionOptions` how and where it runs, which
changes no result. Importing this module is cheap (no torch): the CLI builds configs before anything heavy loads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.spec import InversionSpec

AUTO = "auto"
DEFAULT_GENERATOR = "faces64"  # the embedded world's generator (ganinv/assets/)
EDIT_STRENGTHS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


@dataclass(frozen=True)
class ExecutionOptions:
    """How and where a flow runs. cluster: 'local' (CPU worker processes), 'local-cuda' (one worker per GPU) or a
    Dask scheduler address (docs/platform.md); workers: local workers (local-cuda: GPUs; None: one per core up to 8,
    or every GPU); dashboard: where a local cluster serves Dask's dashboard (None: nowhere); dask_security: a YAML
    file of `distributed.security.Security` options (TLS certificates) for a tls:// scheduler address (infra/dask/
    README.md). device: auto, cpu, cuda,
    cuda:N. threads: torch CPU threads per worker (None: this machine's cores shared among local workers).
    batch_size: images per inversion or sampling call (None: the device's default, 16 on CPU and 32 on CUDA for an
    inversion; 'auto': as many as fit each GPU). prefetch: decode the next batch while one is inverted. force: take
    the store's lease from another (dead) run."""

    cluster: str = "local"
    workers: int | None = None
    dashboard: str | None = None
    dask_security: str | None = None
    device: str = AUTO
    threads: int | None = None
    batch_size: int | str | None = None
    prefetch: bool = True
    force: bool = False


@dataclass(frozen=True)
class InvertConfig:
    """What `invert-dataset` computes for each image. mode: optimize, encoder, hybrid, or auto (hybrid when the
    generator has a built-in encoder, else optimize); encoder: for encoder/hybrid (None: the generator's built-in
    one); inversion: `ganinv.inversion.InversionConfig` fields changed from the mode's preset (see `resolve`);
    decode: `ganinv.datasets.folder.DecodePolicy` fields changed from its defaults (max_upscale, max_pixels,
    background); seed: base of the per-image seeds (each image's seed comes from its id); thumbnail_size: stored
    reconstructions (capped at the generator's resolution); shard_size: items per shard = store chunk = task, fixed
    when the store is created (None: the store's, 256 for a new store); retry_failed: also redo failed items.

    `resolve(generator)` gives the `InversionSpec` a store records; `from_spec` the config that reproduces one."""

    mode: str = AUTO
    encoder: str | None = None
    inversion: Mapping[str, Any] = field(default_factory=dict)
    decode: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    thumbnail_size: int = 64
    shard_size: int | None = None
    retry_failed: bool = False

    def resolve(self, generator: str) -> InversionSpec:
        """The settings every image of a store gets with `generator`: raises ConfigError naming a bad setting."""
        from ganinv.datasets.folder import DecodePolicy
        from runtime.errors import ConfigError
        from runtime.spec import InversionSpec

        encoder = self.encoder or _builtin_encoder(generator)
        mode = ("hybrid" if encoder else "optimize") if self.mode == AUTO else self.mode
        try:
            config = dataclasses.replace(inversion_preset(mode, encoder), **self.inversion)
            policy = DecodePolicy(resolution=1, **self.decode)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"inversion settings {dict(self.inversion)}, decode {dict(self.decode)}: {err}"
                              ) from None
        return InversionSpec(mode=mode, config=config, encoder=encoder if mode != "optimize" else None,
                             seed=self.seed, thumbnail_size=self.thumbnail_size, max_upscale=policy.max_upscale,
                             max_pixels=policy.max_pixels, background=policy.background)

    @classmethod
    def from_spec(cls, spec: InversionSpec, **fields: Any) -> InvertConfig:
        """The config whose `resolve` gives `spec` again (e.g. a store's recorded one, to resume with it)."""
        decode = dict(max_upscale=spec.max_upscale, max_pixels=spec.max_pixels, background=spec.background)
        return cls(mode=spec.mode, encoder=spec.encoder, inversion=spec.config.to_dict(), decode=decode,
                   seed=spec.seed, thumbnail_size=spec.thumbnail_size, **fields)


def inversion_preset(mode: str, encoder: str | None):
    """The InversionConfig a mode starts from. The store keeps codes, not per-image noise maps, so the codes alone
    must reproduce what the metrics show: optimize_noise is off everywhere.

    - optimize (and encoder/hybrid without the built-in encoder): the StyleGAN2 projector's settings;
    - encoder/hybrid with faces64's encoder: `HYBRID_CONFIG` (W+, 100 steps) without the projector's start-up
      exploration: the encoder's output is already close, and latent noise and a learning rate of 0.1 meant for a
      start at w_avg throw much of it away. Measured on 16 held-out faces, 20 steps, clf-perceptual: PSNR 21.3
      (encoder alone) -> 21.9 with the projector's settings, 23.5 with these (BENCHMARKS.md). The loss is the
      embedded world's own perceptual distance (its attribute classifier's features).
    """
    from ganinv.inversion import HYBRID_CONFIG, InversionConfig

    if mode != "optimize" and encoder == "faces64":
        return dataclasses.replace(HYBRID_CONFIG, initial_learning_rate=0.03, initial_noise_factor=0.0,
                                   lr_rampup_length=0.0, loss="clf-perceptual", optimize_noise=False)
    return InversionConfig(optimize_noise=False)


def _builtin_encoder(generator: str) -> str | None:
    """The built-in encoder trained for a built-in generator name, else None."""
    from ganinv.models.encoder import BUILTIN_ENCODERS

    return generator if generator in BUILTIN_ENCODERS else None


@dataclass(frozen=True)
class FitBoundariesConfig:
    """What `fit-boundaries` fits (InterFaceGAN, Shen et al. 2020), saved as `made_by` on every direction it writes.
    attributes: labels to fit (None: every label of the store, or every classifier attribute for samples);
    conditions: {attribute: [held, ...]} adds boundaries orthogonal to the held ones; space: w or w+; source: 'store'
    (done items and their labels) or 'samples' (sample, render, score with `classifier`); generator: for samples
    (None: the store's); num_samples, truncation_psi: the samples (paper: 500000, 0.7); chosen_num_or_ratio: codes
    per side, a ratio in (0, 1] or a count (None: 0.02 for samples; for store labels the smaller class of 0/1
    labels, the top and bottom quarter of others); overwrite: replace directions of the same name."""

    attributes: tuple[str, ...] | None = None
    conditions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    space: str = "w"
    source: str = "store"
    generator: str | None = None
    classifier: str = "builtin"
    num_samples: int = 20000
    truncation_psi: float = 0.7
    chosen_num_or_ratio: float | None = None
    svm: str = "linear_svc"
    seed: int = 0
    overwrite: bool = False


@dataclass(frozen=True)
class DiscoverDirectionsConfig:
    """What `discover-directions` finds: SeFa (closed form from the generator's style weights, `sefa-<k>`) and
    GANSpace (PCA of w sampled from the mapping network, `ganspace-<k>`, and/or of the store's corpus,
    `ganspace-store-<k>`). num_directions: per method and GANSpace source; sefa_layers: conv layers SeFa factorises
    ('all' or indices; the paper's coarse = 0, 1); ganspace_source: samples, store or both; num_samples: sampled w
    (paper: 10^6); ganspace_layers: ws rows a GANSpace edit touches (None: all); generator: None = the store's."""

    methods: tuple[str, ...] = ("sefa", "ganspace")
    num_directions: int = 5
    sefa_layers: str | tuple[int, ...] = "all"
    ganspace_source: str = "samples"
    num_samples: int = 100_000
    ganspace_layers: tuple[int, ...] | None = None
    generator: str | None = None
    seed: int = 0
    overwrite: bool = False


@dataclass(frozen=True)
class RenderEditsConfig:
    """What `render-edits` makes: the chosen items x `directions` x `strengths` (units of each direction's scale;
    include 0 for the original) into `edits/<run>` and PNG grids beside the store. items: image ids, a label query
    ('smiling == 0 and eyeglasses == 1'), or None = every done item; limit: the first that many; layers: ws rows to
    edit (coarse, middle, fine, all or indices; None: each direction's own); batch_size: items per render task and
    per chunk of the run; generator: None = the store's; max_grid_rows: one stacked grid per direction up to this
    many items; evaluate_with: an attribute classifier whose flip rates and interference are stored with the run;
    overwrite: replace a run of that name that holds other content."""

    directions: tuple[str, ...]
    items: str | tuple[str, ...] | None = None
    strengths: tuple[float, ...] = EDIT_STRENGTHS
    run: str = "edits"
    limit: int | None = None
    layers: str | tuple[int, ...] | None = None
    batch_size: int = 16
    generator: str | None = None
    max_grid_rows: int = 64
    evaluate_with: str | None = None
    overwrite: bool = False
