"""Refining a store's codes (`ganinv refine STORE --steps N`, issue 23): every done item continues the optimisation
that made it, from its stored code, for N more steps (`ganinv.inversion.refine`: the same losses and per-image seeds,
the schedule of the longer run), one shard per task, resumably. The layout and the write order are
storage/code_refinements.py's; this module holds the coordinator's checks and plan, the worker's shard and the
summary.

Passes. A pass has a target step count T: the store's last finished pass's (or, for none, the inversion record's
`num_steps`) plus N. Its items are the done items whose codes have had fewer than T steps (`metrics/steps`): all of
them for a store inverted once, and also the items a later `ganinv invert` appended. A pass interrupted (a crash, a
killed worker, unreadable inputs) resumes when the command is run again with the same N; another N is refused until
it finishes, so a store's codes never mix targets within a pass.

Codes replaced, not versioned beside: a refined item's codes, thumbnail and metrics replace its old ones, so the
report, edits, directions and `to_xarray` read the refined corpus as they read any store; the pass keeps the codes
and metrics it replaced (`refinements/steps-<T>`), so nothing is lost and the gain is measurable. The store's
inversion record is left as it was made: it says how items are inverted (a nightly `ganinv invert` keeps appending
with the same settings) while `metrics/steps` and the passes say how far each item's codes went.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ganinv.errors import UserError
from ganinv.inversion import InversionConfig
from ganinv.inversion.batch import refine_batch
from ganinv.utils.seeds import seed_from_id
from runtime.config import ExecutionOptions, RefineStoreConfig
from runtime.errors import ConfigError
from runtime.models import load_models, resolve_device, store_generator_source
from runtime.numerics import BATCH_FREE, for_worker
from runtime.restore import decode_policy
from runtime.shard import ShardReport, _check_identity, decode_chunk, prepare_worker, worker_batch_size
from runtime.spec import InversionSpec
from storage import LatentStore, Shard, Status
from storage import code_refinements as passes


class NothingToRefine(UserError, ValueError):
    """The store holds no codes a refinement can continue (none done, or made in a way refinement cannot continue)."""


class PassInProgress(UserError, ValueError):
    """An unfinished pass of other settings: finish it first."""


@dataclass(frozen=True)
class RefineSettings:
    """Step 0's outcome: the store, the generator its codes belong to, its spec, and the pass to run."""

    store: str
    generator: str
    spec: InversionSpec
    space: str
    target_steps: int
    more_steps: int
    resume: bool

    @property
    def name(self) -> str:
        return passes.pass_name(self.target_steps)

    def config(self, steps: int) -> InversionConfig:
        """The inversion config of codes that have had `steps` steps (the pass's space)."""
        return dataclasses.replace(self.spec.config, space=self.space, num_steps=int(steps))


@dataclass(frozen=True)
class RefineShardReport(ShardReport):
    """A shard's report (`runtime.shard.ShardReport`'s counts and timings) and the items it could not refine, why."""

    failures: tuple[Mapping[str, str], ...] = ()


@dataclass(frozen=True)
class RefinePlan:
    """Step 1's outcome: the pass's group, how many items are below its target, in which shards."""

    name: str
    created: bool
    items: int
    shards: tuple[Shard, ...]


@dataclass(frozen=True)
class RefineSummary:
    """What a refinement did: the pass, its items, this run's shards, what is still below the target and why."""

    store: str
    name: str
    target_steps: int
    more_steps: int
    refined: int
    remaining: int
    complete: bool
    shards: int
    crashed_shards: tuple[ShardReport, ...]
    failures: tuple[Mapping[str, str], ...]
    seconds: float | None = None
    psnr_before: float | None = None
    psnr_after: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check(store_url: str, config: RefineStoreConfig, *, generator: str | None = None,
          storage_options: Mapping[str, Any] | None = None) -> RefineSettings:
    """Refuses, before anything starts, what cannot be refined: no store, a store without done codes, codes made
    in a way refinement cannot continue, another generator, a pass in progress with other settings; and resolves
    the pass to run."""
    store = LatentStore.open(store_url, storage_options=storage_options)
    spec = InversionSpec.from_record(store.attributes.inversion, thumbnail_size=store.layout.thumbnail_size)
    _refuse_unrefinable(store, spec)
    source = store_generator_source(store.attributes.generator, generator)
    if not store.done().any():
        raise NothingToRefine(f"store {store_url} holds no done codes to refine ({_counts(store)}): invert into it "
                              "first (ganinv invert IMAGES --store ...)")
    _check_losses(spec)
    history = passes.passes(store)
    last = history[-1] if history else None
    current_space = last["space"] if last else spec.config.space
    space = config.space or current_space
    if current_space == "w+" and space == "w":
        raise ConfigError(f"store {store_url}: its codes are in w+ (one w per layer); continuing them in w would "
                          "throw that away: refine with --space w+ or leave --space out")
    if last is not None and not last["complete"]:
        if (config.steps, space) != (last["more_steps"], last["space"]):
            raise PassInProgress(
                f"store {store_url} has an unfinished refinement to {last['target_steps']} steps (--steps "
                f"{last['more_steps']}, space {last['space']}): finish it first with `ganinv refine {store_url} "
                f"--steps {last['more_steps']}`")
        return RefineSettings(store=store.url, generator=source, spec=spec, space=space,
                              target_steps=last["target_steps"], more_steps=config.steps, resume=True)
    base = last["target_steps"] if last else spec.config.num_steps
    return RefineSettings(store=store.url, generator=source, spec=spec, space=space, target_steps=base + config.steps,
                          more_steps=config.steps, resume=False)


def _refuse_unrefinable(store: LatentStore, spec: InversionSpec) -> None:
    why = None
    if spec.mode == "encoder":
        why = ("its codes come from the encoder alone, with no optimisation to continue: invert into a new store "
               "with --mode hybrid")
    elif spec.config.space not in ("w", "w+"):
        why = f"its codes were optimised in {spec.config.space!r}; refinement continues codes in w or w+"
    elif spec.config.optimize_noise:
        why = "its inversion optimised noise maps, which the store does not keep: its codes alone do not continue"
    elif spec.restoration is not None:
        why = "it is a restoration store: its codes match observations through a degradation; restore again instead"
    elif spec.refine is not None:
        why = ("its items carry pivotal deltas tuned around their codes; refining the codes would orphan them: "
               "invert into a new store with more --num-steps instead")
    if why:
        raise NothingToRefine(f"store {store.url} cannot be refined: {why}")
    passes.steps(store)  # NotInStoreError for a store without the per-item step count


def _check_losses(spec: InversionSpec) -> None:
    from ganinv.losses.registry import parse_loss_spec

    for _, name in parse_loss_spec(spec.config.loss):
        if name.startswith("lpips-"):
            from ganinv.losses.lpips_distance import require_trunk_weights
            require_trunk_weights(name.removeprefix("lpips-"))


def _counts(store: LatentStore) -> str:
    return ", ".join(f"{k} {v}" for k, v in store.status_counts().items())


def below_target(store: LatentStore, target_steps: int, rows: slice | None = None) -> np.ndarray:
    """`[num_items]` bool (`rows`' only, when given): done items whose codes have had fewer than `target_steps`
    steps."""
    steps = passes.steps(store) if rows is None else store.metrics([passes.STEPS], rows)[passes.STEPS]
    return (store.status(rows) == Status.DONE) & (np.nan_to_num(steps, nan=np.inf) < target_steps)


def plan(store: LatentStore, settings: RefineSettings) -> RefinePlan:
    """Creates the pass (or grows the one being resumed) under the caller's lease and lists its shards to do."""
    existing = {p["name"] for p in passes.passes(store)}
    created = settings.name not in existing
    if created:
        passes.create_pass(store, pass_attrs(settings), made_by=made_by(store, settings))
    else:
        passes.grow_pass(store, settings.name)
    todo = below_target(store, settings.target_steps)
    return RefinePlan(name=settings.name, created=created, items=int(todo.sum()),
                      shards=tuple(s for s in store.shards() if todo[s.start:s.stop].any()))


def pass_attrs(settings: RefineSettings) -> dict[str, Any]:
    return dict(target_steps=settings.target_steps, more_steps=settings.more_steps,
                from_steps=settings.spec.config.num_steps, space=settings.space,
                config=settings.config(settings.target_steps).to_dict())


def made_by(store: LatentStore, settings: RefineSettings) -> dict[str, Any]:
    return dict(method="continued optimisation (ganinv.inversion.refine)", command="ganinv refine",
                generator=store.attributes.generator.sha256, seeds="the store's per-image seeds (inversion.seed)",
                adam="restarted (zero moments) at each item's step count: docs/inversion.md")


# ------------------------------------------------------------------------------------------------ worker side

def run_refine_shard(store_url: str, shard_index: int, *, generator: str, name: str, run_id: str | None = None,
                     execution: ExecutionOptions = ExecutionOptions(),
                     storage_options: Mapping[str, Any] | None = None) -> ShardReport:
    """Refines the items of shard `shard_index` below pass `name`'s target and writes them (start codes kept first,
    `steps` last). Items whose input can no longer be decoded keep their codes and are counted failed (they stay
    below the target: the pass stays open until they are refined)."""
    t_start = time.perf_counter()
    prepare_worker(execution)
    store = LatentStore.open(store_url, "r+", run_id=run_id, storage_options=storage_options)
    numerics = for_worker(store, execution)  # the store's thread count; refuses a worker that computes otherwise
    attrs = store.result_attrs(passes.KIND, name)[passes.ATTRS]
    spec = InversionSpec.from_record(store.attributes.inversion, thumbnail_size=store.layout.thumbnail_size)
    shard = store.shard(shard_index)
    inputs = store.read_shard_inputs(shard, every_item=True)
    todo = below_target(store, attrs["target_steps"], slice(shard.start, shard.stop))  # this shard's rows only
    rows = [int(i) for i in np.flatnonzero(todo)]
    if not rows:
        return RefineShardReport(shard=shard_index, pid=os.getpid(), seconds=time.perf_counter() - t_start)
    t_models = time.perf_counter()
    needs_encoder = spec.config.regularize_encoder_weight > 0
    models = load_models(generator, spec.encoder if needs_encoder else None, resolve_device(execution.device))
    _check_identity(store, models, generator)
    t_run = time.perf_counter()
    start_ws, start_metrics = passes.start_codes(store, name, inputs.indices[rows])
    start_steps = start_metrics[passes.STEPS]
    chunk = decode_chunk(inputs, rows, policy=decode_policy(spec, models.G.img_resolution),
                         storage_options=storage_options)
    position = {row: k for k, row in enumerate(rows)}  # a shard row's place in `rows`, start_ws and start_steps
    decoded = {row: k for k, row in enumerate(chunk["rows"])}  # its place in chunk["target"]
    # Image by image on CPU (whichever batch-free numerics the inversion used), so no code depends on its batch.
    batch_size = 1 if numerics.batching in BATCH_FREE else \
        worker_batch_size(models, spec, numerics, execution, generator=generator)
    config = InversionConfig.from_dict(dict(attrs["config"]))
    out: dict[int, tuple[np.ndarray, dict[str, float], np.ndarray | None]] = {}
    errors = dict(chunk["errors"])
    # Items with the same step count continue together (one schedule per batch); batches in the shard's order.
    for steps in sorted(set(start_steps[[position[r] for r in decoded]].tolist())):
        group = [r for r in decoded if start_steps[position[r]] == steps]
        for first in range(0, len(group), batch_size):
            part = group[first:first + batch_size]
            target = chunk["target"][[decoded[r] for r in part]]
            ws = torch.from_numpy(start_ws[[position[r] for r in part]])
            batch = refine_batch(models.G, target, ws, config=dataclasses.replace(config, num_steps=int(steps)),
                                 more_steps=int(attrs["target_steps"] - steps), E=models.E,
                                 seeds=[seed_from_id(inputs.image_ids[r], spec.seed) for r in part],
                                 thumbnail_size=store.layout.thumbnail_size)
            for k, r in enumerate(part):
                if not np.isfinite(batch.ws[k]).all():
                    errors[r] = "diverged: the refined latent is not finite (the item keeps its codes)"
                    continue
                out[r] = (batch.ws[k], {m: v[k] for m, v in batch.metrics.items()},
                          None if batch.thumbnails is None else batch.thumbnails[k])
    t_write = time.perf_counter()
    _write(store, inputs.indices, rows, out, start_metrics)
    t_end = time.perf_counter()
    failures = tuple({"image_id": inputs.image_ids[r], "error": why} for r, why in sorted(errors.items()))
    return RefineShardReport(shard=shard_index, items=len(rows), done=len(out), failed=len(rows) - len(out),
                             pid=os.getpid(), seconds=t_end - t_start, load_s=t_run - t_models,
                             invert_s=t_write - t_run, write_s=t_end - t_write, device=str(models.device),
                             failures=failures)


def _write(store: LatentStore, indices: np.ndarray, rows: list[int], out: dict, start_metrics: dict) -> None:
    """The refined items of the shard, in ascending order; `seconds` adds the refinement's to the inversion's."""
    done = sorted(out)
    if not done:
        return
    at = np.searchsorted(rows, done)  # their places in `rows` (ascending) and in start_metrics
    metrics = {m: np.array([out[r][1][m] for r in done], np.float32) for m in out[done[0]][1]}
    metrics["seconds"] = metrics["seconds"] + np.nan_to_num(start_metrics["seconds"][at])
    thumbs = None if out[done[0]][2] is None else np.stack([out[r][2] for r in done])
    passes.write_refined(store, indices[done], np.stack([out[r][0] for r in done]), metrics, thumbs)


# -------------------------------------------------------------------------------------------- coordinator end

def summarize(store: LatentStore, settings: RefineSettings, reports: list[ShardReport], *,
              seconds: float | None = None, max_failures: int = 200) -> RefineSummary:
    """Counts, and closes the pass when every done item reached its target (under the caller's lease)."""
    store.refresh()
    remaining = below_target(store, settings.target_steps)
    refined = int((store.done() & ~remaining).sum())
    complete = not remaining.any()
    if complete:
        passes.finish_pass(store, settings.name, refined=refined)
    failures = tuple(f for r in reports for f in getattr(r, "failures", ()))[:max_failures]
    before, after = _psnr(store, settings)
    return RefineSummary(store=store.url, name=settings.name, target_steps=settings.target_steps,
                         more_steps=settings.more_steps, refined=refined, remaining=int(remaining.sum()),
                         complete=complete, shards=len(reports),
                         crashed_shards=tuple(r for r in reports if r.error is not None), failures=failures,
                         seconds=seconds, psnr_before=before, psnr_after=after)


def _psnr(store: LatentStore, settings: RefineSettings) -> tuple[float | None, float | None]:
    """Mean PSNR of the pass's refined items before and after it (None without a psnr metric or refined items)."""
    if "psnr" not in store.layout.metrics:
        return None, None
    before = passes.previous_metrics(store, settings.name, ["psnr"])
    refined = np.isfinite(before["psnr"]) & ~below_target(store, settings.target_steps) & store.done()
    if not refined.any():
        return None, None
    return float(before["psnr"][refined].mean()), float(store.metrics(["psnr"])["psnr"][refined].mean())
