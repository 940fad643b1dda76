"""Shared pytest fixtures: tiny seeded generators and the official StyleGAN2-ADA reference fixture."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from _store_helpers import BACKENDS, location_for, s3_server
from ganinv.generators.stylegan2 import Generator

# Test models are tiny: threads cost more in synchronisation than they gain, and CI has two cores.
torch.set_num_threads(int(os.environ.get("GANINV_TEST_THREADS", "1")))

FIXTURES = Path(__file__).parent / "fixtures"
ADA_TINY = FIXTURES / "stylegan2_ada_tiny"


def ada_tiny_init_kwargs() -> dict:
    cfg = json.loads((ADA_TINY / "config.json").read_text())
    return dict(
        z_dim=cfg["z_dim"], c_dim=cfg["c_dim"], w_dim=cfg["w_dim"], img_resolution=cfg["img_resolution"],
        img_channels=cfg["img_channels"],
        mapping_kwargs=dict(num_layers=cfg["mapping_layers"], lr_multiplier=cfg["mapping_lr_multiplier"]),
        synthesis_kwargs=dict(channel_base=cfg["channel_base"], channel_max=cfg["channel_max"],
                              num_fp16_res=cfg["num_fp16_res"], conv_clamp=cfg["conv_clamp"],
                              architecture=cfg["architecture"]),
    )


def ada_tiny_state_dict() -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in np.load(ADA_TINY / "G_ema_state_dict.npz").items()}


@pytest.fixture(scope="session")
def ada_tiny() -> Generator:
    """The official-code tiny generator (32 px, num_ws 8), weights loaded, in eval mode."""
    G = Generator(**ada_tiny_init_kwargs())
    G.load_state_dict(ada_tiny_state_dict())
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def ada_tiny_reference() -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in np.load(ADA_TINY / "reference_outputs.npz").items()}


def make_tiny_generator(*, resolution: int = 16, z_dim: int = 16, w_dim: int = 16, c_dim: int = 0,
                        channel_base: int = 256, channel_max: int = 16, mapping_layers: int = 2,
                        conv_clamp: float | None = 256, seed: int = 0) -> Generator:
    """A few-kilobyte random generator for fast CPU tests; biases and noise strengths made non-zero."""
    torch.manual_seed(seed)
    G = Generator(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=resolution, img_channels=3,
                  mapping_kwargs=dict(num_layers=mapping_layers),
                  synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, conv_clamp=conv_clamp))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("bias") or name.endswith("noise_strength"):
                p.add_(0.1 * torch.randn_like(p))
        G.mapping.w_avg.normal_(0, 0.1)
    return G.eval().requires_grad_(False)


@contextlib.contextmanager
def tf32_disabled():
    """Inside: cuDNN convolutions and CUDA matmuls in true fp32 (both default to TF32, a 10-bit mantissa); the
    previous settings come back at exit."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture
def tiny_generator() -> Generator:
    return make_tiny_generator()


@pytest.fixture(scope="session")
def inversion_G() -> Generator:
    """The inversion tests' generator (seed 1); inversion reads it and never changes it."""
    return make_tiny_generator(seed=1)


@pytest.fixture(scope="session")
def inversion_targets(inversion_G) -> torch.Tensor:
    """[3, 3, 16, 16] images of `inversion_G` from seeded z, in [-1, 1]: reachable targets for the inversion tests."""
    G = inversion_G
    with torch.no_grad():
        return G(torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(7)), None).clamp(-1, 1)


@pytest.fixture(scope="session")
def tiny_generator_file(tmp_path_factory) -> str:
    """`make_tiny_generator()` saved once for the session (flows and workers load generators by path). One path, so
    the session's Dask workers load one model; tests read it and never write to it."""
    from _flow_helpers import save_tiny_generator

    return save_tiny_generator(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def edit_world(tmp_path_factory) -> tuple[str, str, Generator]:
    """(store path, generator path, G) of `_edit_helpers.tiny_world`, made once for the session; never written to:
    tests that write take a copy of the store (`edit_store`)."""
    from _edit_helpers import tiny_world

    return tiny_world(tmp_path_factory.mktemp("edit-world"))


@pytest.fixture
def edit_store(edit_world, tmp_path) -> str:
    """The path of a fresh copy of `edit_world`'s store, for one test to write to."""
    path = tmp_path / "corpus.zarr"
    shutil.copytree(edit_world[0], path)
    return str(path)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server and database for the whole session (starting one costs ~10 s); flows, tasks on
    Dask workers and subprocesses given its `PREFECT_API_URL` (the fixture's value) all report to it."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline telemetry only logs tracebacks
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def dask_cluster():
    """(cluster, client): the `--cluster local` LocalCluster of 2 single-threaded worker processes (on loopback),
    shared by the session's flow tests so that workers import torch and load models once (pass
    `cluster.scheduler_address` to the flows)."""
    from distributed import Client

    from flows.clusters import start_local_cluster

    with start_local_cluster("local", workers=2) as cluster, Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2)
        yield cluster, client


@pytest.fixture(scope="session")
def s3_endpoint():
    """One moto S3 server for the session; every store on it has a uuid in its name, so tests never share one."""
    yield from s3_server()


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path):
    """A fresh store location (not yet created) on each backend of `BACKENDS`; memory:// stores are removed after."""
    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "s3" else None
    loc = location_for(request.param, tmp_path, endpoint)
    yield loc
    if request.param == "memory":
        fs, root = loc.fs()
        if fs.exists(root):
            fs.rm(root, recursive=True)
