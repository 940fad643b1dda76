"""What `ganinv invert` and `ganinv restore` check in their own process before any server or cluster starts, and
the settings a rerun resumes with. A mistake is reported here, in seconds, and nothing is created or changed on disk.

Rounds, cheapest first (the names a user picks, --mode, --space, --precision and --loss, are checked without torch
when the command builds its `InvertConfig`):

1. `check_paths` (no torch, no zarr): a --generator given is a file or a built-in name, the store location is not a
   file nor a foreign non-empty folder (a local path), the images exist and hold at least one image (a bucket's
   too, looked into for a few listings), the labels file reads as the scan will read it (`storage.labels`, the
   scan's parser);
2. `resolve`: first, without torch, the flags given against an existing store's recorded settings (its JSON
   record; restore's flags against its recorded restoration too, `restoration_config`); then (loading torch and the
   generator into this process's model cache) the settings a rerun resumes with (`resumed_config`), the settings
   for the generator (LPIPS weights, encoder: `runtime.coordinator.check_settings`, whose result the flow's step 0
   takes instead of checking again), an existing store's generator, settings and layout, and its lease.
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cli.errors import InputNotFound
from ganinv.errors import UserError
from runtime.config import AUTO, DEFAULT_GENERATOR, InvertConfig, RestoreConfig

if TYPE_CHECKING:
    from runtime.coordinator import Settings
    from storage import LatentStore

_GLOB_CHARS = "*?["


class StoreLocationError(UserError, ValueError):
    """--store names something that is not a latent store and cannot become one."""


class InputUnreadable(UserError, OSError):
    """IMAGES or --labels on another filesystem (a bucket) cannot be read from this process."""


@dataclass(frozen=True)
class Resolved:
    """What the command runs with: the generator, the config (the store's own when resuming; with the restoration's
    record for `restore`), the restoration (`restore`'s, else None) and a note saying where they came from (empty
    for a new store)."""

    generator: str
    config: InvertConfig
    settings: Settings
    note: str = ""
    restoration: RestoreConfig | None = None


def check_paths(images: str, store: str, labels: str | None, generator: str | None = None) -> None:
    """The checks that need no model and no store library (round 1)."""
    from ganinv.builtin_models import unknown_generator

    if generator and _is_local(generator) and unknown_generator(generator):
        raise InputNotFound(unknown_generator(generator))
    if _is_local(store):
        _check_store_location(store)
    _check_images(images)
    if labels:
        _check_labels(labels)


def check_folders(folders: Mapping[str, str | os.PathLike | None]) -> None:
    """The local folders a command reads beside its images ({flag: path}: restore's --mask-dir and --clean) are
    there (round 1; the flow checks them again where it runs)."""
    for flag, folder in folders.items():
        if folder is not None and _is_local(str(folder)) and not os.path.isdir(str(folder).removeprefix("file://")):
            raise InputNotFound(f"{flag} {str(folder)!r} is not a folder")


def resolve(images: str, store: str, generator: str | None, flags: InvertConfig, given: Mapping[str, Any], *,
            force: bool, restore: Mapping[str, Any] | None = None) -> Resolved:
    """Round 2: the generator and config to run with, checked against the generator and an existing store.
    `flags`: the config the flags build; `given`: the InvertConfig / inversion fields given; `restore` (for `ganinv
    restore`): the `RestoreConfig` fields given (`task` left out: the store's)."""
    from storage import LatentStore, StoreNotFoundError

    try:
        existing = LatentStore.open(store, "r")
    except StoreNotFoundError:
        existing = None
    restoration = None if restore is None else restoration_config(existing, store, restore)  # before torch loads
    if existing is not None:
        _refuse_changed_flags(existing, given)  # before torch loads
    from runtime.coordinator import check_settings, keep_checked

    generator, config, note = (generator or DEFAULT_GENERATOR, flags, "") if existing is None else \
        resumed_config(existing, generator, given, flags)
    if restoration is not None:  # the restoration's record (it loads torch) in the config
        config = restoration.invert_config(config)
    settings = check_settings(generator, config)  # the flags themselves first, then what they are applied to
    if existing is not None:
        _check_store(existing, settings, shard_size=config.shard_size, force=force)
    keep_checked(generator, config, settings)  # the flow's step 0, in this process, need not check them again
    return Resolved(generator=generator, config=config, settings=settings, note=note, restoration=restoration)


def restoration_config(existing: LatentStore | None, store: str, given: Mapping[str, Any]) -> RestoreConfig:
    """`restore`'s restoration, without torch: the `RestoreConfig` fields `given` on the command line laid over
    the restoration an existing store recorded (the task too, when none is given). Refused: a new store without a
    task, a field given that differs from the store's record, a field of another task given (even at its default:
    it would be ignored), a task's settings that cannot go together (`inversion_names.task_settings_problem`); first
    of all, a --mask-rule or --mask-holes not understood (`inversion_names.mask_problem`: together they are
    `restoration_problem`, which the `RestoreConfig` made here asks again of the fields changed from their defaults)."""
    from ganinv.inversion_names import RESTORATION_TASKS, mask_problem, task_settings_problem
    from runtime.errors import ConfigError

    settings = {name: value for name, value in given.items() if name != "task"}
    if problem := mask_problem(settings):  # before the flags are compared with a store's record
        raise ConfigError(f"restore: {problem}")
    recorded = None if existing is None else _recorded_restoration(existing)
    task = given.get("task") or (recorded.task if recorded is not None else None)
    if task is None:
        why = (f"to make the new store {store}" if existing is None else
               f"(the restoration {store} records is not one this version reads back)")
        raise ConfigError(f"restore: give --task ({' | '.join(RESTORATION_TASKS)}) {why}")
    if recorded is not None:
        _refuse_changed_restoration(existing, recorded, task, settings)
        if recorded.task == task:
            settings = {**recorded.settings(), **settings}
    problem = task_settings_problem(task, settings)  # the mask flags were read above
    if problem:
        raise ConfigError(f"restore: {problem}")
    return RestoreConfig(task=task, **settings)


def _recorded_restoration(store: LatentStore) -> RestoreConfig | None:
    """The restoration the store records (None: a record this version cannot read back; the flags decide and the
    whole record is compared once it is made); a store of plain inversions is refused."""
    from storage import StoreMismatchError

    record = store.attributes.inversion.get("restoration")
    if record is None:
        raise StoreMismatchError(f"store {store.url} holds inversions, not restorations: restore into a new --store "
                                 f"(or resume it with `ganinv invert IMAGES --store {store.url}`)")
    try:
        return RestoreConfig.from_record(record)
    except (KeyError, TypeError, ValueError):
        return None


def _refuse_changed_restoration(store: LatentStore, recorded: RestoreConfig, task: str,
                                given: Mapping[str, Any]) -> None:
    """A task other than the store's, or a field of its task given with another value than it recorded, is refused
    with the stored and given values (a mask rule in its one spelling, as the record reads back: `center-box` is
    `center-box:0.4`)."""
    from ganinv.inversion_names import RESTORATION_OPTIONS, canonical_mask_rule
    from storage.identity import config_mismatch

    if task != recorded.task:
        stored, asked = {"task": recorded.task}, {"task": task}
    else:
        names = [name for name in given if name in ("keep_observed", "clean", *RESTORATION_OPTIONS[task])]
        stored, asked = {name: getattr(recorded, name) for name in names}, {name: given[name] for name in names}
        if asked.get("mask_rule") is not None:
            asked["mask_rule"] = canonical_mask_rule(asked["mask_rule"])
    if stored != asked:
        raise _with_fix(config_mismatch(store, {"restoration": stored}, {"restoration": asked}), store)


def resumed_config(store, generator: str | None, given: Mapping[str, Any], flags: InvertConfig
                   ) -> tuple[str, InvertConfig, str]:
    """(generator, config, note) for a run on an existing store: the store's recorded settings with the flags given
    laid over them (so a rerun needs only IMAGES and --store), and the store's generator unless one is given."""
    from runtime.spec import InversionSpec

    try:
        recorded = InvertConfig.from_spec(
            InversionSpec.from_record(store.attributes.inversion, thumbnail_size=store.layout.thumbnail_size),
            shard_size=flags.shard_size, retry_failed=flags.retry_failed)
    except (KeyError, TypeError, ValueError):  # a record this version cannot read back: the flags decide
        return generator or store.attributes.generator.source or DEFAULT_GENERATOR, flags, ""
    top = {k: v for k, v in given.items() if k not in ("inversion", "refine")}
    # the inversion (and refinement) fields given are laid over the recorded ones, field by field
    refine = recorded.refine if "refine" not in given else {**(recorded.refine or {}), **given["refine"]}
    config = dataclasses.replace(recorded, **top, refine=refine,
                                 inversion={**recorded.inversion, **given.get("inversion", {})})
    source = store.attributes.generator.source
    if generator is None:
        if not source:
            raise StoreLocationError(f"store {store.url} does not record which generator made it: pass --generator")
        generator = source
    changed = sorted([*top, *given.get("inversion", {}), *(f"refine.{k}" for k in given.get("refine") or {})])
    note = (f"resuming with the settings recorded in {store.url}" +
            (f" (flags given: {', '.join(changed)})" if changed else ""))
    return generator, config, note


def _refuse_changed_flags(store, given: Mapping[str, Any]) -> None:
    """A flag given whose value differs from the store's record is refused from the record alone, before torch
    loads, with the message `_check_store` gives after resolving the settings. Compared here: --mode (not auto, which
    resolves per generator), --seed and the inversion's flags (the loss in the one spelling a store records,
    `canonical_loss_spec`; the record's inversion with the fields it may leave out filled in, `with_record_defaults`);
    the encoder (recorded with its hash) and the refinement are compared once resolved."""
    from ganinv.inversion_names import canonical_loss_spec, with_record_defaults
    from storage.identity import config_mismatch
    from storage.schema import canonical_json

    stored = copy.deepcopy(dict(store.attributes.inversion))
    inversion = dict(given.get("inversion", {}))
    if "loss" in inversion:  # a valid spec: InvertConfig checked it
        inversion["loss"] = canonical_loss_spec(inversion["loss"])
    try:
        stored["inversion"] = with_record_defaults(stored["inversion"])
        asked = {**stored, "inversion": with_record_defaults({**stored["inversion"], **inversion})}
        if given.get("mode") not in (None, AUTO):
            asked["mode"] = given["mode"]
        if given.get("seed") is not None:
            asked["seed"] = {**stored["seed"], "base": given["seed"]}
    except (KeyError, TypeError, AttributeError):  # a record of another shape: compared once resolved
        return
    if canonical_json(asked) != canonical_json(stored):
        raise _with_fix(config_mismatch(store, stored, asked), store)


def _with_fix(err: Exception, store) -> Exception:
    from storage import StoreMismatchError

    command = "restore" if store.attributes.inversion.get("restoration") is not None else "invert"
    return StoreMismatchError(f"{err} To resume with the store's own settings, give only IMAGES and --store: "
                              f"`ganinv {command} IMAGES --store {store.url}`.")


def _check_store_location(store: str) -> None:
    """A local --store must be a new path, an empty folder or a latent store (a folder with zarr.json)."""
    path = store.removeprefix("file://")
    if os.path.isfile(path):
        raise StoreLocationError(f"--store {store!r} is a file, not a latent store (a folder): pass a new folder "
                                 "name, or the folder of an existing store")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "zarr.json")) and os.listdir(path):
        from storage.errors import not_empty_message

        raise StoreLocationError(not_empty_message(store))


def _check_images(images: str) -> None:
    """IMAGES (a folder, a list file or a glob, local or a URL of a filesystem fsspec reads; a path that exists is
    not read as a glob, as the scan reads it) exist and hold at least one image as the scan lists them
    (`storage.listing`: no torch, no zarr); a folder is looked into only until its first image, a bucket's for a few
    listings at most (the flow's scan lists it, with its progress shown)."""
    from storage.listing import NoImagesError, has_images

    path = images.removeprefix("file://")
    if not _is_local(images):
        try:
            found = _from_another_filesystem(f"IMAGES {images!r}", lambda: has_images(images))
        except FileNotFoundError:
            raise _missing_images(images) from None
    elif not os.path.exists(path) and not any(c in path for c in _GLOB_CHARS):
        raise _missing_images(images)
    else:
        found = has_images(images)  # a glob is matched once here; which message, only when nothing is found
        if not found and not os.path.exists(path) and not glob.glob(path, recursive=True):
            raise _missing_images(images)
    if not found:
        raise NoImagesError(f"no image files in {images!r}: give a folder of images, a list file with one path per "
                            "line, or a glob such as 'photos/*.jpg'")


def _missing_images(images: str) -> InputNotFound:
    if any(c in images for c in _GLOB_CHARS):
        return InputNotFound(f"IMAGES {images!r}: the glob matches no file")
    return InputNotFound(f"IMAGES {images!r} does not exist: give a folder of images, a list file with one path per "
                         "line, or a glob such as 'photos/*.jpg'")


def _from_another_filesystem(what: str, read: Callable[[], Any]) -> Any:
    """`read()` of the input `what` (IMAGES, --labels) on a filesystem other than the local one (a bucket): what the
    filesystem raises, bar a FileNotFoundError or our own UserError, is refused naming the input (no package for the
    URL's protocol, no credentials, no network, access denied). A network failure is refused too: the filesystem
    libraries retry transient errors themselves before raising (s3fs: timeouts and dropped connections, ~10 s), and
    the scan, seconds later in this process, would meet the same error after the servers started."""
    try:
        return read()
    except (UserError, FileNotFoundError):
        raise
    except Exception as err:  # noqa: BLE001 - each filesystem library raises its own classes
        raise InputUnreadable(f"{what}: cannot read it ({type(err).__name__}: {err}); check the URL, the "
                              "filesystem's package, the credentials and the network") from None


def _check_labels(labels: str) -> None:
    """The labels file is there and reads as the scan will read it (`storage.labels`, the scan's parser: no torch,
    no zarr), so a malformed file is refused before anything heavy loads."""
    from storage.labels import read_labels

    if not _is_local(labels):
        _from_another_filesystem(f"--labels {labels!r}", lambda: read_labels(labels))
    elif not os.path.isfile(labels.removeprefix("file://")):
        raise InputNotFound(f"--labels {labels!r}: no such file (a CSV whose first column is the image id)")
    else:
        read_labels(labels)


def _check_store(store, settings: Settings, *, shard_size: int | None, force: bool) -> None:
    """The existing store holds codes of this generator made with these settings and layout, and no live run holds
    it."""
    from runtime.coordinator import store_record
    from storage import StoreMismatchError, identity
    from storage.lease import LeaseHeldError

    spec, info = settings.spec, settings.generator
    shard = {} if shard_size is None else {"chunk_items": shard_size}
    record = store_record(settings)
    try:
        identity.check_identity(store, generator=info.store_identity(), config=record)
        # as the flow's open_store: an existing store keeps the metric arrays it was made with (its config, checked
        # above, says how it was made), so they are not compared here
        identity.check_layout(store, num_ws=info.num_ws, w_dim=info.w_dim,
                              thumbnail_size=min(spec.thumbnail_size, info.img_resolution), **shard)
    except StoreMismatchError as err:
        raise _with_fix(err, store) from None
    holder = store.lease_holder()
    if holder is not None and not force:  # lease_holder(): an unexpired lease of a live run, or None
        raise LeaseHeldError(f"store {store.url} is leased by {holder.describe()}: wait for that run to finish; if it "
                             f"is dead, pass --force or run `ganinv store-break-lease {store.url}`")


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")
