"""Fixtures of the DaskRunner tests.

One real ``distributed.LocalCluster`` (two worker processes, one thread each, all on
127.0.0.1) is started for the whole test session; tests connect to it by address so
that no test pays for starting its own cluster. Worker processes are spawned with
this process's ``sys.path``, so they import node functions and hooks from the test
modules by name, exactly as they import a project's nodes.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from distributed import Client, LocalCluster

# Seconds to wait for something the cluster does asynchronously (releasing keys).
SETTLE_TIMEOUT = 15


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[LocalCluster]:
    """The real Dask cluster shared by every test that needs one."""
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def client_args(dask_cluster: LocalCluster) -> dict[str, Any]:
    """``client_args`` that make a ``DaskRunner`` use the session cluster."""
    return {"address": dask_cluster.scheduler_address}


@pytest.fixture
def inspector(dask_cluster: LocalCluster) -> Iterator[Client]:
    """A client to look at the session cluster; never the default client."""
    with Client(
        dask_cluster.scheduler_address, set_as_default=False, timeout=10
    ) as client:
        yield client


@pytest.fixture
def worker_addresses(inspector: Client) -> set[str]:
    """Addresses of the session cluster's workers."""
    return set(inspector.scheduler_info()["workers"])


def scheduler_task_keys(dask_scheduler: Any) -> list[Any]:
    """Every key the scheduler knows (run with ``run_on_scheduler``)."""
    return list(dask_scheduler.tasks)


def scheduler_keys_in_memory(dask_scheduler: Any) -> list[Any]:
    """Keys whose data the cluster holds (run with ``run_on_scheduler``)."""
    return [key for key, ts in dask_scheduler.tasks.items() if ts.state == "memory"]


def of_run(key: Any, token: str) -> bool:
    """Whether ``key``, ``(<group>-<token>, <name>)``, is of the run ``token``."""
    return isinstance(key, tuple) and key[0].endswith(f"-{token}")


def wait_until(condition: Callable[[], bool], timeout: float = SETTLE_TIMEOUT) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
