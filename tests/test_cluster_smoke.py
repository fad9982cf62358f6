"""The DaskRunner on a real, separately started Dask cluster: a scheduler and two
single-threaded workers on 127.0.0.1, started as ``dask scheduler`` / ``dask
worker`` processes.

Where each node ran is what the project's own hook saw on the worker running it
(``add_run_recorder``: the rendered project plus one ``after_node_run`` hook)."""

from __future__ import annotations

import re
import time

import pytest
import yaml

from .conftest import (
    DASK_RUNNER,
    add_run_recorder,
    assert_has_csv_and_parquet,
    assert_same_outputs,
    copy_project,
    dask_cluster,
    free_port,
    kedro,
    reset_data,
    run_recorded,
)

pytestmark = [pytest.mark.slow, pytest.mark.dask]


@pytest.fixture(scope="module")
def cluster_project(rendered_project, tmp_path_factory):
    """The project copy the cluster's workers run from (their working directory),
    with the ``RunRecorder`` hook."""
    project = copy_project(rendered_project, tmp_path_factory.mktemp("cluster"))
    return add_run_recorder(project)


@pytest.fixture(scope="module")
def cluster(cluster_project):
    with dask_cluster(cluster_project, n_workers=2) as running:
        yield running


@pytest.fixture
def clean_cluster_project(cluster_project, rendered_project):
    """The workers' project, with ``data/`` as freshly rendered."""
    reset_data(cluster_project, rendered_project)
    return cluster_project


def _run_on_cluster(cluster, project, record_dir, *args: str):
    """``kedro run`` ``args``; return the run's output and, for each node, the
    workers of its runs (see ``run_recorded``)."""
    result, ran_on = run_recorded(project, record_dir, "run", *args)
    assert result.returncode == 0, result.describe() + "\n" + cluster.log_tails()
    # Every node run happened on one of the cluster's workers.
    for node, workers in ran_on.items():
        assert set(workers) <= set(cluster.worker_names), f"{node} ran on {workers}"
    return result, ran_on


def test_smoke_nodes_run_on_the_cluster_workers(
    cluster, clean_cluster_project, node_names, tmp_path, sequential_project
):
    _, ran_on = _run_on_cluster(
        cluster,
        clean_cluster_project,
        tmp_path / "record",
        "--env",
        "dask",
        "--runner",
        DASK_RUNNER,
        "--runner-params",
        f"client_args.address={cluster.address}",
    )
    # Every node of the pipeline ran, each exactly once, on one of our workers.
    assert set(ran_on) == set(node_names), (
        f"nodes run on the cluster: {ran_on}\nexpected: {node_names}"
    )
    for node, workers in ran_on.items():
        assert len(workers) == 1, f"{node} ran on {workers}"
        assert set(workers) <= set(cluster.worker_names), workers
    # The workers stay alive through the run.
    assert all(proc.poll() is None for proc in cluster.workers), cluster.log_tails()

    outputs = assert_same_outputs(sequential_project, clean_cluster_project)
    assert_has_csv_and_parquet(outputs)


def test_both_workers_get_work(cluster, clean_cluster_project, node_names, tmp_path):
    """With two single-threaded workers, independent nodes spread over both.
    Several runs, as Dask may put a short pipeline on one worker once."""
    used: set[str] = set()
    for attempt in range(3):
        _, ran_on = _run_on_cluster(
            cluster,
            clean_cluster_project,
            tmp_path / f"record-{attempt}",
            "--env",
            "dask",
            "--runner",
            DASK_RUNNER,
            "--runner-params",
            f"client_args.address={cluster.address}",
        )
        assert set(ran_on) == set(node_names)
        used.update(*ran_on.values())
        if used == set(cluster.worker_names):
            break
    assert used == set(cluster.worker_names), used


def test_address_from_params_override(
    cluster, clean_cluster_project, node_names, tmp_path, sequential_project
):
    _, ran_on = _run_on_cluster(
        cluster,
        clean_cluster_project,
        tmp_path / "record",
        "--env",
        "dask",
        "--runner",
        DASK_RUNNER,
        "--params",
        f"dask_client.address={cluster.address}",
    )
    assert set(ran_on) == set(node_names)
    assert_same_outputs(sequential_project, clean_cluster_project)


def test_address_from_conf_dask_parameters(
    cluster, clean_cluster_project, node_names, tmp_path
):
    """Without any override, ``--env dask`` connects to conf/dask/parameters.yml."""
    params_file = clean_cluster_project / "conf" / "dask" / "parameters.yml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["dask_client"]["address"] = cluster.address
    params_file.write_text(yaml.safe_dump(params))
    try:
        _, ran_on = _run_on_cluster(
            cluster,
            clean_cluster_project,
            tmp_path / "record",
            "--env",
            "dask",
            "--runner",
            DASK_RUNNER,
        )
    finally:
        params_file.write_text(original)
    assert set(ran_on) == set(node_names)


def test_runner_params_win_over_params(
    cluster, clean_cluster_project, node_names, tmp_path
):
    dead = f"tcp://127.0.0.1:{free_port()}"
    # Conf (via --params) points nowhere; the runner's client_args win.
    _, ran_on = _run_on_cluster(
        cluster,
        clean_cluster_project,
        tmp_path / "record",
        "--env",
        "dask",
        "--runner",
        DASK_RUNNER,
        "--params",
        f"dask_client.address={dead}",
        "--runner-params",
        f"client_args.address={cluster.address}",
    )
    assert set(ran_on) == set(node_names)

    # And the other way round: the run fails, naming the runner_params address.
    result = kedro(
        clean_cluster_project,
        "run",
        "--env",
        "dask",
        "--runner",
        DASK_RUNNER,
        "--params",
        f"dask_client.address={cluster.address}",
        "--runner-params",
        f"client_args.address={dead}",
        timeout=120,
    )
    assert result.returncode != 0, result.describe()
    assert dead in result.output, result.describe()


def test_unreachable_scheduler_fails_fast_naming_the_address(fresh_project):
    dead = f"tcp://127.0.0.1:{free_port()}"
    start = time.monotonic()
    result = kedro(
        fresh_project,
        "run",
        "--env",
        "dask",
        "--runner",
        DASK_RUNNER,
        "--runner-params",
        f"client_args.address={dead}",
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert result.returncode != 0, result.describe()
    assert elapsed < 60, f"took {elapsed:.0f} s to fail\n{result.describe()}"
    # One clear line naming the address, not a traceback.
    lines = [line for line in result.output.splitlines() if dead in line]
    assert lines, result.describe()
    assert "Traceback" not in result.output, result.describe()
    # Nothing was written.
    assert not any((fresh_project / "data").rglob("*.parquet"))


def test_sequential_run_needs_no_cluster(fresh_project):
    """``--env dask`` with the default runner ignores ``dask_client``, and the
    run does not even import Dask's distributed (half a second of every
    ``kedro`` command of the project, with its ``cli.py`` and ``settings.py``)."""
    result = kedro(fresh_project, "run", "--env", "dask", PYTHONPROFILEIMPORTTIME="1")
    assert result.returncode == 0, result.describe()
    assert any((fresh_project / "data").rglob("*.parquet"))
    imported = re.findall(r"^import time:.*\| *([\w.]+)$", result.output, re.M)
    assert "kedro.runner" in imported  # the import times are there
    assert "distributed" not in imported
