"""Security of the DaskRunner in use: what the embedded LocalCluster exposes, TLS
end to end with a real scheduler and workers, and credentials that must never
reach a log.

Real processes only: ``kedro run`` subprocesses, ``dask scheduler`` / ``dask
worker`` started with TLS certificates generated here with ``cryptography``.
Plaintext beyond loopback: the real ``kedro`` executable in a network namespace
of its own with no route out (``unshare``), so that nothing could leave the
machine even if it tried; the tests show that it does not try.
The fault modules (failing nodes, a credentialed dataset, ``tests/fixtures``) come
from ``test_faults.add_fault_modules``, copied into a copy of the rendered project.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from distributed import Security

from .conftest import (
    DASK_RUNNER,
    KEDRO,
    RECORD_DIR_VARIABLE,
    DaskCluster,
    Result,
    assert_one_clear_error,
    assert_same_outputs,
    base_env,
    copy_project,
    free_port,
    kedro_dask_cluster,
    pipeline_node_names,
    read_jsonl,
    recorded_nodes,
    reset_data,
    run_cmd,
    start_cluster,
    tail,
)
from .test_faults import (
    EXAMPLE_PIPELINES,
    add_fault_modules,
    background_kedro,
    descendants,
    events,
    fault_project,
    kedro_run,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.dask]

LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------- #
# The embedded LocalCluster
# --------------------------------------------------------------------------- #
def _listening_sockets(processes: list[psutil.Process]) -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every TCP socket in LISTEN state of ``processes``."""
    sockets = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    sockets.append((process.pid, conn.laddr.ip, conn.laddr.port))
    return sockets


def test_local_cluster_listens_on_loopback_only(rendered_project, tmp_path):
    project = fault_project(rendered_project, tmp_path / "project")
    marker = tmp_path / "slow.jsonl"
    with background_kedro(
        project,
        "run",
        "--pipelines",
        "slowsave",
        "--params",
        f"slowsave_sleep=4,slowsave_marker={marker}",
        "--runner",
        DASK_RUNNER,
        "--runner-params",
        "client_args.n_workers=2,client_args.threads_per_worker=1",
        log=tmp_path / "kedro.log",
    ) as run:
        started = wait_until(
            lambda: "started" in events(marker) or not run.running(), 120
        )
        assert started and run.running(), tail(run.output())
        tree = [psutil.Process(run.pid), *descendants(run.pid)]
        sockets = _listening_sockets(tree)
        line = next(
            (
                line
                for line in run.output().splitlines()
                if "Started a Dask LocalCluster at" in line
            ),
            "",
        )
        match = re.search(
            r"at tls://([\d.]+):(\d+); dashboard: http://([\d.]+):(\d+)/", line
        )
        assert match, f"no LocalCluster line with its addresses:\n{tail(run.output())}"
        refused = _strangers_refused(project, f"tls://{match[1]}:{match[2]}")
        result = run.wait(timeout=120)
    assert result.returncode == 0, result.describe()

    # What the run said: scheduler (TLS) and dashboard on 127.0.0.1.
    assert match[1] == LOOPBACK and match[3] == LOOPBACK, line
    # Another local user, in plaintext, with TLS but no credentials, or with
    # credentials of their own, cannot talk to the scheduler.
    assert all(refused.values()), refused
    # What the kernel says: every listening socket of the process tree (scheduler,
    # dashboard, nannies, workers) is bound to 127.0.0.1, none to 0.0.0.0 or ::.
    assert len(sockets) >= 4, sockets
    exposed = [s for s in sockets if s[1] != LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed} (all: {sockets})"
    ports = {port for _, _, port in sockets}
    assert {int(match[2]), int(match[4])} <= ports, (match.groups(), sockets)


def _strangers_refused(project: Path, address: str) -> dict[str, bool]:
    """Whether each kind of client this run did not make, in another process,
    fails to connect to its scheduler at ``address`` (tls://): the rendered
    project's own ``tests/runner/strangers.py``."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.runner.strangers", address],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    connected = json.loads(result.stdout.strip().splitlines()[-1])
    return {name: not ok for name, ok in connected.items()}


# --------------------------------------------------------------------------- #
# Plaintext beyond loopback: refused before anything connects
# --------------------------------------------------------------------------- #
# Not loopback, and unreachable from the namespace the commands run in.
REMOTE_HOST = "10.0.0.5"
# Not loopback, but an address of the namespace's own lo: a scheduler can listen
# on it without anything leaving the namespace.
NAMESPACE_HOST = "10.255.0.1"
# A connection attempt would last this long (Dask retries until its timeout).
CONNECT_TIMEOUT = 30


def _namespace_problem() -> str | None:
    """Why commands cannot run in a network namespace of their own here."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "needs unshare (util-linux) and ip (iproute2)"
    probe = subprocess.run(
        ["unshare", "--map-root-user", "--net", "true"],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"unshare --net is not allowed here: {probe.stderr.decode().strip()}"
    return None


@pytest.fixture(scope="module")
def no_route_out() -> None:
    """A test that needs a network namespace and cannot have one fails: .ci/run
    installs what it needs (iproute2; util-linux is part of Debian)."""
    problem = _namespace_problem()
    if problem:
        pytest.fail(problem, pytrace=False)


def isolated_kedro(project: Path, *args: str, timeout: float = 120) -> Result:
    """The ``kedro`` executable in a new network namespace: loopback up, with
    NAMESPACE_HOST on it too, and no route anywhere else."""
    setup = f"ip link set lo up && ip addr add {NAMESPACE_HOST}/32 dev lo"
    return run_cmd(
        [
            *("unshare", "--map-root-user", "--net", "sh", "-c"),
            f'{setup} && exec "$@"',
            *("sh", KEDRO, *args),
        ],
        cwd=project,
        timeout=timeout,
        env=base_env(project),
    )


@pytest.fixture(scope="module")
def plaintext_project(rendered_project, tmp_path_factory) -> Path:
    """A project copy with an environment per way of meeting a plaintext address
    beyond loopback."""
    project = copy_project(rendered_project, tmp_path_factory.mktemp("plaintext"))
    remote = f"tcp://{REMOTE_HOST}:8786"
    environments = {
        "remote": {"address": remote, "timeout": CONNECT_TIMEOUT},
        "remoteok": {"address": remote, "timeout": 2, "allow_insecure": True},
        "listen": {"address": "tcp://0.0.0.0:8786"},
        "plaincluster": {
            "cluster": {
                "class": "distributed.LocalCluster",
                "kwargs": {
                    "n_workers": 0,
                    "protocol": "tcp",
                    "host": NAMESPACE_HOST,
                    "dashboard_address": "127.0.0.1:0",
                },
            },
        },
    }
    for env, dask_client in environments.items():
        (project / "conf" / env).mkdir()
        (project / "conf" / env / "parameters.yml").write_text(
            yaml.safe_dump({"dask_client": dask_client})
        )
    return project


def test_kedro_run_refuses_a_plaintext_remote_scheduler_before_connecting(
    no_route_out, plaintext_project
):
    """One line naming the address and both ways on, and no connection attempt:
    one would last the 30 s timeout (no route, Dask retries)."""
    address = f"tcp://{REMOTE_HOST}:8786"
    start = time.monotonic()
    result = isolated_kedro(
        plaintext_project, "run", "--env", "remote", "--runner", DASK_RUNNER
    )
    elapsed = time.monotonic() - start

    line = assert_one_clear_error(
        result,
        f"Refusing plaintext tcp:// to the scheduler at {address}",
        "tls:// with dask_client.security",
        "dask_client.allow_insecure: true",
    )
    assert "Cannot connect" not in result.output, line
    assert elapsed < CONNECT_TIMEOUT / 2, f"{elapsed:.1f} s\n{result.describe()}"


def test_kedro_run_allow_insecure_warns_once_then_connects(
    no_route_out, plaintext_project
):
    address = f"tcp://{REMOTE_HOST}:8786"
    result = isolated_kedro(
        plaintext_project, "run", "--env", "remoteok", "--runner", DASK_RUNNER
    )

    warnings = [
        line for line in result.output.splitlines() if "travel in plaintext" in line
    ]
    assert len(warnings) == 1, result.describe()
    assert f"to the scheduler at {address}" in warnings[0]
    # It tried (in vain: the namespace has no route out).
    assert_one_clear_error(result, f"Cannot connect to the Dask scheduler at {address}")


def test_kedro_dask_scheduler_refuses_to_listen_in_plaintext_beyond_loopback(
    no_route_out, plaintext_project
):
    result = isolated_kedro(
        plaintext_project, "dask", "scheduler", "--env", "listen", timeout=60
    )

    assert_one_clear_error(
        result,
        "Refusing plaintext tcp:// for kedro dask scheduler at tcp://0.0.0.0:8786",
        "dask_client.allow_insecure: true",
    )
    assert "dask scheduler --protocol" not in result.output  # never started


def test_a_started_cluster_listening_in_plaintext_is_refused(
    no_route_out, plaintext_project
):
    """A ``cluster:`` class whose scheduler listens beyond loopback in plaintext
    (here a LocalCluster without workers on the namespace's own address): one
    line, and the cluster is closed before anything connects to it."""
    result = isolated_kedro(
        plaintext_project, "run", "--env", "plaincluster", "--runner", DASK_RUNNER
    )

    assert_one_clear_error(
        result,
        f"Refusing plaintext tcp:// to the LocalCluster started at "
        f"tcp://{NAMESPACE_HOST}:",
    )
    assert "Started a Dask LocalCluster" not in result.output


# --------------------------------------------------------------------------- #
# TLS: certificates and a real cluster
# --------------------------------------------------------------------------- #
def make_tls_files(folder: Path) -> dict[str, Path]:
    """A throw-away CA, and a certificate + key signed by it for the cluster
    (scheduler and workers) and one for the client, valid for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    valid = {
        "not_valid_before": now - datetime.timedelta(minutes=5),
        "not_valid_after": now + datetime.timedelta(days=1),
    }

    def pem_key(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "starter test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid["not_valid_before"])
        .not_valid_after(valid["not_valid_after"])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": folder / "ca.pem"}
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for name in ("cluster", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"starter {name}")])
            )
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"])
            .not_valid_after(valid["not_valid_after"])
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .sign(ca_key, hashes.SHA256())
        )
        files[f"{name}_cert"] = folder / f"{name}.pem"
        files[f"{name}_key"] = folder / f"{name}.key"
        files[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}_key"].write_bytes(pem_key(key))
        files[f"{name}_key"].chmod(0o600)
    return files


def client_security(tls: dict[str, Path]) -> dict[str, object]:
    """``dask_client.security`` for the test client certificate."""
    return {
        "tls_ca_file": str(tls["ca"]),
        "tls_client_cert": str(tls["client_cert"]),
        "tls_client_key": str(tls["client_key"]),
        "require_encryption": True,
    }


def tls_cluster(
    project: Path, tls: dict[str, Path], port: int, n_workers: int = 2
) -> contextlib.AbstractContextManager[DaskCluster]:
    """``dask scheduler --protocol tls`` and ``n_workers`` TLS ``dask worker``s on
    127.0.0.1:``port``, the workers running from ``project``."""
    return start_cluster(
        {f"w{i}": None for i in range(1, n_workers + 1)},
        worker_env=base_env(project),
        worker_cwd=project,
        port=port,
        tls_flags=[
            *("--tls-ca-file", str(tls["ca"])),
            *("--tls-cert", str(tls["cluster_cert"])),
            *("--tls-key", str(tls["cluster_key"])),
        ],
        security=Security(**client_security(tls)),
    )


SECRET = f"starter-test-secret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, Path]:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def security_project(rendered_project, tmp_path_factory, tls, tls_port) -> Path:
    """A project copy with the fault modules, a secret in conf/local/credentials.yml
    and ``dask_client`` pointing at the TLS cluster, in conf/dask (``--env dask``)
    and conf/local (the default environment, which holds the credentials); and in
    conf/tlsnosec without its ``security`` block."""
    project = copy_project(rendered_project, tmp_path_factory.mktemp("security"))
    add_fault_modules(project, secret=SECRET)
    dask_client = {
        "address": f"tls://{LOOPBACK}:{tls_port}",
        "security": client_security(tls),
    }
    for env in ("dask", "local"):
        (project / "conf" / env / "parameters.yml").write_text(
            yaml.safe_dump({"dask_client": dask_client})
        )
    # An environment that forgets the certificates.
    (project / "conf" / "tlsnosec").mkdir()
    (project / "conf" / "tlsnosec" / "parameters.yml").write_text(
        yaml.safe_dump({"dask_client": {"address": dask_client["address"]}})
    )
    return project


@pytest.fixture(scope="module")
def secure_cluster(security_project, tls, tls_port) -> Iterator[DaskCluster]:
    with tls_cluster(security_project, tls, tls_port) as running:
        yield running


def test_tls_end_to_end(
    secure_cluster, security_project, rendered_project, sequential_project, tmp_path
):
    reset_data(security_project, rendered_project)
    record_dir = tmp_path / "record"
    result = kedro_run(
        security_project,
        "run",
        "--env",
        "dask",
        "--runner",
        DASK_RUNNER,
        "--pipelines",
        EXAMPLE_PIPELINES,
        timeout=240,
        **{RECORD_DIR_VARIABLE: str(record_dir)},
    )
    assert result.returncode == 0, result.describe() + secure_cluster.log_tails()
    assert f"Connected to the Dask scheduler at {secure_cluster.address}" in (
        result.output
    ), result.describe()

    # Every node ran, once, on a TLS worker of the cluster (RunRecorder's records).
    runs = recorded_nodes(record_dir)
    nodes = pipeline_node_names(security_project, EXAMPLE_PIPELINES)
    assert sorted(run["node"] for run in runs) == nodes, runs
    for run in runs:
        assert run["worker"].startswith("tls://"), run
        assert run["worker_name"] in secure_cluster.worker_names, run

    # And produced what the SequentialRunner does.
    assert_same_outputs(sequential_project, security_project)


def test_kedro_dask_commands_start_a_tls_cluster(
    rendered_project, sequential_project, tls, tmp_path
):
    """``kedro dask scheduler`` and ``kedro dask worker`` take the TLS files of
    ``dask_client.security``: the cluster they form accepts only TLS clients, and
    ``kedro run`` runs the example pipeline on it."""
    project = copy_project(rendered_project, tmp_path / "project")
    address = f"tls://{LOOPBACK}:{free_port()}"
    security = {
        **client_security(tls),
        "tls_scheduler_cert": str(tls["cluster_cert"]),
        "tls_scheduler_key": str(tls["cluster_key"]),
        "tls_worker_cert": str(tls["cluster_cert"]),
        "tls_worker_key": str(tls["cluster_key"]),
    }
    (project / "conf" / "tlscli").mkdir()
    (project / "conf" / "tlscli" / "parameters.yml").write_text(
        yaml.safe_dump({"dask_client": {"address": address, "security": security}})
    )
    with kedro_dask_cluster(
        project,
        "tlscli",
        address,
        ["w1"],
        tmp_path / "logs",
        security=Security(**client_security(tls)),
    ) as cluster:
        result = kedro_run(
            project, "run", "--env", "tlscli", "--runner", DASK_RUNNER, timeout=240
        )
        logs = cluster.log_texts()
        tails = cluster.log_tails()
    assert result.returncode == 0, result.describe() + tails
    assert f"Connected to the Dask scheduler at {address}" in result.output
    # The command each process ran, as the project built it.
    flags = f"--tls-ca-file {tls['ca']} --tls-cert {tls['cluster_cert']}"
    assert "dask scheduler --protocol tls --host 127.0.0.1" in logs["scheduler"]
    assert f"dask worker {address} {flags}" in logs["w1"], tails
    assert_same_outputs(sequential_project, project)


# name -> (conf environment, address given the TLS one, what the run must say)
TLS_MISMATCHES = {
    # security.require_encryption, but a tcp:// address (a scheme typo, say)
    "tcp_address_with_require_encryption": (
        "dask",
        lambda address: address.replace("tls://", "tcp://"),
    ),
    # a tls:// address, but no security block to give certificates
    "tls_address_without_security": ("tlsnosec", lambda address: address),
}


@pytest.fixture(scope="module")
def tls_mismatch_runs(secure_cluster, security_project):
    def run(case: str):
        env, make_address = TLS_MISMATCHES[case]
        address = make_address(secure_cluster.address)
        result = kedro_run(
            security_project,
            "run",
            "--env",
            env,
            "--runner",
            DASK_RUNNER,
            "--pipelines",
            "slowsave",
            "--params",
            f"dask_client.address={address}",
            timeout=120,
        )
        return address, result

    with ThreadPoolExecutor(max_workers=len(TLS_MISMATCHES)) as pool:
        return dict(zip(TLS_MISMATCHES, pool.map(run, TLS_MISMATCHES), strict=True))


@pytest.mark.parametrize("case", list(TLS_MISMATCHES))
def test_tls_misconfiguration_is_one_clear_error(case, tls_mismatch_runs):
    """A scheme the TLS settings contradict is a configuration error: one line
    naming the address, promptly, not a traceback."""
    address, result = tls_mismatch_runs[case]
    assert_one_clear_error(result, address)
    assert result.duration < 20, f"{result.duration:.1f} s\n{result.describe()}"


def test_credentials_never_reach_any_log(secure_cluster, security_project, tmp_path):
    """A node fails after its credentialed dataset was saved and loaded on the
    workers: the secret is nowhere in the output, info.log or the Dask logs."""
    info_log = security_project / "info.log"
    info_log.unlink(missing_ok=True)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    result = kedro_run(
        security_project,
        "run",
        "--runner",
        DASK_RUNNER,
        "--pipelines",
        "secrets",
        timeout=180,
        **{RECORD_DIR_VARIABLE: str(hooks)},
    )
    described = result.describe() + secure_cluster.log_tails()
    # The failure happened where intended: on a worker, after the dataset (which
    # needs the secret) was written and read there.
    assert result.returncode != 0, described
    assert "failing on purpose after reading 200 rows" in result.output, described
    errors = read_jsonl(hooks / "on_node_error.jsonl")
    assert [e["node"] for e in errors] == ["read_secret_store_node"], errors
    assert errors[0]["worker"].startswith("tls://"), errors
    assert (security_project / "data" / "07_model_output" / "secret_store.csv").exists()

    logs = {"kedro run output": result.output}
    assert info_log.exists(), "the run wrote no info.log"
    logs["info.log"] = info_log.read_text(errors="replace")
    logs.update(secure_cluster.log_texts())
    worker_logs = "".join(t for n, t in logs.items() if n.startswith("w"))
    assert "read_secret_store_node" in worker_logs, "the workers logged no failure"
    leaked = [name for name, text in logs.items() if SECRET in text]
    assert not leaked, f"the secret appears in: {leaked}"


def _worker_security(tls: dict[str, Path]) -> dict[str, object]:
    """``dask_client.security`` with the worker's TLS files of ``tls``."""
    return {
        "tls_ca_file": str(tls["ca"]),
        "tls_worker_cert": str(tls["cluster_cert"]),
        "tls_worker_key": str(tls["cluster_key"]),
    }


@pytest.fixture(scope="module")
def plaintext_scheduler() -> Iterator[DaskCluster]:
    with start_cluster({}, worker_env=base_env()) as scheduler:
        yield scheduler


# name -> dask_client of `kedro dask worker`, given the TLS cluster's address,
# the plaintext scheduler's address and another CA's files
JOIN_FAILURES = {
    "nothing_listens": lambda tls_address, tcp_address, tls, other: {
        "address": f"tcp://{LOOPBACK}:{free_port()}"
    },
    "plaintext_worker_tls_scheduler": lambda tls_address, tcp_address, tls, other: {
        "address": tls_address.replace("tls://", "tcp://")
    },
    "tls_worker_plaintext_scheduler": lambda tls_address, tcp_address, tls, other: {
        "address": tcp_address.replace("tcp://", "tls://"),
        "security": _worker_security(tls),
    },
    "certificates_of_another_ca": lambda tls_address, tcp_address, tls, other: {
        "address": tls_address,
        "security": _worker_security(other),
    },
}


@pytest.mark.parametrize("case", list(JOIN_FAILURES))
def test_a_worker_that_cannot_join_is_one_line_within_the_timeout(
    case, secure_cluster, plaintext_scheduler, security_project, tls, tmp_path
):
    """``kedro dask worker`` where it cannot join the scheduler (nothing there,
    TLS on one side only, another CA): one line naming the address, within
    ``dask_client.timeout``; never a worker retrying for ever."""
    (tmp_path / "other-ca").mkdir()
    other = make_tls_files(tmp_path / "other-ca")
    dask_client = JOIN_FAILURES[case](
        secure_cluster.address, plaintext_scheduler.address, tls, other
    )
    env = f"join_{case}"
    (security_project / "conf" / env).mkdir()
    (security_project / "conf" / env / "parameters.yml").write_text(
        yaml.safe_dump({"dask_client": {**dask_client, "timeout": 5}})
    )
    result = kedro_run(security_project, "dask", "worker", "--env", env, timeout=60)
    assert_one_clear_error(result, dask_client["address"], "cannot join")
    assert result.duration < 20, f"{result.duration:.1f} s\n{result.describe()}"
