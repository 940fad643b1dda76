"""Restoration by inversion at dataset scale (`ganinv restore`, issue 20; the algorithms: docs/restoration.md).

A restoration store is an inversion store whose inversion record carries `restoration = {task, degradation (its
config), keep_observed, clean}` (`RestoreConfig.record`): the invert-dataset flow runs it unchanged, with the same
sharding, resume, lease and bad-input handling, and its workers invert every image through the degradation:

- `check` / `check_dataset`: what is refused before any server starts: a degradation that cannot apply to the
  generator's images (a factor that does not divide its size), a mask folder that is not there, an image without
  its mask;
- `ShardRestoration`: a worker's side: observations decoded at the degradation's observed size (super-resolution:
  R // factor), each batch's degradation (masks by image id), the clean images when a clean folder is given, and
  items without a mask marked failed with the file that was expected.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganinv.datasets.folder import DecodePolicy, ImageDecodeError
from ganinv.inversion.degradations import Degradation, degradation_from_config
from ganinv.inversion.masks import MaskFolder, mask_source_from_config
from runtime.config import InvertConfig
from runtime.errors import ConfigError
from runtime.models import GeneratorInfo, describe_generator
from runtime.spec import InversionSpec

MAX_LISTED = 5  # missing masks named in an error


def observed_resolution(degradation: Mapping[str, Any], resolution: int) -> int:
    """The side of an observation of a `resolution` px image through the degradation `degradation` (a config)."""
    if degradation["kind"] == "downsample":
        return resolution // int(degradation["factor"])
    if degradation["kind"] == "compose":
        for part in degradation["parts"]:
            resolution = observed_resolution(part, resolution)
    return resolution


def mask_folder(spec: InversionSpec) -> MaskFolder | None:
    """The folder of mask PNGs the store's restoration reads, if its masks come from one."""
    config = (spec.restoration or {}).get("degradation", {})
    if config.get("kind") != "mask":
        return None
    source = mask_source_from_config(config["source"])
    return source if isinstance(source, MaskFolder) else None


def check(spec: InversionSpec, info: GeneratorInfo) -> None:
    """Refuses (ConfigError) a restoration that cannot apply to the generator's images or whose mask folder or
    clean folder is missing."""
    if spec.restoration is None:
        return
    config, shape = spec.restoration["degradation"], (3, info.img_resolution, info.img_resolution)
    try:
        if config["kind"] != "mask":
            degradation_from_config(config).check(1, shape)
    except ValueError as err:
        raise ConfigError(f"restore {spec.restoration['task']}: {err} (the generator {info.source!r} makes "
                          f"{info.img_resolution} px images)") from None
    folders = [("mask folder", getattr(mask_folder(spec), "path", None)), ("clean folder", spec.restoration["clean"])]
    for what, folder in folders:
        if folder and "://" not in folder and not Path(folder).is_dir():
            raise ConfigError(f"the {what} {folder} is not a folder")


def check_masks(spec: InversionSpec, image_ids: Sequence[str]) -> None:
    """Every image has its mask (when masks come from a folder): else ConfigError naming the expected files."""
    missing = [reason.removeprefix("no mask: ") for reason in map(lambda i: missing_mask(spec, i), image_ids)
               if reason]
    if missing:
        raise ConfigError(f"{len(missing)} of {len(image_ids)} images have no mask: "
                          f"{'; '.join(missing[:MAX_LISTED])}{' ...' if len(missing) > MAX_LISTED else ''}")


def missing_mask(spec: InversionSpec, image_id: str) -> str | None:
    """Why `image_id` cannot be restored for want of its mask, or None."""
    folder = mask_folder(spec)
    if folder is None:
        return None
    try:
        path = folder.file_for(image_id)
    except ValueError as err:
        return f"no mask: {err}"
    return None if path.is_file() else f"no mask: expected {path} ({folder.holes} = hole)"


def check_dataset(images: str, generator: str, config: InvertConfig, *,
                  storage_options: Mapping[str, Any] | None = None) -> InversionSpec:
    """The restoration's settings and masks, checked before anything starts: the spec, or a ConfigError."""
    spec = config.resolve(generator)
    check(spec, describe_generator(generator))
    check_dataset_masks(spec, images, storage_options=storage_options)
    return spec


def check_dataset_masks(spec: InversionSpec, images: str, *,
                        storage_options: Mapping[str, Any] | None = None) -> None:
    """Every image of `images` has its mask, when the masks come from a folder (ConfigError naming those missing)."""
    from storage.listing import list_image_ids

    if mask_folder(spec) is not None:
        check_masks(spec, list_image_ids(images, storage_options=storage_options))


@dataclass(frozen=True)
class ShardRestoration:
    """A worker's restoration of one shard: see the module docstring."""

    spec: InversionSpec
    resolution: int
    storage_options: Mapping[str, Any] | None = None

    @classmethod
    def for_spec(cls, spec: InversionSpec, resolution: int,
                 storage_options: Mapping[str, Any] | None = None) -> ShardRestoration | None:
        return None if spec.restoration is None else cls(spec, resolution, storage_options)

    def precheck(self, image_id: str) -> str | None:
        return missing_mask(self.spec, image_id)

    def batch_kwargs(self, image_ids: Sequence[str]) -> dict[str, Any]:
        """`invert_batch`'s restoration arguments for the items `image_ids`."""
        record = self.spec.restoration
        degradation: Degradation = degradation_from_config(record["degradation"], image_ids=list(image_ids),
                                                           resolution=self.resolution)
        return dict(degradation=degradation, keep_observed=bool(record["keep_observed"]),
                    clean=self.clean(image_ids) if record["clean"] else None)

    def clean(self, image_ids: Sequence[str]) -> torch.Tensor:
        """`[n, 3, R, R]` the clean images of the items from the clean folder (same ids), NaN where absent."""
        from runtime.shard import read_image

        policy = self.spec.decode_policy(self.resolution)
        images = torch.full((len(image_ids), 3, self.resolution, self.resolution), torch.nan)
        for k, image_id in enumerate(image_ids):
            try:
                images[k] = read_image(posixpath.join(self.spec.restoration["clean"], image_id), policy, image_id,
                                       self.storage_options)
            except ImageDecodeError:
                continue  # unknown truth: its restoration metrics stay NaN
        return images


def decode_policy(spec: InversionSpec, resolution: int) -> DecodePolicy:
    """How a worker decodes the store's inputs: at the observation's size for a restoration store."""
    if spec.restoration is None:
        return spec.decode_policy(resolution)
    return spec.decode_policy(observed_resolution(spec.restoration["degradation"], resolution))
