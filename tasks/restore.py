"""The task of `restore-dataset` beyond those of `invert-dataset`: checking the restoration before anything starts."""

from __future__ import annotations

from typing import Any

from prefect import task

from runtime import restore
from runtime.config import InvertConfig
from runtime.spec import InversionSpec
from tasks.policy import NO_CACHE_POLICY


@task(name="check-restoration", cache_policy=NO_CACHE_POLICY)
def check_restoration(images: str, generator: str, config: InvertConfig,
                      storage_options: dict[str, Any] | None = None) -> InversionSpec:
    """0. The degradation fits the generator's images, its folders exist, every image has its mask."""
    return restore.check_dataset(images, generator, config, storage_options=storage_options)
