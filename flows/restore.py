"""The `restore-dataset` flow: restore a dataset of degraded images (inpainting, super-resolution, colorization,
denoising) by inverting each through its known degradation into a latent store (issue 20; docs/restoration.md).

    from flows.restore import restore_dataset
    from runtime.config import ExecutionOptions, InvertConfig, RestoreConfig
    summary = restore_dataset("observed/", "restored.zarr", "faces64",
                              restore=RestoreConfig(task="inpaint", mask_rule="center-box:0.4"),
                              config=InvertConfig(inversion={"num_steps": 100}),
                              execution=ExecutionOptions(cluster="local"))

Steps:
0. check the restoration: the degradation fits the generator's images, its mask or clean folder exists, every image
   has its mask;
1-5. the `invert-dataset` flow (a subflow) with the restoration in its config: the same scan, store, lease,
   sharding, resume and bad-input handling; the store records the restoration in its inversion record, and each
   worker inverts its images through the degradation (runtime/restore.py), scoring the restored, kept and baseline
   images against the clean ones when a clean folder is given.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.invert_dataset import invert_dataset
from runtime.config import DEFAULT_GENERATOR, ExecutionOptions, InvertConfig, RestoreConfig
from runtime.coordinator import InvertSummary
from tasks.restore import check_restoration


@flow(name="restore-dataset")
def restore_dataset(images: str, store: str, generator: str = DEFAULT_GENERATOR, *, restore: RestoreConfig,
                    config: InvertConfig = InvertConfig(), execution: ExecutionOptions = ExecutionOptions(),
                    labels: str | None = None, storage_options: dict[str, Any] | None = None) -> InvertSummary:
    """Restore every image of `images` into the store at `store` (see the module docstring); `config`: the
    inversion's settings (runtime/config.py), to which `restore` adds the restoration."""
    config = restore.invert_config(config)
    # 0. Check the restoration (and every image's mask) before anything is scanned or started.
    check_restoration(images, generator, config, storage_options=storage_options)
    # 1-5. Invert through the degradation: scan, store, lease, shards, summary.
    return invert_dataset(images, store, generator, config=config, execution=execution, labels=labels,
                          storage_options=storage_options)
