"""The clusters a run starts (flows/clusters.py) listen on loopback only and serve no dashboard unless asked.

`local-cuda` runs here without a GPU: CUDA_VISIBLE_DEVICES names the device, so the same code path starts one
nanny per listed device (its worker never touches CUDA)."""

from __future__ import annotations

import ipaddress
import os
import urllib.error
import urllib.request

import psutil
import pytest

from flows.clusters import ClusterError, dashboard_address, dask_cluster, has_gpu_workers


def listening_addresses() -> set[tuple[str, int]]:
    """(ip, port) of every listening TCP socket of this process and its children (the nannies and workers)."""
    found = set()
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            found |= {(c.laddr.ip, c.laddr.port) for c in process.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            pass
    return found


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def scheduler_http_port(address: str) -> int:
    """The port of the scheduler's HTTP server (it runs in this process)."""
    from distributed import Client

    def port(dask_scheduler) -> int:
        return next(iter(dask_scheduler.http_server._sockets.values())).getsockname()[1]

    with Client(address, set_as_default=False) as client:
        return client.run_on_scheduler(port)


@pytest.mark.parametrize("kind", ["local", "local-cuda"])
def test_cluster_servers_listen_on_loopback_only_without_a_dashboard(kind, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    before = listening_addresses()
    with dask_cluster(kind, workers=1) as where:
        opened = listening_addresses() - before
        port = scheduler_http_port(where.address)
        assert where.address.startswith("tcp://127.0.0.1:")
        assert len(opened) >= 3  # the scheduler, its HTTP server, the nanny and the worker at least
        assert all(ipaddress.ip_address(ip).is_loopback for ip, _ in opened), sorted(opened)
        assert 8787 not in {p for _, p in opened}
        assert http_status(port, "/health") == 200
        for page in ("/info/main/workers.html", "/json/identity.json", "/status"):
            assert http_status(port, page) == 404, page  # no worker lists, no proxy, no dashboard


def test_a_dashboard_is_served_on_loopback_when_asked():
    before = listening_addresses()
    with dask_cluster("local", workers=1, dashboard=":0") as where:
        opened = listening_addresses() - before
        port = scheduler_http_port(where.address)
        assert all(ipaddress.ip_address(ip).is_loopback for ip, _ in opened), sorted(opened)
        assert http_status(port, "/info/main/workers.html") == 200


def test_dashboard_addresses_default_to_loopback_and_keep_a_named_host():
    assert dashboard_address(None) is None
    assert dashboard_address(":8787") == dashboard_address("8787") == "127.0.0.1:8787"
    assert dashboard_address("0.0.0.0:8787") == "0.0.0.0:8787"
    with pytest.raises(ClusterError, match="HOST:PORT"):
        dashboard_address("localhost")


def test_local_cuda_workers_are_pinned_one_per_gpu(monkeypatch):
    from distributed import Client

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    with dask_cluster("local-cuda") as where, Client(where.address, set_as_default=False) as client:
        client.wait_for_workers(2)
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        resources = [w["resources"] for w in client.scheduler_info()["workers"].values()]
        assert sorted(seen.values()) == ["2", "5"] and resources == [{"GPU": 1}, {"GPU": 1}]
        assert has_gpu_workers(client)


def test_a_worker_slow_to_exit_does_not_fail_a_finished_run():
    """Seen on a loaded 2-core machine: Dask's nanny gave up waiting for a worker to exit after render-edits had
    written everything, and the command exited 3. The cluster's `with` block now ends such workers itself."""
    import subprocess
    from types import SimpleNamespace

    from flows.clusters import _stopping_on_interrupt

    worker = subprocess.Popen(["sleep", "60"])
    closed = []

    class SlowToClose:
        def __init__(self):
            nanny = SimpleNamespace(process=SimpleNamespace(process=worker), close_gracefully=lambda reason: None)
            self.workers = {"w0": nanny}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            raise TimeoutError  # as distributed's Nanny.kill raises it

        def close(self, timeout=None):
            closed.append(timeout)

    with _stopping_on_interrupt(SlowToClose)():
        pass
    assert worker.wait(timeout=10) == -9 and closed  # killed, and the rest of the cluster closed


@pytest.mark.slow
def test_a_killed_worker_that_is_slow_to_start_again_rejoins_the_cluster(tmp_path):
    """A killed worker's nanny starts it again. On a loaded machine that took 38 s, and Dask's local cluster closed
    the nanny after 15 s (`distributed.deploy.lost-worker-timeout`): the worker was gone for good, a shard the new
    process had been given started a third time, and with the last worker gone a run waited forever. Here the new
    process takes 20 s to start; it must rejoin and the cluster must keep its worker."""
    import signal
    import time

    import dask
    from distributed import Client

    from flows.clusters import start_local_cluster

    marker, preload = tmp_path / "restarting", tmp_path / "slow_start.py"
    preload.write_text("import os, time\n\ndef dask_setup(worker):\n"
                       f"    if os.path.exists({str(marker)!r}):\n        time.sleep(20)\n")
    with dask.config.set({"distributed.worker.preload": [str(preload)]}):  # the nanny passes it to each process
        cluster = start_local_cluster("local", workers=1)
    with cluster, Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(1)
        ((first, pid),) = client.run(os.getpid).items()  # {worker address: its process id}
        marker.touch()
        os.kill(pid, signal.SIGKILL)
        deadline, workers = time.monotonic() + 120, {first}
        while time.monotonic() < deadline and workers in ({first}, set()):
            time.sleep(1)
            workers = set(client.scheduler_info()["workers"])
        assert len(workers) == 1 and first not in workers, workers  # the new process joined, within 2 minutes
        time.sleep(2)
        assert len(cluster.workers) == 1 and client.submit(sum, [1, 2]).result(timeout=30) == 3
