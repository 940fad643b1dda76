"""The coordinator's side of a dataset inversion, as plain functions: check the settings before any worker starts,
open (or create) the store, plan the shards to run, and summarise what the store holds afterwards. Only the
coordinating process (the flow) calls these; it holds the store's lease while it appends and plans.

The plan (`InvertPlan`) and the summary (`InvertSummary`) are typed: the flow returns the summary, the CLI and the
report read its fields.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec

from ganinv.losses.registry import parse_loss_spec
from runtime import refine, restore
from runtime.config import InvertConfig, auto_shard_size
from runtime.models import GeneratorInfo, describe_generator, file_version
from runtime.shard import ShardReport
from runtime.spec import InversionSpec
from storage import LatentStore, Manifest, Shard, VerifyReport
from storage.errors import RootMissingError, StoreNotFoundError
from storage.scan import ScanResult, Skipped
from storage.schema import canonical_json

MAX_LISTED_FAILURES = 200  # failed items listed in a summary (all of them stay in the store's `error` array)
_KEPT: dict[str, Settings] = {}  # settings checked once, for the next check of the same ones (`keep_checked`)
_KEPT_LOCK = threading.Lock()


@dataclass(frozen=True)
class InvertPlan:
    """Step 3's outcome: how many new items were appended, how many items are to do, in which shards."""

    added: int
    items: int
    shards: tuple[Shard, ...]
    repairs: tuple[str, ...] = ()  # what planning found damaged and repaired (corrupt chunks, requeued items)


@dataclass(frozen=True)
class RunStats:
    """What this run's shards did (crashed shards: reports with an `error`)."""

    shards: int
    items: int
    done: int
    failed: int
    crashed_shards: tuple[ShardReport, ...] = ()
    invert_seconds: float = 0.0


@dataclass(frozen=True)
class InvertSummary:
    """A small, JSON-able account of a dataset inversion: store counts, this run, every input left out and why."""

    store: str
    images: str
    num_items: int
    counts: Mapping[str, int]               # pending / done / failed, over the whole store
    added: int
    this_run: RunStats
    skipped: tuple[Skipped, ...]            # inputs the scan left out (unreadable, duplicates)
    hashed: int                             # files the scan read and hashed
    reused: int                             # files whose hash came from the scan cache
    failures: tuple[Mapping[str, str], ...]  # {'image_id', 'error'} of failed items (the first MAX_LISTED_FAILURES)
    labels: tuple[str, ...] = ()
    seconds: float | None = None
    shard_size: int | None = None           # the store's items per shard
    shard_note: str = ""                    # how it was chosen, when this run created the store

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def unreadable(self) -> tuple[Skipped, ...]:
        """Skipped inputs that are not duplicates of another."""
        return tuple(s for s in self.skipped if not s.reason.startswith("duplicate of"))

    @property
    def complete(self) -> bool:
        """Every input is in the store, done (duplicates count as in)."""
        return not (self.counts["failed"] or self.counts["pending"] or self.unreadable)


@dataclass(frozen=True)
class Settings:
    """Step 0's outcome: the resolved spec, the generator it runs on, and the encoder file it starts from (if any):
    the sha256 of its bytes and the identity of the generator it says it was trained for."""

    spec: InversionSpec
    generator: GeneratorInfo
    encoder_sha256: str | None = None
    encoder_generator: str | None = None


def check_settings(generator: str, config: InvertConfig, *, store: str | None = None,
                   storage_options: Mapping[str, Any] | None = None) -> Settings:
    """Resolves `config` for `generator` and fails early, in the coordinator, on what every worker would fail on:
    an unreadable generator, loss weights that are not on disk, a missing encoder or one of another generator. Once
    per run: settings left by `keep_checked` are taken instead of checking them again. `store`: the store the run
    writes to; when it exists it keeps the preset it was made with (`InvertConfig.resolve(recorded=)`)."""
    with _KEPT_LOCK:
        kept = _KEPT.pop(_settings_key(generator, config), None)
    if kept is not None:
        return kept
    return _check_settings(generator, config, recorded_inversion(store, storage_options) if store else None)


def recorded_inversion(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The inversion record of the store at `url`, None when there is no store there yet."""
    try:
        return dict(LatentStore.open(url, "r", storage_options=storage_options).attributes.inversion)
    except (StoreNotFoundError, RootMissingError):
        return None


def keep_checked(generator: str, config: InvertConfig, settings: Settings) -> None:
    """The next `check_settings(generator, config)` in this process takes `settings` instead of checking again: the
    CLI's preflight, which checked them, leaves them for the flow's step 0 (a flow started otherwise, from a
    deployment, checks in full). A file replaced in between (the generator, the encoder) is checked again."""
    with _KEPT_LOCK:
        _KEPT.clear()  # one at most: a long-lived process holds no old checks
        _KEPT[_settings_key(generator, config)] = settings


def _settings_key(generator: str, config: InvertConfig) -> str:
    versions = [file_version(generator), file_version(config.encoder)]
    return canonical_json({"generator": generator, "config": dataclasses.asdict(config), "versions": versions})


def _check_settings(generator: str, config: InvertConfig, recorded: Mapping[str, Any] | None = None) -> Settings:
    spec = config.resolve(generator, recorded=recorded)
    info = describe_generator(generator)
    refine.check(spec, info)
    restore.check(spec, info)
    losses = [spec.config.loss] + ([spec.refine.loss] if spec.refine is not None else [])
    for _, name in (term for loss in losses for term in parse_loss_spec(loss)):
        if name.startswith("lpips-"):
            from ganinv.losses.lpips_distance import require_trunk_weights
            require_trunk_weights(name.removeprefix("lpips-"))  # PerceptualWeightsMissing names the file
    if spec.encoder is None:
        return Settings(spec=spec, generator=info)
    record = check_encoder(spec.encoder, info)
    return Settings(spec=spec, generator=info, encoder_sha256=record.sha256,
                    encoder_generator=record.generator_identity)


def check_encoder(encoder: str, info: GeneratorInfo):
    """The encoder file's `EncoderRecord`, refused (`EncoderGeneratorMismatch`, a UserError) unless it belongs to the
    generator: by the identity the file records, else (files from before identities) by image size and ws shape."""
    from ganinv.models.encoder import EncoderGeneratorMismatch, encoder_record

    record = encoder_record(encoder, generator=info.identity)
    if record.generator_identity is None:
        from ganinv.models.encoder import load_encoder

        E = load_encoder(encoder)
        want = (info.img_resolution, info.num_ws, info.w_dim)
        if (E.img_resolution, E.num_ws, E.w_dim) != want:
            raise EncoderGeneratorMismatch(
                f"encoder {encoder!r} is for {E.img_resolution} px, num_ws {E.num_ws}, w_dim {E.w_dim}; the "
                f"generator {info.source!r} has {want[0]} px, num_ws {want[1]}, w_dim {want[2]}: train an encoder "
                "for it (ganinv train-encoder --generator ...)")
    return record


def open_store(url: str, manifest: Manifest, settings: Settings, *, chunk_items: int | None,
               workers: int | None = None, storage_options: Mapping[str, Any] | None = None,
               run_id: str | None = None
               ) -> tuple[LatentStore, bool]:
    """Opens the store for writing, refusing one made with another generator, inversion spec or layout
    (StoreMismatchError), or creates it with every manifest item pending. `chunk_items` None: the store's own, or
    for a new store `auto_shard_size` for `workers` workers. `run_id`: the run whose lease the caller holds
    (`LatentStore.take_lease`), under which the store is created and changed. Returns (store, whether it was created
    now)."""
    spec, generator = settings.spec, settings.generator
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    created = not fs.exists(f"{root.rstrip('/')}/zarr.json")
    if created and chunk_items is None:
        chunk_items = auto_shard_size(len(manifest), workers)
    layout = dict(thumbnail_size=min(spec.thumbnail_size, generator.img_resolution), storage_options=storage_options,
                  run_id=run_id)
    if created:  # an existing store keeps the metric arrays it was made with (its config says how it was made)
        layout["metrics"] = spec.metric_names()
    if chunk_items is not None:
        layout["chunk_items"] = chunk_items
    store = LatentStore.open_or_create(
        url, manifest=manifest, num_ws=generator.num_ws, w_dim=generator.w_dim,
        generator=generator.store_identity(), config=store_record(settings), **layout)
    return store, created


def store_record(settings: Settings) -> dict[str, Any]:
    """The inversion record a store made (or resumed) with `settings` holds: what `open_store` writes and checks,
    and what the CLI's preflight compares before any server starts."""
    return settings.spec.to_record(resolution=settings.generator.img_resolution,
                                   encoder_sha256=settings.encoder_sha256,
                                   encoder_generator=settings.encoder_generator)


def save_scan_cache(store: LatentStore, scan: ScanResult) -> tuple[bool, str]:
    """(saved, what happened): keeps the scan's hashes in the store for the next run (the caller holds the lease).
    An unchanged cache is not written again (a nightly run over an unchanged corpus writes nothing); a failure is
    reported, not raised: the next run then hashes every file again."""
    if not scan.hash_cache_changed:
        return False, ""
    try:
        size = store.write_scan_cache(scan.hash_cache)
    except Exception as err:  # noqa: BLE001 - the cache only saves time
        return False, f"scan cache not saved ({type(err).__name__}: {err}); the next run hashes every file"
    return True, f"scan cache of {len(scan.hash_cache)} files saved ({size} bytes)"


def plan(store: LatentStore, manifest: Manifest, *, retry_failed: bool = False, created: bool = False,
         settings: Settings | None = None) -> InvertPlan:
    """Appends the manifest's new items (under the caller's lease), creates or grows the result groups the
    settings' stages write (pivotal deltas), and lists the shards with work to do.

    What a rerun could not get past is repaired first, so that "run again" always can resume: a `status` chunk
    that fails its checksum is rebuilt from the data; and the shards the workers will only partly rewrite (zarr
    reads such chunks before writing them) are verified, their corrupt chunks reset and the items those held
    requeued (storage/verify.py)."""
    repairs = _describe(store.repair_status())
    added = len(store) if created else store.append(manifest)  # create() appended the manifest already
    if settings is not None:
        refine.prepare(store, settings.spec, settings.generator.source)
    todo = store.todo_mask(retry_failed=retry_failed)
    partial = [s.index for s in store.pending_shards(todo=todo) if not todo[s.start:s.stop].all()]
    if partial:
        checked = store.verify(repair=True, shards=partial)
        if checked.repaired:
            repairs += _describe(checked)
            todo = store.todo_mask(retry_failed=retry_failed)
    return InvertPlan(added=added, items=int(todo.sum()), shards=tuple(store.pending_shards(todo=todo)),
                      repairs=repairs)


def _describe(report: VerifyReport | None) -> tuple[str, ...]:
    if report is None or not report.repaired:
        return ()
    return tuple(f"repaired {chunk}" for chunk in report.corrupt_chunks) + (
        (f"requeued {len(report.requeued)} items: {list(report.requeued[:10])}",) if report.requeued else ())


def incomplete_message(crashed: Sequence[ShardReport], *,
                       resume: str = "their items stay pending: run again to resume") -> str:
    """Why a run ended with shards that failed beyond their retries, and what to do: run again (`resume` says how)
    only when a rerun can get past it (a crash, a lost worker), never for an error the rerun would meet again."""
    blocked = [r for r in crashed if not r.resumable]
    if not blocked:
        return f"{len(crashed)} shard(s) failed beyond their retries (first: {crashed[0].error}); {resume}"
    return (f"{len(crashed)} shard(s) failed: shard {blocked[0].shard}: {blocked[0].error}. Running again alone will "
            "not get past this: do what the message says first, then run again (finished items are kept)")


def shard_note(store: LatentStore, *, created: bool, given: int | None, workers: int | None) -> str:
    """How the shard size of a store created by this run was chosen (empty for an existing store)."""
    if not created:
        return ""
    shards = len(store.shards())
    if given is not None:
        return f"{store.chunk_items} images per shard (--shard-size): {shards} shards"
    on = f"{workers} workers" if workers else "a cluster of unknown size"
    return (f"{store.chunk_items} images per shard, chosen for {store.num_items} images on {on}: {shards} shards "
            "(--shard-size sets it; it is fixed when the store is created)")


def record_run(store: LatentStore, summary: InvertSummary, reports: Sequence[ShardReport], *, run_id: str
               ) -> dict[str, Any] | None:
    """Adds this run to the store's run log (storage/runs.py) if it inverted anything (the caller holds the lease):
    the report's throughput comes from the runs that did the work. Returns the record, or None."""
    from storage.runs import record_run as record

    run = summary.this_run
    if not run.items:
        return None
    finished = [r for r in reports if r.error is None and r.items]
    return record(store, run_id, seconds=summary.seconds, items=run.items, done=run.done, failed=run.failed,
                  device_seconds=run.invert_seconds, workers=len({(r.pid, r.device) for r in finished}),
                  devices=sorted({r.device for r in finished if r.device}))


def summarize(store: LatentStore, scan: ScanResult, reports: Sequence[ShardReport], *, added: int = 0,
              seconds: float | None = None, shard_note: str = "") -> InvertSummary:
    """What the store holds now, what this run's shards did, every input left out and why."""
    finished = [r for r in reports if r.error is None]
    run = RunStats(shards=len(reports), items=sum(r.items for r in finished), done=sum(r.done for r in finished),
                   failed=sum(r.failed for r in finished),
                   crashed_shards=tuple(r for r in reports if r.error is not None),
                   invert_seconds=sum(r.invert_s or 0.0 for r in finished))
    return InvertSummary(store=store.url, images=scan.source, num_items=len(store), counts=store.status_counts(),
                         added=added, this_run=run, skipped=scan.skipped, hashed=scan.hashed, reused=scan.reused,
                         failures=tuple(store.failed_items(limit=MAX_LISTED_FAILURES)),
                         labels=tuple(store.layout.labels), seconds=seconds, shard_size=store.chunk_items,
                         shard_note=shard_note)
