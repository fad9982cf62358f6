"""Operating on real clusters: the ``dask_runner`` options and ``dask_client.cluster``.

Each feature is checked against real processes on 127.0.0.1: ``kedro run`` as a
subprocess (under ``script`` when it needs a terminal), ``dask scheduler`` / ``dask
worker`` processes started here, and the runner's own (adaptive) LocalCluster.
Options are written where users write them, in ``conf/<env>/parameters.yml`` of a
COPY of the rendered project (``dask_client`` and ``dask_runner`` blocks); one check
gives an option with ``--runner-params`` instead.

Clusters:

- ``ops_cluster`` (module): a scheduler, a plain worker ``cpu1`` and a worker
  ``gpu1`` started with ``--resources GPU=1``. Per-node options, retries and the
  performance report run on it.
- a fresh two-worker cluster for the worker-log test: what a user sees on the
  first run against newly started workers is the point of that test.
- ``bare_cluster`` (module): a scheduler and two workers started in an unrelated
  folder, with no ``PYTHONPATH``, so they cannot import the project: code shipping.
- ``kedro dask scheduler`` / ``kedro dask worker``: the project's own commands,
  started from a subfolder of the project.

Every process a test starts is stopped when it ends, whatever the outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from distributed import Client

from . import probes
from .conftest import (
    DASK_RUNNER,
    KEDRO,
    PACKAGE,
    DaskCluster,
    Result,
    _kill_group,
    add_overlay,
    add_run_recorder,
    assert_has_csv_and_parquet,
    assert_one_clear_error,
    assert_same_outputs,
    base_env,
    copy_project,
    free_port,
    is_worker_process,
    kedro,
    kedro_dask_cluster,
    pipeline_node_names,
    run_cmd,
    run_recorded,
    start_cluster,
    tail,
)

pytestmark = [pytest.mark.slow, pytest.mark.dask]

RUN_TIMEOUT = 180  # one ``kedro run`` of the example pipeline, on a loaded machine
ERROR_TIMEOUT = 120  # a ``kedro run`` expected to stop before running anything
EXAMPLE_PIPELINES = "data_processing,data_science,reporting"
N_EXAMPLE_NODES = 14
# Where Kedro-Viz reads a project's last run (its hook and DaskRunner write it).
VIZ_EVENTS = Path(".viz") / "kedro_pipeline_events.json"
TRAIN_NODES = [f"{m}.train_model_node" for m in ("linear", "ridge", "polynomial")]
GPU_TAGGED_NODES = [f"gpu_work_{i}_node" for i in range(4)]

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")
_LIVE_PROGRESS = re.compile(r"(\d+) done, (\d+) running, (\d+) failed of (\d+) nodes")
_DASHBOARD = re.compile(r"dashboard: http://127\.0\.0\.1:\d+")
_SCORED = re.compile(r"Model '(\w+)' scores RMSE")


# --------------------------------------------------------------------------- #
# Helpers: configuration in a project copy
# --------------------------------------------------------------------------- #
def write_env(project: Path, env: str, **files: dict) -> Path:
    """Write ``conf/<env>/<name>.yml`` for each ``name=mapping`` given."""
    folder = project / "conf" / env
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / f"{name}.yml").write_text(yaml.safe_dump(content, sort_keys=False))
    return folder


def absolute_catalog(project: Path) -> dict:
    """Every entry of ``conf/base/catalog.yml`` (dataset factories included) with
    its ``filepath`` made absolute, inside ``project``."""
    base = yaml.safe_load((project / "conf" / "base" / "catalog.yml").read_text())
    catalog = {}
    for name, entry in base.items():
        if isinstance(entry, dict) and "filepath" in entry:
            catalog[name] = {**entry, "filepath": str(project / entry["filepath"])}
    assert "{namespace}.coefficients" in catalog, sorted(catalog)
    return catalog


def plain(text: str) -> str:
    """Terminal output as text: no escape sequences, no carriage returns."""
    return _ANSI.sub("", text).replace("\r", "\n")


# --------------------------------------------------------------------------- #
# Helpers: processes
# --------------------------------------------------------------------------- #
def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def run_tracked(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    *,
    timeout: float = RUN_TIMEOUT,
    grace: float = 10,
) -> tuple[Result, list[psutil.Process], list[psutil.Process], int]:
    """Run ``args`` in a new session, recording every descendant process it has
    while it runs.

    Returns the result, the descendants seen, those still alive ``grace`` seconds
    after the command exited, and the largest number of Dask worker processes
    (``is_worker_process``) seen at one time. Whatever is left
    is killed afterwards.
    """
    seen: dict[int, psutil.Process] = {}
    most_workers = 0
    start = time.monotonic()
    with tempfile.TemporaryFile("w+", errors="replace") as out:
        proc = subprocess.Popen(
            [str(a) for a in args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            root = psutil.Process(proc.pid)
            while proc.poll() is None:
                if time.monotonic() - start > timeout:
                    _kill_group(proc)
                    proc.wait(timeout=15)
                    out.seek(0)
                    pytest.fail(
                        f"Timed out after {timeout} s: {shlex.join(map(str, args))}"
                        f"\n{tail(out.read())}",
                        pytrace=False,
                    )
                with contextlib.suppress(psutil.Error):
                    children = root.children(recursive=True)
                    workers = 0
                    for child in children:
                        seen.setdefault(child.pid, child)
                        workers += is_worker_process(child)
                    most_workers = max(most_workers, workers)
                time.sleep(0.2)
            duration = time.monotonic() - start
            deadline = time.monotonic() + grace
            alive = [p for p in seen.values() if not _gone(p)]
            while alive and time.monotonic() < deadline:
                time.sleep(0.2)
                alive = [p for p in alive if not _gone(p)]
        finally:
            _kill_group(proc)
            for child in seen.values():
                with contextlib.suppress(psutil.Error):
                    child.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        out.seek(0)
        output = out.read()
    result = Result([str(a) for a in args], proc.returncode, output, duration)
    return result, list(seen.values()), alive, most_workers


def describe_procs(procs: list[psutil.Process]) -> str:
    lines = []
    for proc in procs:
        try:
            lines.append(f"{proc.pid} {proc.status()} {' '.join(proc.cmdline())}")
        except psutil.Error as exc:
            lines.append(f"{proc.pid} <{type(exc).__name__}>")
    return "\n".join(lines)


def kedro_under_terminal(
    project: Path, log: Path, *args: str, timeout: float = RUN_TIMEOUT
) -> tuple[Result, str]:
    """``python -m kedro <args>`` with a pseudo-terminal as its stdout (``script``).

    Returns the result and what the terminal showed, escape sequences removed.
    """
    command = shlex.join([KEDRO, *args])
    env = base_env(project)
    env["TERM"] = "xterm"  # a terminal rich refreshes live (not "dumb")
    result, _, alive, _ = run_tracked(
        ["script", "-qec", f"stty cols 250 rows 50 2>/dev/null; {command}", log],
        project,
        env,
        timeout=timeout,
    )
    assert not alive, f"left running:\n{describe_procs(alive)}"
    return result, plain(log.read_text(errors="replace"))


def project_code_on_workers(address: str) -> dict[str, dict]:
    with Client(address, timeout=10) as client:
        replies = client.run(probes.project_code, package=PACKAGE)
    return {reply["name"]: reply for reply in replies.values()}


def run_on_cluster(cluster: DaskCluster, project: Path, record_dir: Path, *args: str):
    """``kedro run <args>`` in a project with ``add_run_recorder``; the result and
    node -> the workers of its runs (see ``run_recorded``), all of ``cluster``."""
    result, ran_on = run_recorded(
        project, record_dir, "run", *args, timeout=RUN_TIMEOUT
    )
    for node, workers in ran_on.items():
        assert set(workers) <= set(cluster.worker_names), f"{node} ran on {workers}"
    return result, ran_on


# --------------------------------------------------------------------------- #
# Fixtures
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def ops_project(rendered_project, tmp_path_factory) -> Path:
    """A copy with the ``ops_gpu`` and ``ops_flaky`` pipelines
    (``tests/fixtures/ops_project``), their parameters and the ``RunRecorder``
    hook."""
    project = copy_project(rendered_project, tmp_path_factory.mktemp("ops"))
    add_overlay(project, "ops_project")
    add_run_recorder(project)
    marker = project / "ops-markers" / "flaky.marker"
    marker.parent.mkdir()
    (project / "conf" / "base" / "parameters_ops.yml").write_text(
        yaml.safe_dump(
            {"ops_rows": 21, "ops_gpu_seconds": 0.5, "ops_flaky_marker": str(marker)}
        )
    )
    return project


@pytest.fixture(scope="module")
def ops_cluster(ops_project) -> Iterator[DaskCluster]:
    """Scheduler, worker ``cpu1`` and worker ``gpu1`` with ``--resources GPU=1``.
    The workers import the project copy (PYTHONPATH) but run from elsewhere."""
    with start_cluster(
        {"cpu1": None, "gpu1": "GPU=1"}, worker_env=base_env(ops_project)
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def bare_workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("unrelated-folder")


@pytest.fixture(scope="module")
def bare_cluster(bare_workdir) -> Iterator[DaskCluster]:
    """Scheduler and two workers in an unrelated folder, without PYTHONPATH."""
    with start_cluster(
        {"b1": None, "b2": None}, worker_env=base_env(), worker_cwd=bare_workdir
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def ship_project(rendered_project, tmp_path_factory) -> Path:
    """A copy whose ``abs`` environment gives every persisted dataset an absolute
    path into the copy: the bare workers' working directory is elsewhere."""
    project = copy_project(rendered_project, tmp_path_factory.mktemp("ship"))
    catalog = absolute_catalog(project)
    assert all(Path(e["filepath"]).is_absolute() for e in catalog.values())
    write_env(project, "abs", catalog=catalog)
    return project


# --------------------------------------------------------------------------- #
# Progress
# --------------------------------------------------------------------------- #
def test_progress_live_on_a_terminal(fresh_project, tmp_path):
    result, screen = kedro_under_terminal(
        fresh_project, tmp_path / "terminal.log", "run", "--runner", DASK_RUNNER
    )
    assert result.returncode == 0, f"{result.describe()}\n{tail(screen)}"

    states = [tuple(map(int, m)) for m in _LIVE_PROGRESS.findall(screen)]
    assert states, f"no live progress display on the terminal\n{tail(screen)}"
    for done, running, failed, total in states:
        assert total == N_EXAMPLE_NODES, states
        assert failed == 0, states
        assert done + running + failed <= total, states
    assert (N_EXAMPLE_NODES, 0, 0, N_EXAMPLE_NODES) in states, states
    # Live: it showed the run on its way, not only the end.
    assert any(done < N_EXAMPLE_NODES for done, *_ in states), states

    dashboard = _DASHBOARD.search(screen)
    assert dashboard, tail(screen)
    first_node = screen.find("Completed node:")
    assert 0 <= dashboard.start() < first_node, "dashboard not logged at the start"


def test_progress_off_without_a_terminal(fresh_project, node_names):
    result = kedro(fresh_project, "run", "--runner", DASK_RUNNER, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.describe()
    assert not _LIVE_PROGRESS.search(result.output), result.describe()
    assert "Kedro on Dask" not in result.output, result.describe()
    completed = re.findall(r"Completed node: (\S+)", result.output)
    assert sorted(completed) == sorted(node_names), completed

    dashboard = _DASHBOARD.search(result.output)
    assert dashboard, result.describe()
    assert dashboard.start() < result.output.find("Completed node:")


# --------------------------------------------------------------------------- #
# Worker logs in the driver
# --------------------------------------------------------------------------- #
def test_worker_logs_reach_the_driver(fresh_project):
    """On workers started as the README says, as a user would see it: the lines
    ``evaluate_model`` logs on a worker come out in the ``kedro run`` console and
    ``info.log``, each between its node's "Running node" and "Completed node"
    lines, as with SequentialRunner; ``forward_logs: false`` keeps them on the
    workers. Runs: 1) fresh workers, default; 2) ``forward_logs: false``;
    3) default again, on workers that have run the project before."""
    with start_cluster(
        {"w1": None, "w2": None}, worker_env=base_env(fresh_project)
    ) as cluster:
        write_env(
            fresh_project,
            "ops_logs",
            parameters={"dask_client": {"address": cluster.address}},
        )
        write_env(
            fresh_project,
            "ops_nologs",
            parameters={
                "dask_client": {"address": cluster.address},
                "dask_runner": {"forward_logs": False},
            },
        )
        info_log = fresh_project / "info.log"

        runs = {}
        for name, env in (
            ("fresh", "ops_logs"),
            ("off", "ops_nologs"),
            ("again", "ops_logs"),
        ):
            info_log.unlink(missing_ok=True)
            result = kedro(
                fresh_project,
                "run",
                "--env",
                env,
                "--runner",
                DASK_RUNNER,
                timeout=RUN_TIMEOUT,
            )
            assert result.returncode == 0, (
                result.describe() + "\n" + cluster.log_tails()
            )
            info = info_log.read_text() if info_log.exists() else ""
            runs[name] = (result, info)

    models = {"linear", "ridge", "polynomial"}
    off, _ = runs["off"]
    assert "scores RMSE" not in off.output, off.describe()

    def check(name: str) -> None:
        result, info = runs[name]
        for where, text in (("console", result.output), ("info.log", info)):
            scored = _SCORED.findall(text)
            assert sorted(scored) == sorted(models), (
                f"run '{name}', {where}: {scored}\n{tail(text)}"
            )
            # Each model's line sits inside its own node's Running/Completed pair.
            for model in models:
                node = f"{model}.evaluate_model_node"
                lines = text.splitlines()
                at = [i for i, line in enumerate(lines) if f"'{model}' scores" in line]
                done = [i for i, line in enumerate(lines) if f"node: {node}" in line]
                assert at and done and at[0] < done[0], (where, model, tail(text))

    check("again")
    check("fresh")  # the first run on newly started workers


# --------------------------------------------------------------------------- #
# Per-node Dask options
# --------------------------------------------------------------------------- #
def test_node_options_resources_pin_nodes_to_the_gpu_worker(
    ops_project, ops_cluster, tmp_path
):
    write_env(
        ops_project,
        "ops_gpu",
        parameters={
            "dask_client": {"address": ops_cluster.address},
            "dask_runner": {
                "node_options": [
                    {"nodes": TRAIN_NODES, "resources": {"GPU": 1}},
                    {"tags": ["gpu"], "resources": {"GPU": 1}},
                ]
            },
        },
    )
    names = pipeline_node_names(ops_project, f"{EXAMPLE_PIPELINES},ops_gpu")
    assert set(TRAIN_NODES + GPU_TAGGED_NODES) <= set(names), names
    result, ran_on = run_on_cluster(
        ops_cluster,
        ops_project,
        tmp_path / "record",
        "--env",
        "ops_gpu",
        "--runner",
        DASK_RUNNER,
        "--pipelines",
        f"{EXAMPLE_PIPELINES},ops_gpu",
    )
    assert result.returncode == 0, result.describe() + "\n" + ops_cluster.log_tails()
    expected = set(names) - {"flaky_node"}
    assert set(ran_on) == expected, f"{ran_on}\nexpected {sorted(expected)}"
    misplaced = {
        node: workers
        for node, workers in ran_on.items()
        if node in TRAIN_NODES + GPU_TAGGED_NODES and set(workers) != {"gpu1"}
    }
    assert not misplaced, f"selected nodes ran off the GPU worker: {misplaced}"


def test_a_resource_no_worker_offers_is_one_error_before_submitting(
    ops_project, ops_cluster
):
    """Fixed workers (``cpu1``, ``gpu1`` with GPU=1) and a node asking for a TPU:
    one line naming the node, the resource and what the workers offer, before
    any task reaches the scheduler; never a wait for a worker that will not come."""
    write_env(
        ops_project,
        "ops_tpu",
        parameters={
            "dask_client": {"address": ops_cluster.address, "worker_wait": 60},
            "dask_runner": {
                "node_options": [{"nodes": [TRAIN_NODES[0]], "resources": {"TPU": 1}}]
            },
        },
    )
    started = time.monotonic()
    result = kedro(
        ops_project,
        *("run", "--env", "ops_tpu", "--runner", DASK_RUNNER),
        *("--pipelines", EXAMPLE_PIPELINES),
        timeout=ERROR_TIMEOUT,
    )
    assert time.monotonic() - started < 30, result.describe()  # not worker_wait
    line = assert_one_clear_error(result, TRAIN_NODES[0], "TPU", "'GPU': 1")
    assert "2 worker(s)" in line, line
    assert "Completed node" not in result.output, result.describe()


def _reset_flaky(project: Path) -> Path:
    marker = project / "ops-markers" / "flaky.marker"
    marker.unlink(missing_ok=True)
    Path(f"{marker}.attempts").unlink(missing_ok=True)
    return marker


def _attempts(marker: Path) -> int:
    path = Path(f"{marker}.attempts")
    return len(path.read_text().split()) if path.exists() else 0


def test_node_options_retries_rescue_a_flaky_node(ops_project, ops_cluster):
    write_env(
        ops_project,
        "ops_retry",
        parameters={
            "dask_client": {"address": ops_cluster.address},
            "dask_runner": {"node_options": [{"nodes": ["flaky_node"], "retries": 1}]},
        },
    )
    write_env(
        ops_project,
        "ops_noretry",
        parameters={
            "dask_client": {"address": ops_cluster.address},
        },
    )
    run = ("run", "--runner", DASK_RUNNER, "--pipelines", "ops_flaky")

    marker = _reset_flaky(ops_project)
    result = kedro(ops_project, *run, "--env", "ops_retry", timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.describe() + "\n" + ops_cluster.log_tails()
    assert "Completed node: flaky_node" in result.output, result.describe()
    assert _attempts(marker) == 2, result.describe()

    marker = _reset_flaky(ops_project)
    result = kedro(ops_project, *run, "--env", "ops_noretry", timeout=RUN_TIMEOUT)
    assert result.returncode != 0, result.describe()
    assert "flaky node: failing on its first attempt" in result.output
    assert _attempts(marker) == 1, result.describe()


# --------------------------------------------------------------------------- #
# Performance report
# --------------------------------------------------------------------------- #
def _check_report(path: Path) -> None:
    assert path.is_file(), f"no report at {path}"
    html = path.read_text(errors="replace")
    assert html.lstrip().startswith("<!DOCTYPE html") or "<html" in html[:2000]
    assert "Dask" in html, html[:500]
    assert "bokeh" in html.lower(), html[:500]


def test_performance_report(ops_project, ops_cluster):
    relative = "data/08_reporting/dask-report.html"
    write_env(
        ops_project,
        "ops_report",
        parameters={
            "dask_client": {"address": ops_cluster.address},
            "dask_runner": {"performance_report": relative},
        },
    )
    report = ops_project / relative
    report.unlink(missing_ok=True)
    run = (
        "run",
        "--env",
        "ops_report",
        "--runner",
        DASK_RUNNER,
        "--pipelines",
        "data_processing",
    )
    result = kedro(ops_project, *run, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.describe()
    _check_report(report)
    assert f"Wrote the Dask performance report of the run to {relative}" in (
        result.output
    ), result.describe()

    # The same option on the command line wins over the environment's.
    report.unlink()
    other = "data/08_reporting/from-cli.html"
    result = kedro(
        ops_project,
        *run,
        "--runner-params",
        f"performance_report={other}",
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.describe()
    _check_report(ops_project / other)
    assert not report.exists(), "the environment's report path was used"
    assert f"report of the run to {other}" in result.output, result.describe()


# --------------------------------------------------------------------------- #
# Any cluster class, adaptive
# --------------------------------------------------------------------------- #
def test_adaptive_local_cluster_from_conf(fresh_project, sequential_project):
    write_env(
        fresh_project,
        "ops_adapt",
        parameters={
            "dask_client": {
                "cluster": {
                    "class": "distributed.LocalCluster",
                    "kwargs": {"n_workers": 0, "threads_per_worker": 1},
                    "adapt": {"minimum": 1, "maximum": 2},
                }
            }
        },
    )
    result, started, left, most_workers = run_tracked(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--env",
            "ops_adapt",
            "--runner",
            DASK_RUNNER,
        ],
        fresh_project,
        base_env(fresh_project),
    )
    assert result.returncode == 0, result.describe()
    assert re.search(
        r"Started a Dask LocalCluster at tls://127\.0\.0\.1:\d+", result.output
    ), result.describe()
    assert _DASHBOARD.search(result.output), result.describe()
    # Adaptive from zero workers: it scaled up to at least one, at most two.
    assert 1 <= most_workers <= 2, (most_workers, describe_procs(started))
    assert not left, (
        f"processes started by the run still alive after it exited:\n"
        f"{describe_procs(left)}"
    )
    outputs = assert_same_outputs(sequential_project, fresh_project)
    assert_has_csv_and_parquet(outputs)


@pytest.mark.parametrize(
    "dask_client, needles",
    [
        pytest.param(
            {
                "address": "tcp://127.0.0.1:8786",
                "cluster": {"class": "distributed.LocalCluster"},
            },
            ("'address'", "'cluster'"),
            id="cluster-and-address",
        ),
        pytest.param(
            {"cluster": {"class": "no_such_package.NoCluster"}},
            ("no_such_package.NoCluster",),
            id="class-module-missing",
        ),
        pytest.param(
            {"cluster": {"class": "distributed.NoSuchCluster"}},
            ("distributed.NoSuchCluster",),
            id="class-attribute-missing",
        ),
    ],
)
def test_bad_cluster_block_one_line_error(fresh_project, dask_client, needles):
    write_env(fresh_project, "ops_bad", parameters={"dask_client": dask_client})
    result = kedro(
        fresh_project,
        "run",
        "--env",
        "ops_bad",
        "--runner",
        DASK_RUNNER,
        timeout=ERROR_TIMEOUT,
    )
    assert_one_clear_error(result, *needles)
    assert not any((fresh_project / "data").rglob("*.parquet"))


# --------------------------------------------------------------------------- #
# Code shipping
# --------------------------------------------------------------------------- #
def _bare_run(
    project: Path, cluster: DaskCluster, *args: str, runner_params: str = ""
) -> Result:
    """``kedro run --env abs`` on ``cluster``, given by ``--runner-params``."""
    params = f"client_args.address={cluster.address}"
    if runner_params:
        params += f",{runner_params}"
    return kedro(
        project,
        "run",
        "--env",
        "abs",
        "--runner",
        DASK_RUNNER,
        "--runner-params",
        params,
        *args,
        timeout=RUN_TIMEOUT,
    )


def test_code_shipping_to_workers_without_the_project(
    bare_cluster, bare_workdir, ship_project, sequential_project, node_names
):
    # The workers' folder and environment cannot import the project.
    check = run_cmd(
        [sys.executable, "-c", f"import {PACKAGE}"],
        cwd=bare_workdir,
        timeout=60,
        env=base_env(),
    )
    assert check.returncode != 0, check.describe()
    assert f"No module named '{PACKAGE}'" in check.output, check.describe()
    before = project_code_on_workers(bare_cluster.address)
    if any(w["importable"] or w["shipped_on_path"] for w in before.values()):
        pytest.fail(
            f"the workers already have project code from an earlier run "
            f"(see test_shipped_code_does_not_outlive_the_run): {before}"
        )

    # Without shipping the run fails in one line naming the node that could not
    # start, the worker, and the ways to give workers the code.
    result = _bare_run(ship_project, bare_cluster, runner_params="ship_code=false")
    line = assert_one_clear_error(result, f"'{PACKAGE}", "ship_code", "PYTHONPATH=src")
    assert re.search(r"node '[\w.]+'", line), line
    with Client(bare_cluster.address, timeout=10) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    assert any(address in line for address in workers), (line, list(workers))
    assert result.duration < 90, f"took {result.duration:.0f} s to fail"
    assert not any((ship_project / "data").rglob("*.parquet")), result.describe()

    # ship_code is on by default for an external cluster.
    result = _bare_run(ship_project, bare_cluster)
    assert result.returncode == 0, result.describe() + "\n" + bare_cluster.log_tails()
    assert f"Shipped package '{PACKAGE}'" in result.output, result.describe()
    outputs = assert_same_outputs(sequential_project, ship_project)
    assert_has_csv_and_parquet(outputs)
    # Every node is in Kedro-Viz's file: the workers' last measurements were
    # collected while the shipped code was still there.
    assert "may miss nodes" not in result.output, result.describe()
    events = json.loads((ship_project / VIZ_EVENTS).read_text())
    ran = {event["node"] for event in events if event["event"] == "after_node_run"}
    assert ran == set(node_names), result.describe()
    # The shipped copy was compiled when it was unpacked, so the next runs import
    # it without compiling every module again (workers may not write bytecode).
    with Client(bare_cluster.address, timeout=10) as client:
        copies = client.run(probes.shipped_without_bytecode)
    for worker, uncompiled in copies.items():
        assert uncompiled, f"no shipped copy of the project on {worker}"
        assert not any(uncompiled.values()), (worker, uncompiled)


def test_shipped_code_does_not_outlive_the_run(bare_cluster, ship_project):
    """``run_services`` installs what a run asks for and removes it when the run
    ends: a later run with ``ship_code=false`` must not find the package."""
    one_node = ("--nodes", "generate_raw_sales_node")
    result = _bare_run(ship_project, bare_cluster, *one_node)
    assert result.returncode == 0, result.describe() + "\n" + bare_cluster.log_tails()
    assert f"Shipped package '{PACKAGE}'" in result.output, result.describe()

    after = project_code_on_workers(bare_cluster.address)
    result = _bare_run(
        ship_project, bare_cluster, *one_node, runner_params="ship_code=false"
    )
    assert result.returncode != 0, (
        f"with ship_code=false the run still found the package shipped by the "
        f"previous run; the workers have: {after}\n{result.describe()}"
    )
    assert not any(w["shipped_on_path"] for w in after.values()), after


# --------------------------------------------------------------------------- #
# Validation of dask_runner
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "dask_runner, needles",
    [
        pytest.param({"progres": True}, ("progres",), id="unknown-key"),
        pytest.param({"is_async": True}, ("is_async",), id="runner-arg-not-option"),
        pytest.param(
            {"node_options": [{"retries": 1}]},
            ("node_options[0]", "tags", "nodes"),
            id="rule-selects-nothing",
        ),
        pytest.param(
            {"node_options": [{"tags": ["gpu"], "resource": {"GPU": 1}}]},
            ("'resource'", "node_options[0]"),
            id="rule-unknown-key",
        ),
    ],
)
def test_bad_dask_runner_one_line_error(fresh_project, dask_runner, needles):
    # A scheduler that is not there: the error must come before any connection.
    dead = f"tcp://127.0.0.1:{free_port()}"
    write_env(
        fresh_project,
        "ops_bad",
        parameters={
            "dask_client": {"address": dead, "timeout": 3},
            "dask_runner": dask_runner,
        },
    )
    result = kedro(
        fresh_project,
        "run",
        "--env",
        "ops_bad",
        "--runner",
        DASK_RUNNER,
        timeout=ERROR_TIMEOUT,
    )
    assert_one_clear_error(result, *needles)
    assert dead not in result.output, result.describe()


# --------------------------------------------------------------------------- #
# kedro dask scheduler / worker
# --------------------------------------------------------------------------- #
def test_kedro_dask_scheduler_and_workers_run_the_pipeline(
    fresh_project, sequential_project, node_names, tmp_path
):
    """The scheduler at ``dask_client.address`` of ``--env dask`` and two workers,
    started from ``conf/`` (relative dataset paths resolve only from the project
    root) with no ``PYTHONPATH``; ``kedro run --env dask`` runs every node on
    them."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    write_env(fresh_project, "dask", parameters={"dask_client": {"address": address}})
    add_run_recorder(fresh_project)
    with kedro_dask_cluster(
        fresh_project, "dask", address, ["w1", "w2"], tmp_path / "logs"
    ) as cluster:
        result, ran_on = run_recorded(
            fresh_project,
            tmp_path / "record",
            *("run", "--env", "dask", "--runner", DASK_RUNNER),
        )
        logs = cluster.log_texts()
        with Client(address, timeout=10) as client:
            pads = set(client.run(os.getenv, "MALLOC_TOP_PAD_").values())
    assert result.returncode == 0, result.describe() + "\n" + str(logs)
    assert f"Connected to the Dask scheduler at {address}" in result.output
    # What each process ran: the command the project built for it.
    scheduler_command = f"dask scheduler --protocol tcp --host 127.0.0.1 --port {port}"
    assert scheduler_command in logs["scheduler"]
    worker_command = f"dask worker {address} --dashboard-address 127.0.0.1:0"
    assert f"{worker_command} --nthreads 1 --name w1" in logs["w1"]
    # Their worker processes keep freed memory, as the embedded cluster's do.
    assert pads == {str(64 * 2**20)}, pads
    # Every node ran on one of those workers.
    assert set(ran_on) == set(node_names), ran_on
    assert all(set(workers) <= {"w1", "w2"} for workers in ran_on.values()), ran_on
    assert_same_outputs(sequential_project, fresh_project)
