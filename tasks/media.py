"""The tasks of `render-morphs` and `style-mix`: thin wrappers around `runtime.media`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task

from runtime import media
from runtime.config import MorphConfig, StyleMixConfig
from runtime.media import MediaPlan
from tasks.policy import RETRY


@task(name="create-morph-run", **RETRY)
def create_morph_run(store: str, config: MorphConfig, *, run_id: str,
                     storage_options: Mapping[str, Any] | None = None) -> MediaPlan:
    """1. Interpolate each pair's codes and keep them as `edits/<run>`, under the lease."""
    return media.create_morphs(store, config, run_id=run_id, storage_options=storage_options)


@task(name="create-style-mix-run", **RETRY)
def create_style_mix_run(store: str, config: StyleMixConfig, *, run_id: str,
                         storage_options: Mapping[str, Any] | None = None) -> MediaPlan:
    """1. Mix every content item with every style item's layers and keep the codes as `edits/<run>`, under the lease."""
    return media.create_style_mix(store, config, run_id=run_id, storage_options=storage_options)


@task(name="render-media-run", **RETRY)
def render_media_run(store: str, plan: MediaPlan, *, device: str,
                     storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """2. Render the run's codes on a worker and write its pictures beside the store."""
    return media.render_run(store, plan, device=device, storage_options=storage_options)
