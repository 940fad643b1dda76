"""A scheduler on other machines is reached over TLS (issue 24 item 1): `--dask-security FILE` names this client's
certificates, the runner connects with them, a client without them is refused, and a mismatch of address and file
is an error before anything starts. Certificates are made here (a throwaway CA); the cluster is a local one that
speaks only TLS."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest

from flows.clusters import ClusterError, check_execution, dask_runner, load_security
from runtime.config import ExecutionOptions


def _write_certificates(folder: Path, prefix: str = "") -> dict[str, Path]:
    """A CA and one certificate it signs for 127.0.0.1 (PEM files named with `prefix`)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject: str, key, issuer: str, issuer_key, *, ca: bool):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("ganinv test CA", ca_key, "ganinv test CA", ca_key, ca=True)
    cert = build("127.0.0.1", key, "ganinv test CA", ca_key, ca=False)
    paths = {"ca": folder / f"{prefix}ca.pem", "cert": folder / f"{prefix}node.pem",
             "key": folder / f"{prefix}node-key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """(scheduler address, security file): a LocalCluster that accepts only TLS connections with the CA's certs."""
    from distributed import LocalCluster
    from distributed.security import Security

    folder = tmp_path_factory.mktemp("tls")
    paths = _write_certificates(folder)
    server_side = Security(tls_ca_file=str(paths["ca"]), tls_scheduler_cert=str(paths["cert"]),
                           tls_scheduler_key=str(paths["key"]), tls_worker_cert=str(paths["cert"]),
                           tls_worker_key=str(paths["key"]), tls_client_cert=str(paths["cert"]),
                           tls_client_key=str(paths["key"]), require_encryption=True)
    security_file = folder / "security.yaml"  # certificate paths relative to the file, as the README shows
    security_file.write_text("tls_ca_file: ca.pem\ntls_client_cert: node.pem\ntls_client_key: node-key.pem\n")
    rogue = _write_certificates(folder, "rogue-")  # signed by another CA
    (folder / "rogue.yaml").write_text("tls_ca_file: ca.pem\ntls_client_cert: rogue-node.pem\n"
                                       "tls_client_key: rogue-node-key.pem\n")
    assert rogue["cert"].exists()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, protocol="tls://", host="127.0.0.1",
                      security=server_side, dashboard_address=None) as cluster:
        yield cluster.scheduler_address, str(security_file)


def test_a_tls_scheduler_is_reached_with_the_security_file_and_refused_without(tls_cluster):
    from distributed import Client

    address, security_file = tls_cluster
    assert address.startswith("tls://127.0.0.1:")
    execution = ExecutionOptions(cluster=address, dask_security=security_file)
    check_execution(execution)
    runner = dask_runner(execution)
    assert runner.client_kwargs["security"].require_encryption
    with Client(address, set_as_default=False, security=runner.client_kwargs["security"]) as client:
        assert client.submit(sum, [40, 2]).result(timeout=60) == 42
    with pytest.raises((OSError, TimeoutError)):
        Client(address.replace("tls://", "tcp://"), set_as_default=False, timeout=5)  # no plain TCP there
    rogue = load_security(str(Path(security_file).with_name("rogue.yaml")))  # a certificate of another CA
    with pytest.raises((OSError, TimeoutError)):
        Client(address, set_as_default=False, timeout=5, security=rogue)


@pytest.mark.slow
def test_the_flow_runs_its_tasks_on_a_tls_scheduler(tls_cluster, prefect_harness):
    from prefect import flow, task

    address, security_file = tls_cluster

    @task
    def double(x: int) -> int:
        return 2 * x

    @flow
    def on_tls() -> list[int]:
        return [f.result() for f in double.map([1, 2, 3])]

    runner = dask_runner(ExecutionOptions(cluster=address, dask_security=security_file))
    assert on_tls.with_options(task_runner=runner)() == [2, 4, 6]


def test_security_files_and_addresses_that_cannot_work_are_refused_before_anything_starts(tmp_path, tls_cluster):
    address, security_file = tls_cluster
    with pytest.raises(ClusterError, match="tls:// scheduler needs this client's certificates"):
        check_execution(ExecutionOptions(cluster=address))
    with pytest.raises(ClusterError, match="local clusters listen on 127.0.0.1"):
        check_execution(ExecutionOptions(cluster="local", dask_security=security_file))
    (tmp_path / "bad.yaml").write_text("tls_ca_file: missing.pem\ntls_client_cert: a\ntls_client_key: b\n")
    with pytest.raises(ClusterError, match="tls_ca_file .*missing.pem is not a file"):
        check_execution(ExecutionOptions(cluster=address, dask_security=str(tmp_path / "bad.yaml")))
    (tmp_path / "typo.yaml").write_text("tls_ca: ca.pem\n")
    with pytest.raises(ClusterError, match=r"unknown keys \['tls_ca'\]"):
        load_security(str(tmp_path / "typo.yaml"))
    with pytest.raises(ClusterError, match="cannot read it"):
        load_security(str(tmp_path / "absent.yaml"))
