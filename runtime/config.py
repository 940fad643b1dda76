"""Every flow's config dataclass and the execution options: the one place their defaults live.

The CLI (or a Prefect deployment's parameters) builds them; flows, tasks and runtime receive them and never restate
a default; the names are the same from flag to field to algorithm (`--num-steps` -> `inversion["num_steps"]` ->
`InversionConfig.num_steps`). A config says what a flow computes; `ExecutionOptions` how and where it runs, which
changes no result. Importing this module is cheap (no torch): the CLI builds configs before anything heavy loads.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.spec import InversionSpec

AUTO = "auto"
DEFAULT_GENERATOR = "faces64"  # the embedded world's generator (ganinv/assets/)
EDIT_STRENGTHS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
# A new store's shard size when none is given: small enough that every worker gets MIN_SHARDS_PER_WORKER shards (no
# idle worker, and a second shard to balance a slow first one), at most MAX_AUTO_SHARD_SIZE items (a task's unit of
# retry and of resume, and a chunk of every array).
MAX_AUTO_SHARD_SIZE = 256
MIN_SHARDS_PER_WORKER = 2


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
    the store's lease from another (dead) run. compile_cache: a directory every worker can write (shared filesystem
    for several hosts) where torch.compile keeps what it compiled: the first worker fills it, the others and later
    runs start from it (`ganinv.utils.compile_cache`; None: torch's per-user default in /tmp)."""

    cluster: str = "local"
    workers: int | None = None
    dashboard: str | None = None
    dask_security: str | None = None
    device: str = AUTO
    threads: int | None = None
    batch_size: int | str | None = None
    prefetch: bool = True
    force: bool = False
    compile_cache: str | None = None

    def __post_init__(self):
        if self.compile_cache is not None and "://" not in self.compile_cache:  # workers may run elsewhere
            object.__setattr__(self, "compile_cache", os.path.abspath(os.path.expanduser(self.compile_cache)))


@dataclass(frozen=True)
class InvertConfig:
    """What `invert-dataset` computes for each image. mode: optimize, encoder, hybrid, or auto (hybrid when the
    generator has a built-in encoder, else optimize); encoder: for encoder/hybrid (None: the generator's built-in
    one); inversion: `ganinv.inversion.InversionConfig` fields changed from the mode's preset (see `resolve`);
    decode: `ganinv.datasets.folder.DecodePolicy` fields changed from its defaults (max_upscale, max_pixels,
    background); seed: base of the per-image seeds (each image's seed comes from its id); thumbnail_size: stored
    reconstructions (capped at the generator's resolution); shard_size: items per shard = store chunk = task, fixed
    when the store is created (None: the store's; for a new store `auto_shard_size`); retry_failed: also redo
    failed items.

    `resolve(generator)` gives the `InversionSpec` a store records; `from_spec` the config that reproduces one."""

    mode: str = AUTO
    encoder: str | None = None
    inversion: Mapping[str, Any] = field(default_factory=dict)
    decode: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    thumbnail_size: int = 64
    shard_size: int | None = None
    retry_failed: bool = False
    restoration: Mapping[str, Any] | None = None
    refine: Mapping[str, Any] | None = None

    def __post_init__(self):
        """Names picked by the user (mode, space, precision, the loss's terms) are checked here, without torch, so
        that a misspelt one is refused before anything heavy loads; every other setting when it resolves."""
        from ganinv.inversion_names import MODES, PRECISIONS, SPACES, parse_betas, parse_loss_spec
        from runtime.errors import ConfigError

        if self.mode != AUTO and self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r} is not one of {MODES} or {AUTO!r}")
        for name, allowed in (("space", SPACES), ("precision", PRECISIONS)):
            if name in self.inversion and self.inversion[name] not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {self.inversion[name]!r}")
        if "loss" in self.inversion:
            try:
                parse_loss_spec(self.inversion["loss"])
            except ValueError as err:
                raise ConfigError(f"--loss: {err}") from None
        if "betas" in self.inversion:
            try:  # one form from here on ('0.7,0.7' from the command line): the record's, compared with it
                object.__setattr__(self, "inversion", {**self.inversion, "betas": parse_betas(self.inversion["betas"])})
            except ValueError as err:
                raise ConfigError(f"--betas: {err}") from None

    def resolve(self, generator: str, *, recorded: Mapping[str, Any] | None = None) -> InversionSpec:
        """The settings every image of a store gets with `generator`: raises ConfigError naming a bad setting.

        `recorded`: the inversion record of the store the run writes to, when it exists. A store made in the same
        mode with the same encoder keeps the preset it was made with: the fields `inversion` (and `refine`) do not
        set come from its record, not from this version's preset, so a better preset applies to new stores and a
        scheduled rerun of an old store goes on as before (a field set here that differs from the record is still
        refused)."""
        from ganinv.datasets.folder import DecodePolicy
        from runtime import presets
        from runtime.errors import ConfigError
        from runtime.spec import InversionSpec

        encoder = self.encoder or presets.builtin_encoder(generator)
        mode = ("hybrid" if encoder else "optimize") if self.mode == AUTO else self.mode
        try:
            preset = (presets.recorded_preset(recorded, mode, encoder)
                      or presets.inversion_preset(mode, encoder, generator=generator))
            config = dataclasses.replace(preset, **self.inversion)
            policy = DecodePolicy(resolution=1, **self.decode)
            refine = None if self.refine is None else presets.refine_preset(preset, self.refine, recorded)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"inversion settings {dict(self.inversion)}, decode {dict(self.decode)}, refine "
                              f"{None if self.refine is None else dict(self.refine)}: {err}") from None
        return InversionSpec(mode=mode, config=config, encoder=encoder if mode != "optimize" else None,
                             seed=self.seed, thumbnail_size=self.thumbnail_size, max_upscale=policy.max_upscale,
                             max_pixels=policy.max_pixels, background=policy.background,
                             restoration=self.restoration, refine=refine)

    @classmethod
    def from_spec(cls, spec: InversionSpec, **fields: Any) -> InvertConfig:
        """The config whose `resolve` gives `spec` again (e.g. a store's recorded one, to resume with it)."""
        decode = dict(max_upscale=spec.max_upscale, max_pixels=spec.max_pixels, background=spec.background)
        refine = None if spec.refine is None else spec.refine.to_dict()
        return cls(mode=spec.mode, encoder=spec.encoder, inversion=dataclasses.asdict(spec.config), decode=decode,
                   seed=spec.seed, thumbnail_size=spec.thumbnail_size, restoration=spec.restoration, refine=refine,
                   **fields)


def auto_shard_size(num_items: int, workers: int | None) -> int:
    """Items per shard for a new store of `num_items` on `workers` workers (None: unknown, a remote cluster): at
    least MIN_SHARDS_PER_WORKER shards per worker, at most MAX_AUTO_SHARD_SIZE items per shard."""
    if not workers:
        return MAX_AUTO_SHARD_SIZE
    return max(1, min(MAX_AUTO_SHARD_SIZE, math.floor(num_items / (MIN_SHARDS_PER_WORKER * workers))))


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
    untuned: bool = False


@dataclass(frozen=True)
class RefineStoreConfig:
    """What `refine` does to a store (`ganinv refine STORE --steps N`): every done item's codes continue for `steps`
    more steps of the inversion that made them (`ganinv.inversion.refine`: the same losses, seeds and schedule,
    longer), as one pass to a target step count kept in the store (storage/code_refinements.py). space: None = the
    store's (or its last pass's); 'w+' continues W codes in W+ (never the other way). A pass that did not finish
    resumes with the same `steps`; a finished one is the base of the next."""

    steps: int
    space: str | None = None

    def __post_init__(self):
        from runtime.errors import ConfigError

        if not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"refine: steps must be a positive number of optimisation steps, got {self.steps!r}")
        if self.space not in (None, "w", "w+"):
            raise ConfigError(f"refine: space {self.space!r}: codes continue in w or w+ (what a store keeps)")


DENOISE_LOSS = "mse"  # a perceptual loss draws the noise as texture (docs/restoration.md: 26.8 vs 20.7 dB)


@dataclass(frozen=True)
class RestoreConfig:
    """What `restore` restores: invert each observed image through the `task`'s known degradation
    (docs/restoration.md). task: inpaint (masks from `mask_dir`, one PNG per image id, `mask_holes` white or black
    marking the holes, or from `mask_rule`: 'center-box[:AREA]' or 'random-boxes[:COUNT]' seeded by `mask_seed` and
    the id), super-resolution (inputs `factor` times smaller than the generator's images), colorize, denoise (known
    noise std `sigma` in [-1, 1] units; the loss defaults to `DENOISE_LOSS`); keep_observed: thumbnails (and
    `render-restored` by default) paste the observation back into the restoration; clean: a folder of the clean images
    under the same ids, to score restorations against (restored / kept / baseline PSNR and SSIM). The inversion
    itself is `InvertConfig`'s (`invert_config` adds the restoration to it)."""

    task: str
    mask_dir: str | None = None
    mask_holes: str = "white"
    mask_rule: str | None = None
    mask_seed: int = 0
    factor: int = 4
    sigma: float = 0.1
    keep_observed: bool = False
    clean: str | None = None

    def __post_init__(self):
        """The task, its factor, its masks (a folder or a rule, one of them, the rule and the holes' colour spelt as
        they must be) and the settings of other tasks changed from their defaults are checked here, without torch
        (`ganinv.inversion_names`); a factor that must divide the generator's size once the generator loads. (A
        setting of another task given at its default is refused by the CLI, which knows the flags given.)"""
        from ganinv.inversion_names import restoration_problem
        from runtime.errors import ConfigError

        problem = restoration_problem(self.task, self.settings())
        if problem:
            raise ConfigError(f"restore: {problem}")

    def settings(self) -> dict[str, Any]:
        """The fields other than the task that differ from their defaults, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "task" and getattr(self, f.name) != f.default}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RestoreConfig:
        """The config whose `record()` is `record` (a store's), read without torch so that a rerun's flags can be
        compared with it before anything loads: KeyError, TypeError or ValueError for a record of another shape.
        (The record it makes again is compared with the store's in full once torch loads.)"""
        from ganinv.inversion_names import MASK_RULES, mask_rule_spelling

        degradation, fields = record["degradation"], {}
        if degradation["kind"] == "mask":
            source = degradation["source"]
            if source["kind"] == "folder":
                fields = dict(mask_dir=source["path"], mask_holes=source["holes"])
            elif source["kind"] in MASK_RULES:  # in the one spelling a rerun's --mask-rule is compared in
                fields = dict(mask_rule=mask_rule_spelling(source))
                if source["kind"] == "random-boxes":
                    fields["mask_seed"] = source["seed"]
            else:
                raise ValueError(f"unknown mask source {source['kind']!r}")
        elif degradation["kind"] in ("downsample", "add-noise"):
            fields = {name: degradation[name] for name in ("factor", "sigma") if name in degradation}
        elif degradation["kind"] != "grayscale":
            raise ValueError(f"unknown degradation {degradation['kind']!r}")
        return cls(task=record["task"], keep_observed=record["keep_observed"], clean=record["clean"], **fields)

    def record(self) -> dict[str, Any]:
        """What the store records (the task, the degradation config, keep_observed, the clean folder); raises
        ConfigError naming a bad setting. The degradation's own defaults are never used: this config passes them."""
        from ganinv.inversion.degradations import task_config
        from ganinv.inversion.masks import MaskFolder, parse_mask_rule
        from runtime.errors import ConfigError

        try:
            masks = (MaskFolder(self.mask_dir, holes=self.mask_holes) if self.mask_dir is not None else
                     parse_mask_rule(self.mask_rule, seed=self.mask_seed) if self.mask_rule is not None else None)
            degradation = task_config(self.task, mask_source=masks, factor=self.factor, sigma=self.sigma)
        except ValueError as err:
            raise ConfigError(f"restore: {err}") from None
        return dict(task=self.task, degradation=degradation, keep_observed=self.keep_observed, clean=self.clean)

    def invert_config(self, invert: InvertConfig) -> InvertConfig:
        """`invert` with this restoration (and, for denoising, `DENOISE_LOSS` unless a loss was given)."""
        inversion = dict(invert.inversion)
        if self.task == "denoise":
            inversion.setdefault("loss", DENOISE_LOSS)
        return dataclasses.replace(invert, inversion=inversion, restoration=self.record())


@dataclass(frozen=True)
class MorphConfig:
    """What `render-morphs` renders: for each (a, b) image-id pair of `pairs`, `frames` codes from a's to b's (linear
    in W / W+, `ganinv.edit.interpolate`, or `slerp`), kept as `edits/<run>`, drawn as one grid (a morph per row)
    and, with `gif`, one looping GIF per pair at `fps`, beside the store in `<store>.edits/<run>/`. generator: None
    = the store's; overwrite: replace a run of that name that holds other content."""

    pairs: tuple[tuple[str, str], ...]
    frames: int = 8
    method: str = "linear"
    gif: bool = False
    fps: float = 12.0
    run: str = "morphs"
    generator: str | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class StyleMixConfig:
    """What `style-mix` renders: every `content` item with the `layers` ws rows (coarse, middle, fine or indices;
    StyleGAN3's named ranges by `G.ws_resolutions`) taken from every `style` item (Karras et al. 2019, fig. 3), kept
    as `edits/<run>` and drawn as the paper's figure beside the store. generator: None = the store's."""

    content: tuple[str, ...]
    style: tuple[str, ...]
    layers: str | tuple[int, ...] = "coarse"
    run: str = "style-mix"
    generator: str | None = None
    overwrite: bool = False
