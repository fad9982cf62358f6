"""A cluster whose workers run another distributed than the driver.

Everything is real: a second virtual environment with another ``dask`` /
``distributed`` (and without kedro, numpy or pandas), a ``dask scheduler`` from
this environment and a ``dask worker`` from the other one, both on 127.0.0.1.
``check_versions`` must refuse that cluster in one line naming distributed and
both versions, before anything is submitted.

The second environment is built once per session (``pip install`` from the
package index: about 30 s on a 2-core machine).
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from distributed import Client
from distributed.versions import VersionMismatchWarning
from packaging.version import Version

from . import probes
from .conftest import (
    CLUSTER_START_TIMEOUT,
    DASK_RUNNER,
    PACKAGE,
    DaskCluster,
    _scheduler_address,
    _spawn,
    _stop,
    _wait_for_workers,
    assert_one_clear_error,
    base_env,
    copy_project,
    executed_keys_by_worker,
    kedro,
    run_cmd,
    scheduler_command,
)

VENV_TIMEOUT = 600  # python -m venv + pip install, on a slow mirror
DRIVER_DISTRIBUTED = version("distributed")


def other_distributed() -> str:
    """A distributed release of another minor version than this environment's:
    the lower bound of the requirements, or the newest at the time of writing
    when this environment is the lower-bounds run."""
    driver = Version(DRIVER_DISTRIBUTED).release[:2]
    return "2026.1.1" if driver != (2026, 1) else "2026.8.0"


OTHER_DISTRIBUTED = other_distributed()


@pytest.fixture(scope="session")
def other_python(tmp_path_factory) -> Path:
    """The Python of a virtual environment holding ``OTHER_DISTRIBUTED`` and the
    dask of the same version, nothing of the project."""
    venv = tmp_path_factory.mktemp("other-dask-venv") / "venv"
    start = time.monotonic()
    for args in (
        [sys.executable, "-m", "venv", venv],
        [
            *(venv / "bin" / "python", "-m", "pip", "install", "--quiet"),
            *(f"distributed=={OTHER_DISTRIBUTED}", f"dask=={OTHER_DISTRIBUTED}"),
        ],
    ):
        result = run_cmd(args, cwd=venv.parent, timeout=VENV_TIMEOUT)
        assert result.returncode == 0, result.describe()
    python = venv / "bin" / "python"
    result = run_cmd(
        [python, "-c", "import distributed; print(distributed.__version__)"],
        cwd=venv.parent,
        timeout=60,
    )
    assert result.output.strip() == OTHER_DISTRIBUTED, result.describe()
    print(f"second environment built in {time.monotonic() - start:.1f} s")
    return python


@contextlib.contextmanager
def mixed_cluster(other_python: Path, worker_cwd: Path) -> Iterator[DaskCluster]:
    """A ``dask scheduler`` from this environment and one single-threaded ``dask
    worker`` named ``old`` from ``other_python``'s, on 127.0.0.1. Yields once the
    worker has joined; stops both process groups on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="dask-mixed-"))
    scheduler_file = workdir / "scheduler.json"
    logs = {"scheduler": workdir / "scheduler.log", "old": workdir / "old.log"}
    procs = []
    try:
        procs.append(
            _spawn(
                scheduler_command(scheduler_file),
                logs["scheduler"],
                workdir,
                base_env(),
            )
        )
        cluster = DaskCluster("", procs[0], [], ["old"], logs)
        deadline = time.monotonic() + CLUSTER_START_TIMEOUT
        address = _scheduler_address(scheduler_file, procs[0], deadline)
        assert address, cluster.log_tails()
        cluster.address = address
        procs.append(
            _spawn(
                [
                    *(str(other_python), "-m", "dask", "worker", address),
                    *("--nthreads", "1", "--name", "old", "--host", "127.0.0.1"),
                    *("--dashboard-address", "127.0.0.1:0"),
                    *("--local-directory", str(workdir / "scratch")),
                    *("--death-timeout", "120"),  # exit if the scheduler is gone
                ],
                logs["old"],
                worker_cwd,
                base_env(),
            )
        )
        cluster.workers.append(procs[1])
        _wait_for_workers(cluster, deadline)
        yield cluster
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def assert_all_stopped(cluster: DaskCluster) -> None:
    for proc in (cluster.scheduler, *cluster.workers):
        assert proc.poll() is not None, f"process {proc.pid} still runs"


def assert_nothing_submitted(address: str) -> None:
    """No task ever reached the cluster: the scheduler has seen no task prefix
    and the worker executed nothing."""
    with Client(address, timeout=10, set_as_default=False) as client:
        seen = client.run_on_scheduler(probes.scheduler_state)
    assert seen["prefixes"] == [], seen
    assert executed_keys_by_worker(address) == {"old": []}


@pytest.fixture(scope="module")
def versions_module(rendered_project, tmp_path_factory):
    """The rendered project's ``runner.versions``, imported in this process."""
    project = copy_project(rendered_project, tmp_path_factory.mktemp("versions"))
    sys.path.insert(0, str(project / "src"))
    try:
        yield importlib.import_module(f"{PACKAGE}.runner.versions")
    finally:
        sys.path.remove(str(project / "src"))


def test_check_versions_refuses_workers_of_another_distributed(
    versions_module, other_python, tmp_path
):
    with mixed_cluster(other_python, tmp_path) as cluster:
        # What check_versions replaces: distributed connects, and warns.
        with warnings.catch_warnings(record=True) as plain:
            warnings.simplefilter("always")
            with Client(cluster.address, timeout=10, set_as_default=False):
                pass
        with (
            warnings.catch_warnings(record=True) as silenced,
            versions_module.distributed_version_warning_silenced(),
            Client(cluster.address, timeout=10, set_as_default=False) as client,
            pytest.raises(versions_module.DaskClusterError) as raised,
        ):
            warnings.simplefilter("always")
            versions_module.check_versions(client)
        assert_nothing_submitted(cluster.address)
    assert_all_stopped(cluster)

    message = str(raised.value)
    assert "\n" not in message
    assert message.count("worker 'old' (tcp://127.0.0.1:") == 1, message
    assert (
        f"distributed {DRIVER_DISTRIBUTED} on the driver, {OTHER_DISTRIBUTED} on "
        "worker 'old'" in message
    ), message
    # The other environment has no kedro: a worker could not run a node.
    kedro_missing = f"kedro {version('kedro')} on the driver, missing on worker 'old'"
    assert kedro_missing in message, message
    # The scheduler runs this environment: not named.
    assert "on the scheduler" not in message, message
    # distributed's own table is shown without, and not with, the silencer.
    (mismatch,) = [w for w in plain if w.category is VersionMismatchWarning]
    assert OTHER_DISTRIBUTED in str(mismatch.message)
    assert not [w for w in silenced if w.category is VersionMismatchWarning]


def test_kedro_run_on_workers_of_another_distributed_is_one_clear_error(
    other_python, rendered_project, tmp_path
):
    project = copy_project(rendered_project, tmp_path)
    with mixed_cluster(other_python, project) as cluster:
        conf = project / "conf" / "mixed"
        conf.mkdir()
        (conf / "parameters.yml").write_text(
            f"dask_client:\n  address: {cluster.address}\n  worker_wait: 30\n"
        )
        result = kedro(project, "run", "--env", "mixed", "--runner", DASK_RUNNER)
        line = assert_one_clear_error(
            result, "distributed", DRIVER_DISTRIBUTED, OTHER_DISTRIBUTED
        )
        assert "does not run the driver's versions" in line, line
        assert_nothing_submitted(cluster.address)
    assert_all_stopped(cluster)
