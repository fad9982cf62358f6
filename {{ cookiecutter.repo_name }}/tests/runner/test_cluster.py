"""``DaskCluster`` and ``validate_client_args``: where a run's cluster comes from."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing.spawn
import os
import re
import resource
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import dask.config
import psutil
import pytest
from distributed import Client, LocalCluster
from distributed.core import Status

from {{ cookiecutter.python_package }}.runner import (
    DaskClusterError,
    DaskRunner,
    local_workers,
    worker_setup,
)
from {{ cookiecutter.python_package }}.runner import cluster as cluster_module
from {{ cookiecutter.python_package }}.runner.cluster import (
    DaskCluster,
    _no_main_rerun,
    validate_client_args,
)
from {{ cookiecutter.python_package }}.runner.interrupts import ctrl_c_never_lost

from .conftest import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]

LOCALHOST_TCP = "tcp://127.0.0.1:"
LOCALHOST_TLS = "tls://127.0.0.1:"
# Not loopback, never reached: every test using it fails if anything connects.
REMOTE = "tcp://10.0.0.5:8786"


def square(x: int) -> int:
    return x * x


def busy(seconds: float) -> int:
    """Like most node code, cannot be interrupted by Dask once running."""
    time.sleep(seconds)
    return 0


def strangers_connect(address: str) -> dict[str, bool]:
    """Whether each kind of client of another process connects to ``address``
    (``tests/runner/strangers.py``)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.runner.strangers", address],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def scheduler_clients(dask_scheduler) -> set[str]:
    """The clients the scheduler knows (run with ``run_on_scheduler``)."""
    return set(dask_scheduler.clients) - {"fire-and-forget"}


def sigint_ignored() -> bool:
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


# --------------------------------------------------------------------------- #
# validate_client_args
# --------------------------------------------------------------------------- #
def test_no_client_args_is_empty():
    assert validate_client_args(None) == {}
    assert validate_client_args({}) == {}


@pytest.mark.parametrize("value", ["tcp://127.0.0.1:8786", ["address"], 3])
def test_client_args_must_be_a_mapping(value):
    with pytest.raises(DaskClusterError, match="mapping") as excinfo:
        validate_client_args(value)

    assert type(value).__name__ in str(excinfo.value)


def test_unknown_option_is_named():
    with pytest.raises(DaskClusterError, match="'n_wrokers'"):
        validate_client_args({"n_wrokers": 2})


def test_address_with_local_cluster_option_names_the_option():
    with pytest.raises(DaskClusterError) as excinfo:
        validate_client_args({"address": "tcp://127.0.0.1:8786", "n_workers": 2})

    message = str(excinfo.value)
    assert "'n_workers'" in message
    assert "'address'" in message


@pytest.mark.parametrize(
    "client_args",
    [
        {"address": "tcp://127.0.0.1:8786", "timeout": 3, "worker_wait": 5},
        {"scheduler_file": "scheduler.json", "name": "kedro"},
        {"n_workers": 2, "threads_per_worker": 1, "processes": False},
        {"memory_limit": "1GiB", "dashboard_address": ":0", "timeout": 3},
        {"address": REMOTE, "allow_insecure": True},
    ],
)
def test_valid_client_args_pass_unchanged(client_args):
    assert validate_client_args(client_args) == client_args


def test_allow_insecure_must_be_true_or_false():
    with pytest.raises(DaskClusterError, match="'allow_insecure' must be true or"):
        validate_client_args({"address": REMOTE, "allow_insecure": "yes"})


def test_runner_checks_client_args_when_created():
    with pytest.raises(DaskClusterError, match="'bogus'"):
        DaskRunner(client_args={"bogus": 1})


# --------------------------------------------------------------------------- #
# connect
# --------------------------------------------------------------------------- #
def test_address_connects_to_that_scheduler_and_closes_the_client(dask_cluster):
    cluster = DaskCluster({"address": dask_cluster.scheduler_address, "timeout": 10})

    with cluster.connect() as (client, _):
        assert client.status == "running"
        assert client.scheduler.address == dask_cluster.scheduler_address
        assert len(client.scheduler_info()["workers"]) == 2
        assert client.submit(square, 7).result(timeout=30) == 49

    assert client.status == "closed"
    # Only the client was closed: the scheduler it connected to still runs.
    assert dask_cluster.status == Status.running


def test_client_is_closed_when_the_block_fails(dask_cluster):
    cluster = DaskCluster({"address": dask_cluster.scheduler_address})

    with pytest.raises(KeyError), cluster.connect() as (client, _):
        raise KeyError("a failing run")

    assert client.status == "closed"


def test_local_cluster_options_start_a_cluster_on_localhost_only():
    cluster = DaskCluster(
        {"n_workers": 1, "threads_per_worker": 1, "processes": True, "timeout": 30}
    )

    with cluster.connect() as (client, _):
        local_cluster = client.cluster
        assert isinstance(local_cluster, LocalCluster)
        assert client.scheduler.address.startswith(LOCALHOST_TLS)
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 1
        assert all(address.startswith(LOCALHOST_TLS) for address in workers)
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        assert client.submit(square, 3).result(timeout=30) == 9

    assert client.status == "closed"
    assert local_cluster.status == Status.closed


def test_only_this_run_can_submit_to_its_local_cluster():
    """Any local user reaches 127.0.0.1: without this run's temporary credentials
    (held in its memory only), a client cannot talk to the scheduler at all."""
    cluster = DaskCluster({"n_workers": 1, "dashboard_address": "127.0.0.1:0"})

    with cluster.connect() as (client, _):
        address = client.scheduler.address
        assert client.submit(square, 5).result(timeout=30) == 25
        assert strangers_connect(address) == {
            "plaintext": False,
            "tls without credentials": False,
            "other credentials": False,
        }
        clients = client.run_on_scheduler(scheduler_clients)
        assert clients == {client.id}, clients


def test_ctrl_c_closes_the_local_cluster_without_waiting_for_its_nodes():
    """Ctrl-C reaches the worker processes too (one process group): they leave it
    to the driver, which kills them at once rather than after Dask's 4 s."""
    cluster = DaskCluster(
        {
            "n_workers": 1,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": "127.0.0.1:0",
            "timeout": 30,
        }
    )

    with pytest.raises(KeyboardInterrupt), cluster.connect() as (client, _):
        local_cluster = client.cluster
        assert all(client.run(sigint_ignored).values())
        worker_pids = list(client.run(os.getpid).values())
        future = client.submit(busy, 60, pure=False)
        deadline = time.monotonic() + 30
        while not any(client.processing().values()):
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.05)
        time.sleep(0.2)  # the worker thread is in time.sleep
        start = time.monotonic()
        raise KeyboardInterrupt
    elapsed = time.monotonic() - start

    assert future.status != "finished"
    assert client.status == "closed"
    assert local_cluster.status == Status.closed
    assert elapsed < 3, f"closed {elapsed:.1f} s after the interrupt"
    assert not [pid for pid in worker_pids if psutil.pid_exists(pid)]


def test_a_cluster_started_early_is_the_one_connect_hands_over():
    """``start_early`` starts the embedded LocalCluster while Kedro loads the
    project; ``connect`` waits for that very cluster rather than starting
    another, and closes it at the end."""
    cluster = DaskCluster({"n_workers": 1, "threads_per_worker": 1, "timeout": 30})
    before = {c.pid for c in psutil.Process().children(recursive=True)}  # others
    cluster.start_early()
    cluster.start_early()  # once only
    # Dask's GC callbacks in this process would swallow a Ctrl-C meanwhile.
    assert ctrl_c_never_lost.held
    started = _wait_for_worker_process(psutil.Process(), before)
    # The worker process starts with SIGINT blocked, so that a Ctrl-C while it
    # imports Dask does not reach it (``worker_setup`` then ignores it).
    blocked = re.search(
        r"SigBlk:\s*([0-9a-f]+)", Path(f"/proc/{started}/status").read_text()
    )
    assert blocked and int(blocked.group(1), 16) & 1 << (signal.SIGINT - 1)

    with cluster.connect() as (client, workers_are_local):
        assert workers_are_local
        assert client.submit(square, 3).result(timeout=30) == 9
        worker_pids = set(client.run(os.getpid).values())
        assert worker_pids == {started}  # the process started early, no other
        local_cluster = client.cluster

    assert local_cluster.status == Status.closed
    assert not ctrl_c_never_lost.held
    assert wait_for(lambda: not any(psutil.pid_exists(p) for p in worker_pids))


_NEVER_USED = """
import importlib, sys, time, psutil
DaskCluster = importlib.import_module(sys.argv[1]).DaskCluster
cluster = DaskCluster(dict(n_workers=2, threads_per_worker=1))
cluster.start_early()
deadline = time.monotonic() + 60
while len(psutil.Process().children(recursive=True)) < 4:  # tracker, forkserver,
    assert time.monotonic() < deadline  # two workers
    time.sleep(0.05)
print(" ".join(str(c.pid) for c in psutil.Process().children(recursive=True)))
"""


def _fresh_process(script: str, timeout: float) -> subprocess.CompletedProcess:
    """``script`` run by a new Python, its first argument the cluster module's
    name; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-c", script, DaskCluster.__module__],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_a_cluster_started_early_and_never_used_is_closed_at_exit():
    """A runner built and never run (``kedro run`` failing on bad input after
    building it) leaves no worker process behind once the process exits."""
    result = _fresh_process(_NEVER_USED, timeout=120)
    pids = [int(pid) for pid in result.stdout.split()]
    assert len(pids) >= 4, result.stdout + result.stderr
    assert wait_for(lambda: not any(psutil.pid_exists(p) for p in pids)), pids
    assert "Traceback" not in result.stderr, result.stderr


_TWO_CLUSTERS = """
import importlib, json, os, sys, psutil
DaskCluster = importlib.import_module(sys.argv[1]).DaskCluster
parents = []
for _ in range(2):
    with DaskCluster(dict(n_workers=1, threads_per_worker=1)).connect() as (client, _):
        [pid] = client.run(os.getpid).values()
        parents.append(" ".join(psutil.Process(pid).parent().cmdline()))
print(json.dumps(parents))
"""


def test_the_first_cluster_of_a_process_forks_its_workers_later_ones_spawn():
    """``kedro run``'s one cluster forks its workers from a forkserver that has
    imported Dask once; a second cluster in the same process (a notebook's next
    run) spawns them, so that they see the process's environment as it is then,
    not as the forkserver kept it."""
    result = _fresh_process(_TWO_CLUSTERS, timeout=180)
    first, second = json.loads(result.stdout.splitlines()[-1])
    assert "forkserver" in first, first
    assert "forkserver" not in second, second


_DASK_PRELOADS = """
import importlib, json, sys, dask.config, distributed
package = sys.argv[1].rpartition(".")[0]
forkserver = importlib.import_module(package + ".forkserver")
dask.config.config["distributed"]["worker"]["multiprocessing-method"] = "METHOD"
before = "pandas" in sys.modules
forkserver.import_dask_preloads()
print(json.dumps([before, "pandas" in sys.modules]))
"""


@pytest.mark.parametrize(
    "method, imported",
    [("spawn", True), ("forkserver", True), ("fork", False)],
)
def test_dask_preloads_imported_first_when_workers_fork_from_a_forkserver(
    method, imported
):
    """A cluster starting in the background has the main thread import what
    Dask's ``get_mp_context`` will import in the cluster's thread: Dask's
    forkserver preloads (pandas), when the workers fork from a forkserver, ours
    (Dask's default ``spawn``) or one the user's configuration asks for."""
    result = _fresh_process(_DASK_PRELOADS.replace("METHOD", method), timeout=120)
    before, after = json.loads(result.stdout.splitlines()[-1])
    assert not before
    assert after is imported


def _with_modules(modules: dict[str, str], script: str) -> str:
    """``script``, for a fresh process, run with ``modules`` (name: source)
    importable from a temporary folder."""
    return (
        "import pathlib, sys, tempfile\n"
        "folder = pathlib.Path(tempfile.mkdtemp())\n"
        f"for name, source in {modules!r}.items():\n"
        "    (folder / f'{name}.py').write_text(source)\n"
        "sys.path.insert(0, str(folder))\n"
    ) + script


_FORKSERVER_STARTED_FIRST = _with_modules(
    {"probe_module": "", "broken_at_import": "raise RuntimeError('boom')"},
    """
import importlib, json, os, sys, psutil
local_workers = importlib.import_module(sys.argv[2] + ".local_workers")
from kedro.framework.project import configure_project
configure_project(sys.argv[2].rpartition(".")[0])  # as bootstrap_project does
environ = dict(os.environ)
local_workers.start_worker_forkserver({}, ["probe_module", "broken_at_import"])
assert dict(os.environ) == environ  # the driver's, as it was
assert "distributed" not in sys.modules  # kedro run imports it after the start
cluster = importlib.import_module(sys.argv[1])
from kedro.framework.project import LOGGING
LOGGING.configure(LOGGING.data)  # as kedro run does, distributed imported

def state(names):
    return {
        "imported": sorted(name for name in names if name in sys.modules),
        "parent": " ".join(psutil.Process().parent().cmdline()),
        "hash": hash("kedro"),
        "pythonpath": os.environ.get("PYTHONPATH"),
        "project": sys.modules["kedro.framework.project"].PACKAGE_NAME,
    }

names = ["probe_module", "broken_at_import", sys.argv[2] + ".worker"]
names += ["kedro.pipeline", "pandas"]
args = dict(n_workers=2, threads_per_worker=1)
with cluster.DaskCluster(args).connect() as (client, _):
    print(json.dumps([environ.get("PYTHONPATH"), *client.run(state, names).values()]))
""",
)


def test_a_forkserver_started_first_imports_what_workers_need_once():
    """``kedro run`` starts the forkserver before it imports distributed and
    Kedro loads the project: the workers forked from it have Dask's preloads
    (pandas), the runner's worker side (with Kedro) and the modules asked for
    imported before their first task (the driver's path, not only its
    ``PYTHONPATH``), a module that fails to import left out, the Kedro project
    configured, the driver's environment, and the same string hashes (Dask's
    fixed hash seed)."""
    package = cluster_module.__name__.rpartition(".")[0]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _FORKSERVER_STARTED_FIRST,
            cluster_module.__name__,
            package,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    pythonpath, *workers = json.loads(result.stdout.splitlines()[-1])
    assert len(workers) == 2
    for worker in workers:
        assert worker["imported"] == sorted(
            ["kedro.pipeline", "pandas", "probe_module", f"{package}.worker"]
        ), worker
        assert "forkserver" in worker["parent"], worker
        assert worker["project"] == package.rpartition(".")[0], worker
        assert worker["pythonpath"] == pythonpath  # the driver's environment
    assert workers[0]["hash"] == workers[1]["hash"]
    assert "boom" not in result.stderr, result.stderr


_DRIVER_GONE_EARLY = _with_modules(
    {
        "slow_first": "import time; time.sleep(3)",
        "slow_then": "import time; time.sleep(120)",
    },
    """
import importlib, multiprocessing.forkserver, sys
local_workers = importlib.import_module(sys.argv[1] + ".local_workers")
local_workers.start_worker_forkserver({}, ["slow_first", "slow_then"])
print(multiprocessing.forkserver._forkserver._forkserver_pid, flush=True)
""",
)


def test_a_forkserver_whose_driver_is_gone_stops_importing():
    """A driver that ends while its forkserver still imports (bad input found
    after the start, Ctrl-C): the forkserver stops at its next import instead of
    importing on (here, a two-minute module) with the driver's output, which it
    shares, held open: ``kedro run | tee`` would wait for it."""
    package = cluster_module.__name__.rpartition(".")[0]
    # Returns once the driver's output is closed: by every process holding it.
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER_GONE_EARLY, package],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split()[-1])
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(pid), "the forkserver still imports for a driver gone"


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for_worker_process(process: psutil.Process, before: set[int]) -> int:
    """The pid of the first worker process started under ``process`` besides
    ``before``: spawned, or forked by multiprocessing's forkserver."""
    deadline = time.monotonic() + 60
    while True:
        for child in process.children(recursive=True):
            if child.pid in before:
                continue
            with contextlib.suppress(psutil.Error):
                if "spawn_main" in " ".join(child.cmdline()) or (
                    child.ppid() != process.pid
                    and "forkserver" in " ".join(child.parent().cmdline())
                ):
                    return child.pid
        assert time.monotonic() < deadline, "the early cluster never started"
        time.sleep(0.05)


def wait_for(condition, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_in_process_local_cluster_starts():
    """``processes: false`` is a documented LocalCluster option; with it Dask
    defaults to the in-process ``inproc://`` transport, which the runner's
    127.0.0.1 host default must not break."""
    cluster = DaskCluster({"n_workers": 1, "processes": False, "timeout": 30})

    with cluster.connect() as (client, _):
        assert client.submit(square, 4).result(timeout=30) == 16
        address = client.scheduler.address
        assert address.startswith(("inproc://", LOCALHOST_TCP)), address

    assert client.status == "closed"


def test_current_client_is_reused_and_left_open(dask_cluster):
    with Client(dask_cluster.scheduler_address, timeout=10) as current:
        for client_args in (None, {}, {"timeout": 5}):
            with DaskCluster(client_args).connect() as (client, _):
                assert client is current
            assert current.status == "running"


def test_dask_config_scheduler_address_is_used(dask_cluster):
    address = dask_cluster.scheduler_address
    with dask.config.set({"scheduler-address": address}):
        with DaskCluster().connect() as (client, _):
            assert client.scheduler.address == address
    assert client.status == "closed"


# --------------------------------------------------------------------------- #
# Plaintext beyond loopback: decided before anything connects
# --------------------------------------------------------------------------- #
@pytest.fixture
def no_connection(monkeypatch) -> list[dict]:
    """``distributed.Client`` as the cluster module sees it: records how it was
    called and connects nowhere (raises as an unreachable scheduler does)."""
    calls: list[dict] = []

    def client(*args, **kwargs):
        calls.append({"args": args, **kwargs})
        raise OSError("not connecting in this test")

    monkeypatch.setattr(cluster_module, "Client", client)
    # No client of this process to reuse, whatever an earlier test left.
    monkeypatch.setattr(local_workers, "current_client", lambda: None)
    return calls


@pytest.mark.parametrize(
    "client_args",
    [
        {"address": REMOTE},
        {"address": REMOTE.replace("tcp://", "ws://")},
        {"address": "10.0.0.5:8786"},  # tcp:// by default
        {"address": "tcp://0.0.0.0:8786"},
    ],
)
def test_plaintext_beyond_loopback_is_refused_before_connecting(
    client_args, no_connection
):
    with pytest.raises(DaskClusterError) as excinfo, DaskCluster(client_args).connect():
        pytest.fail("connected")

    message = str(excinfo.value)
    assert message.startswith("Refusing plaintext"), message
    assert client_args["address"] in message
    assert "dask_client.security" in message
    assert "dask_client.allow_insecure: true" in message
    assert no_connection == []


def test_the_dask_config_address_is_refused_likewise(no_connection):
    with dask.config.set({"scheduler-address": REMOTE}):
        with pytest.raises(DaskClusterError, match="Refusing plaintext"):
            with DaskCluster().connect():
                pytest.fail("connected")

    assert no_connection == []


def test_the_address_of_a_scheduler_file_is_refused_likewise(no_connection, tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    scheduler_file.write_text(json.dumps({"address": REMOTE}))

    with pytest.raises(DaskClusterError, match="Refusing plaintext"):
        with DaskCluster({"scheduler_file": str(scheduler_file)}).connect():
            pytest.fail("connected")

    assert no_connection == []


def test_allow_insecure_connects_with_one_warning(no_connection, caplog):
    cluster = DaskCluster({"address": REMOTE, "allow_insecure": True, "timeout": 1})

    with caplog.at_level(logging.WARNING), pytest.raises(DaskClusterError) as excinfo:
        with cluster.connect():
            pytest.fail("the stand-in client connected")

    assert "Cannot connect" in str(excinfo.value)  # it tried: allowed
    [call] = no_connection
    assert call["address"] == REMOTE
    assert "allow_insecure" not in call  # a runner option, not Dask's
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"travel in plaintext to the scheduler at {REMOTE}" in warnings[0]


class PlaintextCluster:
    """A started cluster whose scheduler listens in plaintext beyond loopback."""

    instances: list[PlaintextCluster] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.scheduler_address = REMOTE
        self.closed = False
        self.adapted = None
        PlaintextCluster.instances.append(self)

    def adapt(self, **kwargs):
        self.adapted = kwargs

    def close(self):
        self.closed = True


@pytest.mark.parametrize("allow_insecure", [False, True])
def test_a_started_cluster_listening_in_plaintext_is_refused_and_closed(
    allow_insecure, no_connection, caplog
):
    PlaintextCluster.instances.clear()
    cluster_block = {
        "class": f"{__name__}.PlaintextCluster",
        "kwargs": {"cores": 1},
        "adapt": {"maximum": 2},
    }
    cluster = DaskCluster({"cluster": cluster_block, "allow_insecure": allow_insecure})

    expected = OSError if allow_insecure else DaskClusterError
    with caplog.at_level(logging.WARNING), pytest.raises(expected) as excinfo:
        with cluster.connect():
            pytest.fail("connected")

    [started] = PlaintextCluster.instances
    assert started.closed
    if allow_insecure:  # allowed: scaled, then the (stand-in) client tried
        assert "not connecting in this test" in str(excinfo.value)
        assert started.adapted == {"maximum": 2}
        assert len(no_connection) == 1
        assert "to the PlaintextCluster started at" in caplog.text
    else:  # refused before scaling or connecting
        assert str(excinfo.value).startswith(
            f"Refusing plaintext tcp:// to the PlaintextCluster started at {REMOTE}"
        )
        assert started.adapted is None
        assert no_connection == []


def test_a_local_cluster_block_with_security_true_talks_tls():
    """The documented TLS example for ``cluster:`` classes, with LocalCluster."""
    cluster_block = {
        "class": "distributed.LocalCluster",
        "kwargs": {"n_workers": 1, "host": "127.0.0.1", "security": True},
    }
    with DaskCluster({"cluster": cluster_block}).connect() as (client, _):
        assert client.scheduler.address.startswith(LOCALHOST_TLS)
        assert client.submit(square, 6).result(timeout=30) == 36
        assert not strangers_connect(client.scheduler.address)["plaintext"]


def test_unreachable_address_fails_in_bounded_time():
    address = f"tcp://127.0.0.1:{free_port()}"
    cluster = DaskCluster({"address": address, "timeout": 2})

    start = time.monotonic()
    with pytest.raises(DaskClusterError) as excinfo, cluster.connect():
        pytest.fail("connected to a scheduler that does not exist")
    elapsed = time.monotonic() - start

    assert address in str(excinfo.value)
    assert elapsed < 15, f"gave up after {elapsed:.1f} s with timeout 2 s"


def test_scheduler_without_workers_fails_the_run_in_bounded_time():
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Pipeline, node

    with LocalCluster(
        n_workers=0,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as empty:
        runner = DaskRunner(
            client_args={"address": empty.scheduler_address, "worker_wait": 1}
        )
        catalog = DataCatalog(datasets={"x": MemoryDataset(2)})
        start = time.monotonic()
        with pytest.raises(DaskClusterError, match="worker") as excinfo:
            runner.run(Pipeline([node(square, "x", "y", name="square")]), catalog)
        elapsed = time.monotonic() - start

    assert empty.scheduler_address in str(excinfo.value)
    assert elapsed < 15


# --------------------------------------------------------------------------- #
# The worker processes of the runner's LocalCluster (worker_setup)
# --------------------------------------------------------------------------- #
def log_on_worker(marker: str) -> None:
    """What a worker process's Dask logs: INFO is kept out, WARNING shows."""
    logger = logging.getLogger("distributed.worker")
    logger.info("%s info", marker)
    logger.warning("%s warning", marker)


def worker_process_state() -> dict:
    main = sys.modules["__main__"]
    return {
        "main": getattr(main, "__file__", None),
        "distributed_level": logging.getLogger("distributed").getEffectiveLevel(),
        "kedro_cli": "kedro.framework.cli" in sys.modules,
    }


def test_local_cluster_workers_keep_dask_info_out_and_show_warnings(capfd):
    """The worker processes share the console: Dask's INFO banners stay out of it
    from the start (nothing of it is printed), its warnings still show."""
    cluster = DaskCluster({"n_workers": 1, "dashboard_address": "127.0.0.1:0"})
    before = dict(os.environ)

    with cluster.connect() as (client, _):
        [state] = client.run(worker_process_state).values()
        client.run(log_on_worker, "kedro-dask-marker")

    assert state["distributed_level"] >= logging.WARNING, state
    assert not state["kedro_cli"], state
    err = capfd.readouterr().err
    assert "kedro-dask-marker warning" in err
    assert "kedro-dask-marker info" not in err
    for banner in ("Start worker at", "Registered to", "preload", "Stopping worker"):
        assert banner not in err, err
    # Dask's own pre-spawn-environ (OMP_NUM_THREADS, ...) stays set here, as Dask
    # documents; the runner's own variables for the workers do not.
    for name in local_workers._WORKER_ENVIRON:
        assert os.environ.get(name) == before.get(name), name


def page_faults_of_array_churn() -> int:
    """Minor page faults of allocating and freeing ten 96 KiB arrays, 200 times."""
    import numpy as np

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(200):
        arrays = [np.ones(12_000) for _ in range(10)]
        del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def pad_and_faults_of_a_worker(**pre_spawn_environ: str) -> tuple[str, int]:
    """An embedded cluster's worker's ``MALLOC_TOP_PAD_`` and its page faults of
    ``page_faults_of_array_churn``, with ``pre_spawn_environ`` set in Dask's
    configuration as a user would."""
    args = {"n_workers": 1, "dashboard_address": "127.0.0.1:0"}
    key = "distributed.nanny.pre-spawn-environ"
    users = {f"{key}.{name}": value for name, value in pre_spawn_environ.items()}
    with dask.config.set(users), DaskCluster(args).connect() as (client, _):
        [pad] = client.run(os.getenv, "MALLOC_TOP_PAD_").values()
        [faults] = client.run(page_faults_of_array_churn).values()
    return pad, faults


def test_local_cluster_workers_keep_freed_memory_for_their_next_arrays():
    """Dask's MALLOC_TRIM_THRESHOLD_ alone gives freed arrays back to the OS, and
    each round faults some of their pages in again (2,800-40,000 faults, from run
    to run and machine to machine); the runner's MALLOC_TOP_PAD_ keeps them for
    the next round (50-200). One set by the user wins."""
    pad, faults = pad_and_faults_of_a_worker()
    users_pad, users_faults = pad_and_faults_of_a_worker(MALLOC_TOP_PAD_="131072")
    assert (pad, users_pad) == (str(64 * 2**20), "131072")
    assert faults < 3_000, faults
    assert users_faults > 10 * max(faults, 100), (faults, users_faults)


def launcher_module(**names: object) -> types.ModuleType:
    """A main module as a console script (``kedro``) is: a file, no spec."""
    main = types.ModuleType("__main__")
    main.__file__ = "/venv/bin/kedro"
    main.__spec__ = None
    main.sys = sys
    main.__dict__.update(names)
    return main


def defined_in_main() -> None:
    """A function of a script that multiprocessing must run again to unpickle."""


defined_in_main.__module__ = "__main__"


def test_a_launcher_script_is_not_run_again_in_worker_processes(monkeypatch):
    main = launcher_module(main=square)  # imported, as ``kedro`` imports its CLI
    monkeypatch.setitem(sys.modules, "__main__", main)

    with _no_main_rerun():
        data = multiprocessing.spawn.get_preparation_data("worker")
        assert "init_main_from_path" not in data
        assert data["init_main_from_name"] == "__main__"  # which spawn skips
    assert main.__spec__ is None


def test_a_script_defining_functions_is_run_again_as_dask_would(monkeypatch):
    main = launcher_module(func=defined_in_main)
    monkeypatch.setitem(sys.modules, "__main__", main)

    with _no_main_rerun():
        data = multiprocessing.spawn.get_preparation_data("worker")
        assert data["init_main_from_path"].endswith("kedro")
    assert main.__spec__ is None


def record(logger_name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(logger_name, logging.ERROR, __file__, 1, msg, args, None)


RUN_KEY = ("train_model-0123456789abcdef0123456789abcdef", "train_model_node")


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        (RUN_KEY, False),
        (("kedro-input-0123456789abcdef0123456789abcdef", "params:x"), False),
        ("inc-0123456789abcdef0123456789abcdef", True),  # a node's own Dask task
        (("array-0123456789abcdef0123456789abcdef", 0), True),
    ],
)
def test_compute_failed_is_dropped_for_the_tasks_of_a_run_only(key, shown):
    worker_setup.set_up_logging()
    worker_setup.set_up_logging()  # idempotent: one filter per logger
    logger = logging.getLogger("distributed.worker")
    failed = record(logger.name, "Compute Failed\nKey: %s\n", key, "state", "task")

    assert len(logger.filters) == len({type(f) for f in logger.filters})
    assert logger.filter(failed) is shown
    assert logger.filter(record(logger.name, "Worker is at 95%% memory")) is True


def test_a_failed_heartbeat_to_the_gone_scheduler_is_dropped_on_workers():
    """A worker still busy with a node when an interrupted run closes the
    scheduler outlives it until killed: its failed heartbeat is not printed."""
    worker_setup.set_up_logging()
    logger = logging.getLogger("distributed.worker")
    heartbeat = "Failed to communicate with scheduler during heartbeat."

    assert logger.filter(record(logger.name, heartbeat)) is False
    assert logger.filter(record(logger.name, "Heartbeat took %s", "3s")) is True


def test_kedro_logging_note_is_dropped_on_workers():
    worker_setup.set_up_logging()
    logger = logging.getLogger("kedro.framework.project")
    note = (
        "Using 'conf/logging.yml' as logging configuration. You can change this "
        "by setting the KEDRO_LOGGING_CONFIG environment variable accordingly."
    )

    assert logger.filter(record(logger.name, note)) is False
    assert logger.filter(record(logger.name, "Something else")) is True
