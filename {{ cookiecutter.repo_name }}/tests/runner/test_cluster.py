"""``DaskCluster`` and ``validate_client_args``: where a run's cluster comes from."""

from __future__ import annotations

import os
import signal
import time

import dask.config
import psutil
import pytest
from distributed import Client, LocalCluster
from distributed.core import Status

from {{ cookiecutter.python_package }}.runner import DaskClusterError, DaskRunner
from {{ cookiecutter.python_package }}.runner.cluster import (
    DaskCluster,
    validate_client_args,
)

from .conftest import free_port

LOCALHOST_TCP = "tcp://127.0.0.1:"


def square(x: int) -> int:
    return x * x


def busy(seconds: float) -> int:
    """Like most node code, cannot be interrupted by Dask once running."""
    time.sleep(seconds)
    return 0


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
    ],
)
def test_valid_client_args_pass_unchanged(client_args):
    assert validate_client_args(client_args) == client_args


def test_runner_checks_client_args_when_created():
    with pytest.raises(DaskClusterError, match="'bogus'"):
        DaskRunner(client_args={"bogus": 1})


# --------------------------------------------------------------------------- #
# connect
# --------------------------------------------------------------------------- #
def test_address_connects_to_that_scheduler_and_closes_the_client(dask_cluster):
    cluster = DaskCluster({"address": dask_cluster.scheduler_address, "timeout": 10})

    with cluster.connect() as client:
        assert client.status == "running"
        assert client.scheduler.address == dask_cluster.scheduler_address
        assert len(client.scheduler_info()["workers"]) == 2
        assert client.submit(square, 7).result(timeout=30) == 49

    assert client.status == "closed"
    # Only the client was closed: the scheduler it connected to still runs.
    assert dask_cluster.status == Status.running


def test_client_is_closed_when_the_block_fails(dask_cluster):
    cluster = DaskCluster({"address": dask_cluster.scheduler_address})

    with pytest.raises(KeyError), cluster.connect() as client:
        raise KeyError("a failing run")

    assert client.status == "closed"


def test_local_cluster_options_start_a_cluster_on_localhost_only():
    cluster = DaskCluster(
        {"n_workers": 1, "threads_per_worker": 1, "processes": True, "timeout": 30}
    )

    with cluster.connect() as client:
        local_cluster = client.cluster
        assert isinstance(local_cluster, LocalCluster)
        assert client.scheduler.address.startswith(LOCALHOST_TCP)
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 1
        assert all(address.startswith(LOCALHOST_TCP) for address in workers)
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        assert client.submit(square, 3).result(timeout=30) == 9

    assert client.status == "closed"
    assert local_cluster.status == Status.closed


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

    with pytest.raises(KeyboardInterrupt), cluster.connect() as client:
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


def test_in_process_local_cluster_starts():
    """``processes: false`` is a documented LocalCluster option; with it Dask
    defaults to the in-process ``inproc://`` transport, which the runner's
    127.0.0.1 host default must not break."""
    cluster = DaskCluster({"n_workers": 1, "processes": False, "timeout": 30})

    with cluster.connect() as client:
        assert client.submit(square, 4).result(timeout=30) == 16
        address = client.scheduler.address
        assert address.startswith(("inproc://", LOCALHOST_TCP)), address

    assert client.status == "closed"


def test_current_client_is_reused_and_left_open(dask_cluster):
    with Client(dask_cluster.scheduler_address, timeout=10) as current:
        for client_args in (None, {}, {"timeout": 5}):
            with DaskCluster(client_args).connect() as client:
                assert client is current
            assert current.status == "running"


def test_dask_config_scheduler_address_is_used(dask_cluster):
    address = dask_cluster.scheduler_address
    with dask.config.set({"scheduler-address": address}):
        with DaskCluster().connect() as client:
            assert client.scheduler.address == address
    assert client.status == "closed"


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
