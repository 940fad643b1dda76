"""Shared pytest fixtures: tiny seeded generators and the official StyleGAN2-ADA reference fixture."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from _store_helpers import BACKENDS, location_for, s3_server
from ganinv.generators.stylegan2 import Generator
from ganinv.generators.stylegan3 import Generator as StyleGAN3Generator

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


SG3_TINY = FIXTURES / "stylegan3_tiny"
SG3_CONFIGS = ("t32", "r32")  # config T and config R
_SG3_SYNTHESIS_KEYS = ("channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband",
                       "last_stopband_rel", "margin_size", "output_scale", "conv_kernel", "filter_size",
                       "lrelu_upsampling", "use_radial_filters", "conv_clamp", "num_fp16_res")


def sg3_tiny_init_kwargs(name: str) -> dict:
    """Constructor arguments of the official-code tiny StyleGAN3 generator `name` ('t32' or 'r32')."""
    cfg = json.loads((SG3_TINY / name / "config.json").read_text())
    return dict(z_dim=cfg["z_dim"], c_dim=cfg["c_dim"], w_dim=cfg["w_dim"], img_resolution=cfg["img_resolution"],
                img_channels=cfg["img_channels"],
                mapping_kwargs=dict(num_layers=cfg["mapping_layers"], lr_multiplier=cfg["mapping_lr_multiplier"]),
                **{key: cfg[key] for key in _SG3_SYNTHESIS_KEYS})


def sg3_tiny_state_dict(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in np.load(SG3_TINY / name / "G_ema_state_dict.npz").items()}


def sg3_tiny_reference(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in np.load(SG3_TINY / name / "reference_outputs.npz").items()}


def load_sg3_tiny(name: str) -> StyleGAN3Generator:
    """The official-code tiny StyleGAN3 generator `name`, weights loaded, in eval mode."""
    G = StyleGAN3Generator(**sg3_tiny_init_kwargs(name))
    G.load_state_dict(sg3_tiny_state_dict(name))
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="session", params=SG3_CONFIGS)
def sg3_tiny(request) -> StyleGAN3Generator:
    """Each official-code tiny StyleGAN3 generator (config T, then R)."""
    return load_sg3_tiny(request.param)


def make_tiny_sg3_generator(*, resolution: int = 16, z_dim: int = 16, w_dim: int = 16, radial: bool = False,
                            channel_base: int = 256, channel_max: int = 16, num_layers: int = 3,
                            seed: int = 0) -> StyleGAN3Generator:
    """A few-kilobyte random StyleGAN3 generator (config T, or R with `radial`) for fast CPU tests, with non-zero
    biases, w_avg and a non-trivial input transform affine."""
    torch.manual_seed(seed)
    G = StyleGAN3Generator(z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=resolution, img_channels=3,
                           channel_base=channel_base, channel_max=channel_max, num_layers=num_layers,
                           num_critical=1, margin_size=2, conv_kernel=1 if radial else 3, use_radial_filters=radial)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
        G.synthesis.input.affine.weight.normal_(0, 0.3)
        G.mapping.w_avg.normal_(0, 0.1)
    return G.eval().requires_grad_(False)


# The engine checks' StyleGAN3 world (tests/test_stylegan3_gpu.py, and its CPU conditioning test in
# tests/test_inversion_execution.py): a 32 px config-T generator inverted in W+ with MSE from w_avg. Its inversion nears
# the optimum within a few steps (MSE ~1e-3; SG2's tiny world is led by its noise regulariser), where Adam, which
# divides each gradient entry by its own scale, turns last-bit differences between execution paths into latent
# differences of ~lr: over 30 steps, Adam's fused kernel in place of its loop (last-bit differences) moved ws by
# 4.7e-4 on the CPU, and on an H100 (2026-12-07) the graphed and compiled paths ended 0.03-0.06 from eager. Over
# SG3_ENGINE_STEPS steps the same swap moves ws by ~5e-7 while a wrong schedule or noise draw still moves it by >= 0.07.
SG3_ENGINE_STEPS = 10


def make_sg3_engine_world(device: str = "cpu") -> tuple[StyleGAN3Generator, torch.Tensor]:
    """(G, targets): the engine checks' 32 px StyleGAN3 generator (seed 1) and 4 of its own images, in [-1, 1]."""
    G = make_tiny_sg3_generator(resolution=32, z_dim=32, w_dim=32, channel_base=1024, channel_max=32, num_layers=6,
                                seed=1).to(device)
    with torch.no_grad():
        targets = G(torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(7)).to(device), None)
    return G, targets.clamp(-1, 1)


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


def generated_targets(G) -> torch.Tensor:
    """[3, 3, R, R] images of G from seeded z, in [-1, 1]: reachable targets for the inversion tests."""
    with torch.no_grad():
        return G(torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(7)), None).clamp(-1, 1)


@pytest.fixture(scope="session")
def inversion_targets(inversion_G) -> torch.Tensor:
    """[3, 3, 16, 16] images of `inversion_G` from seeded z, in [-1, 1]: reachable targets for the inversion tests."""
    return generated_targets(inversion_G)


FAMILIES = ("stylegan2", "stylegan3")


def make_tiny_family_generator(family: str, *, seed: int = 0) -> torch.nn.Module:
    """The tiny test generator of `family` (16 px, z/w 16): `make_tiny_generator` or `make_tiny_sg3_generator`."""
    return make_tiny_generator(seed=seed) if family == "stylegan2" else make_tiny_sg3_generator(seed=seed)


@pytest.fixture(scope="session", params=FAMILIES)
def family_generator(request) -> torch.nn.Module:
    """A tiny generator of each family (StyleGAN2, StyleGAN3-T), seed 1; tests read it and never change it."""
    return make_tiny_family_generator(request.param, seed=1)


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
    """One temporary Prefect server for the whole session, started as a command starts its own, never the one the
    environment names (flows/prefect_api.py): on a copy of the migrated database template in ganinv's cache
    directory, which the first server to find none saves (flows/prefect_template.py), so only a first session on a
    machine pays the ~4 s of migrations. Flows, tasks on Dask workers and subprocesses given its `PREFECT_API_URL`
    (the fixture's value, also in os.environ meanwhile) all report to it."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline telemetry only logs tracebacks
    from flows.prefect_api import temporary_server

    with temporary_server() as url:
        yield url


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


# How `make test`'s pytest-xdist workers share the machine.

LONGEST_MODULE = "test_readme_first_hour.py"  # the README's first hour: ~3 minutes on the 2-core CI machine


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test` runs `-n 2 --dist loadfile`) whole modules go to the workers in collection
    order: the longest module first, then modules with `slow` tests, then the rest, and modules with tests marked
    `alone` last (they wait for the other worker's running test; at the end that is a short one), so that the two
    workers finish together. A plain `pytest` keeps the file order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    markers: dict[str, set[str]] = {}
    for item in items:
        markers.setdefault(item.nodeid.split("::")[0], set()).update(m.name for m in item.iter_markers())
    rank = {module: 0 if module.endswith(LONGEST_MODULE) else 3 if "alone" in names else 1 if "slow" in names else 2
            for module, names in markers.items()}
    items.sort(key=lambda item: rank[item.nodeid.split("::")[0]])  # stable: file and test order kept within a rank


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test marked `alone` (it asserts wall-clock bounds: a Ctrl-C that stops a run within 10 s) runs while no
    other pytest-xdist worker runs a test, set-up of module fixtures included; other tests share the machine."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return (yield)
    with _machine_turn(Path(item.config.option.basetemp).parent, alone=item.get_closest_marker("alone") is not None):
        return (yield)


@contextlib.contextmanager
def _machine_turn(run_folder: Path, *, alone: bool):
    """A readers-writer lock between the workers of one run (flock on files of the run's shared temporary folder):
    `alone` takes it exclusively, other tests shared. The gate makes a waiting `alone` test block new shared turns,
    so that it does not wait for the other worker's every next test."""
    with open(run_folder / "machine.gate", "a") as gate, open(run_folder / "machine.lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
