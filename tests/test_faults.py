"""Fault tolerance and bad input: what ``kedro run`` with the DaskRunner does when
a node raises, the scheduler cannot be reached, workers die, the user presses
Ctrl-C, two runs share a scheduler, or the input cannot work at all.

Everything is real: ``kedro run`` is a subprocess, clusters are ``dask scheduler``
/ ``dask worker`` processes on 127.0.0.1 (or the runner's embedded LocalCluster),
and the failing, slow and unpicklable nodes live in extra modules
(``tests/fixtures/fault_project``) copied into a COPY of the rendered project (see
``add_fault_modules``), so that workers started with ``PYTHONPATH=<copy>/src``
import them like any project code.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import psutil
import pytest
from distributed import Client

from . import probes
from .conftest import (
    DASK_RUNNER,
    KEDRO,
    KEDRO_RUN_TIMEOUT,
    RECORD_DIR_VARIABLE,
    DaskCluster,
    Result,
    _kill_group,
    add_overlay,
    add_run_recorder,
    assert_one_clear_error,
    base_env,
    copy_project,
    dask_cluster,
    data_files,
    executed_keys_by_worker,
    free_port,
    is_worker_process,
    node_of_key,
    read_jsonl,
    reset_data,
    run_cmd,
    run_token,
    start_cluster,
    tail,
)

pytestmark = [pytest.mark.slow, pytest.mark.dask]

# --------------------------------------------------------------------------- #
# Extra project code (tests/fixtures), added to a copy of the rendered project
# --------------------------------------------------------------------------- #
# Pipelines to name with --pipelines in a project that has the fault modules:
# __default__ there includes the failing ones.
EXAMPLE_PIPELINES = "data_processing,data_science,reporting"


def add_fault_modules(project: Path, secret: str | None = None) -> Path:
    """Add the fault nodes, datasets, pipelines and configuration
    (``tests/fixtures/fault_project``) to ``project`` (a copy), with the
    ``RunRecorder`` hook (``KEDRO_TEST_RECORD_DIR``, see ``add_run_recorder``).
    With ``secret``, also the ``secrets`` pipeline's credentialed dataset in
    conf/local (``tests/fixtures/fault_secrets``), its token being ``secret``."""
    add_run_recorder(project)
    add_overlay(project, "fault_project")
    if secret is not None:
        add_overlay(project, "fault_secrets", SECRET_TOKEN=secret)
    return project


# --------------------------------------------------------------------------- #
# Helpers: kedro runs in the background, cluster probes, comparisons
# --------------------------------------------------------------------------- #
SLOWSAVE_NODES = [
    "make_numbers_node",
    "slow_square_node",
    "fast_double_node",
    "combine_node",
]
FAULTS_NODES = ["explode_node", "slow_branch_node", "slow_branch_end_node"]
DATA_PROCESSING_NODES = [
    "generate_raw_sales_node",
    "preprocess_sales_node",
    "create_model_input_table_node",
    "split_data_node",
]
DATA_PROCESSING_FILES = [
    "01_raw/sales.csv",
    "02_intermediate/preprocessed_sales.parquet",
    "03_primary/model_input_table.parquet",
]
SETTLE = 10  # seconds for the cluster to reflect what a finished run did


def kedro_env(project: Path, **extra: str) -> dict[str, str]:
    env = base_env(project)
    env.update(extra)
    return env


def kedro_run(
    project: Path, *args: str, timeout: float = KEDRO_RUN_TIMEOUT, **extra_env: str
) -> Result:
    """``kedro <args>`` from ``project``, with extra environment."""
    return run_cmd(
        [KEDRO, *args],
        cwd=project,
        timeout=timeout,
        env=kedro_env(project, **extra_env),
    )


@dataclass
class BackgroundRun:
    """A ``kedro`` command running in its own process group, output to a file."""

    args: list[str]
    proc: subprocess.Popen
    log: Path
    start: float
    handle: object = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> Result:
        """Wait for the exit; fail the test (after killing the group) on timeout."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
            pytest.fail(
                f"still running after {timeout} s: {' '.join(self.args)}\n"
                f"{tail(self.output())}",
                pytrace=False,
            )
        return Result(
            self.args,
            self.proc.returncode,
            self.output(),
            time.monotonic() - self.start,
        )


@contextlib.contextmanager
def background_kedro(
    project: Path, *args: str, log: Path, **extra_env: str
) -> Iterator[BackgroundRun]:
    """Start ``kedro <args>``; on exit kill its whole process group, whatever
    happened."""
    command = [KEDRO, *args]
    handle = log.open("w")
    proc = subprocess.Popen(
        command,
        cwd=project,
        env=kedro_env(project, **extra_env),
        stdin=subprocess.DEVNULL,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    run = BackgroundRun(command, proc, log, time.monotonic(), handle)
    try:
        yield run
    finally:
        _kill_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        handle.close()


def wait_until(
    condition: Callable[[], object], timeout: float, interval: float = 0.1
) -> object:
    """Poll ``condition`` until it returns something truthy or ``timeout`` passes;
    return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def events(path: Path) -> list[str]:
    return [line["event"] for line in read_jsonl(path)]


@contextlib.contextmanager
def inspector(address: str, **kwargs) -> Iterator[Client]:
    """A client to look at a cluster; never the default client."""
    with Client(address, timeout=10, set_as_default=False, **kwargs) as client:
        yield client


def scheduler_state(client: Client) -> dict:
    return client.run_on_scheduler(probes.scheduler_state)


def executing(client: Client) -> dict[str, list[str]]:
    """Worker address -> keys it is executing."""
    return client.run(probes.executing_keys)


def keys_of_run(keys: list, token: str) -> list:
    return [key for key in keys if run_token(key) == token]


def run_tokens(keys: list, node_names: list[str]) -> dict[str, set[str]]:
    """Node name -> the run tokens of its task keys."""
    tokens: dict[str, set[str]] = {}
    for key in keys:
        node = node_of_key(key, node_names)
        if node is not None:
            tokens.setdefault(node, set()).add(run_token(key))
    return tokens


def new_executed_keys(before: dict[str, list[str]], address: str) -> list[str]:
    after = executed_keys_by_worker(address)
    keys = []
    for worker, worker_keys in after.items():
        keys += [k for k in worker_keys if k not in set(before.get(worker, []))]
    return keys


def assert_cluster_idle(address: str, timeout: float = 30) -> dict:
    """The cluster holds no task and no worker executes anything (a previous test
    or run left nothing behind)."""
    with inspector(address) as client:

        def idle():
            state = scheduler_state(client)
            busy = {w: keys for w, keys in executing(client).items() if keys}
            return (state, busy) if not state["keys"] and not busy else None

        result = wait_until(idle, timeout, interval=0.2)
        if result is None:
            state = scheduler_state(client)
            pytest.fail(
                f"the shared cluster is not idle after {timeout} s: scheduler keys "
                f"{state['keys'][:20]}, executing {executing(client)}",
                pytrace=False,
            )
        return result[0]


def assert_files_equal(expected_dir: Path, actual_dir: Path, rels: list[str]) -> None:
    """The data files ``rels`` hold the same data in both projects (csv byte for
    byte, Parquet as equal DataFrames)."""
    for rel in rels:
        want, got = expected_dir / "data" / rel, actual_dir / "data" / rel
        assert got.is_file(), f"{rel} is missing after the run"
        if rel.endswith(".parquet"):
            assert pd.read_parquet(got).equals(pd.read_parquet(want)), f"{rel} differs"
        else:
            assert got.read_bytes() == want.read_bytes(), f"{rel} differs"


def problems(log: str) -> list[str]:
    """The WARNING and ERROR lines of a Dask log."""
    return [
        line for line in log.splitlines() if re.search(r" - (WARNING|ERROR) - ", line)
    ]


def descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(pid).children(recursive=True)
    return []


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    living = []
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                living.append(proc)
    return living


def fault_project(rendered_project: Path, parent: Path) -> Path:
    """A fresh copy of the rendered project with the fault modules."""
    return add_fault_modules(copy_project(rendered_project, parent))


def dask_run_args(address: str, *runner_params: str) -> list[str]:
    params = ",".join([f"client_args.address={address}", *runner_params])
    return ["--runner", DASK_RUNNER, "--runner-params", params]


# --------------------------------------------------------------------------- #
# Fixtures
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def faults_project(rendered_project, tmp_path_factory) -> Path:
    """The project copy with the fault modules that the shared cluster's workers
    run from (their working directory and PYTHONPATH)."""
    return fault_project(rendered_project, tmp_path_factory.mktemp("faults"))


@pytest.fixture(scope="module")
def cluster(faults_project):
    """Scheduler + two single-threaded workers shared by the tests that neither
    kill workers nor need a pristine scheduler."""
    with dask_cluster(faults_project, n_workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def slowsave_reference(rendered_project, tmp_path_factory) -> Path:
    """The ``slowsave`` outputs of an undisturbed SequentialRunner run."""
    project = fault_project(rendered_project, tmp_path_factory.mktemp("reference"))
    result = kedro_run(
        project, "run", "--pipelines", "slowsave", "--params", "slowsave_sleep=0"
    )
    assert result.returncode == 0, result.describe()
    files = data_files(project)
    assert sorted(files) == [
        "07_model_output/slowsave_doubles.csv",
        "07_model_output/slowsave_squares.csv",
        "08_reporting/slowsave_combined.csv",
    ], sorted(files)
    return project


# --------------------------------------------------------------------------- #
# A node raises
# --------------------------------------------------------------------------- #
def test_node_error_fails_fast_cancels_and_keeps_finished_outputs(
    cluster, faults_project, rendered_project, sequential_project, tmp_path
):
    assert_cluster_idle(cluster.address)
    reset_data(faults_project, rendered_project)
    markers = tmp_path / "markers"
    markers.mkdir()
    run_nodes = DATA_PROCESSING_NODES + FAULTS_NODES
    before = executed_keys_by_worker(cluster.address)
    with inspector(cluster.address) as client:
        worker_pids = client.run(os.getpid)
    with background_kedro(
        faults_project,
        "run",
        "--env",
        "dask",
        "--pipelines",
        "data_processing,faults",
        "--params",
        f"fault_markers={markers}",
        *dask_run_args(cluster.address),
        log=tmp_path / "kedro.log",
        **{RECORD_DIR_VARIABLE: str(markers)},
    ) as run:
        result = run.wait(timeout=120)
        ended = time.time()
        driver_pid = run.pid
    described = result.describe() + "\n" + cluster.log_tails(1500)

    # kedro run fails, with the node's own exception, its name and Kedro's hint.
    assert result.returncode != 0, described
    assert "ValueError: boom" in result.output, described
    assert "explode_node" in result.output, described
    assert "--from-nodes" in result.output, described

    # The project's on_node_error hook ran on a worker of the cluster.
    errors = [r for r in read_jsonl(markers / "on_node_error.jsonl")]
    boom = [r for r in errors if r["node"] == "explode_node"]
    assert len(boom) == 1, f"on_node_error records: {errors}\n{described}"
    assert boom[0]["error"] == "ValueError: boom", boom
    assert boom[0]["pid"] != driver_pid, boom
    assert boom[0]["worker"] in worker_pids, (boom, worker_pids)
    assert worker_pids[boom[0]["worker"]] == boom[0]["pid"], (boom, worker_pids)

    # It stopped fast: well before the slow branch (2 x 20 s) would have finished.
    assert ended - boom[0]["time"] < 10, (
        f"kedro run exited {ended - boom[0]['time']:.1f} s after the node raised\n"
        f"{described}"
    )
    # The running slow node was cancelled on its worker; the next never started.
    slow_marker = markers / "slow_branch.jsonl"
    slow = wait_until(
        lambda: "cancelled" in events(slow_marker) and events(slow_marker),
        timeout=SETTLE,
    )
    assert slow == ["started", "cancelled"], f"slow branch: {read_jsonl(slow_marker)}"
    assert not (markers / "slow_branch_end.jsonl").exists()

    # The scheduler holds no task of that run.
    tokens = run_tokens(new_executed_keys(before, cluster.address), run_nodes)
    assert tokens, f"no task of the run executed on the workers\n{described}"
    (token,) = set().union(*tokens.values())
    with inspector(cluster.address) as client:

        def leftovers():
            keys = scheduler_state(client)["keys"]
            return keys_of_run(keys, token) + [
                k for k in keys if node_of_key(k, run_nodes) is not None
            ]

        left = wait_until(lambda: not leftovers(), timeout=SETTLE) or leftovers()
    assert left is True, f"the scheduler still holds tasks of the run: {left}"

    # What finished nodes persisted is intact and equals the sequential run's.
    assert sorted(data_files(faults_project)) == sorted(DATA_PROCESSING_FILES), sorted(
        data_files(faults_project)
    )
    assert_files_equal(sequential_project, faults_project, DATA_PROCESSING_FILES)


# --------------------------------------------------------------------------- #
# Bad input, refused before anything reaches the cluster
# --------------------------------------------------------------------------- #
# name -> (kedro run arguments, given the scheduler address; texts the one error
# line must contain)
BAD_INPUTS: dict[str, tuple[Callable[[str], list[str]], tuple[str, ...]]] = {
    "unpicklable_node_function": (
        lambda address: ["--pipelines", "badnode", *dask_run_args(address)],
        ("locked_node", "pickle", "lock"),
    ),
    "unpicklable_dataset": (
        lambda address: ["--pipelines", "baddataset", *dask_run_args(address)],
        ("locked_dataset", "pickle", "lock"),
    ),
    "dask_client_is_a_number": (
        lambda address: [
            "--pipelines", "slowsave", "--runner", DASK_RUNNER,
            "--params", "dask_client=5",
        ],
        ("dask_client", "int"),
    ),
    "dask_client_is_a_yaml_list": (
        # conf/badlist/parameters.yml: dask_client is a list (see add_fault_modules)
        lambda address: ["--pipelines", "slowsave", "--runner", DASK_RUNNER],
        ("dask_client", "list"),
    ),
    "unknown_dask_client_key": (
        lambda address: [
            "--pipelines", "slowsave", "--runner", DASK_RUNNER,
            "--params", f"dask_client.address={address},dask_client.bogus=1",
        ],
        ("bogus",),
    ),
    "dask_client_value_of_a_wrong_type": (
        lambda address: [
            "--pipelines", "slowsave", "--runner", DASK_RUNNER,
            "--params", f"dask_client.address={address},dask_client.worker_wait=soon",
        ],
        ("worker_wait", "a number", "soon"),
    ),
    "address_with_n_workers": (
        lambda address: [
            "--pipelines", "slowsave", "--runner", DASK_RUNNER,
            "--params", f"dask_client.address={address},dask_client.n_workers=2",
        ],
        ("n_workers", "address"),
    ),
    "runner_params_that_do_not_fit": (
        lambda address: [
            "--pipelines", "slowsave",
            *dask_run_args(address, "foo=1"),
        ],
        ("foo",),
    ),
}  # fmt: skip
_ENV_OF_CASE = {"dask_client_is_a_yaml_list": "badlist"}


@pytest.fixture(scope="module")
def bad_input_runs(cluster, faults_project):
    """Every bad-input ``kedro run``, a few at a time, against the shared
    cluster; with what the scheduler had seen before and after them."""
    before = assert_cluster_idle(cluster.address)

    def run(case: str) -> Result:
        make_args, _ = BAD_INPUTS[case]
        env = _ENV_OF_CASE.get(case, "dask")
        return kedro_run(
            faults_project, "run", "--env", env, *make_args(cluster.address),
            timeout=120,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(BAD_INPUTS, pool.map(run, BAD_INPUTS), strict=True))
    with inspector(cluster.address) as client:
        after = scheduler_state(client)
    return results, before, after


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_error_before_submitting(case, bad_input_runs):
    results, before, after = bad_input_runs
    result = results[case]
    assert_one_clear_error(result, *BAD_INPUTS[case][1])
    assert "TypeError" not in result.output, result.describe()
    # The scheduler never saw a task: no transition, no new task prefix.
    assert after["transitions"] == before["transitions"], (before, after)
    assert after["prefixes"] == before["prefixes"], (before, after)
    assert not after["keys"], after


# --------------------------------------------------------------------------- #
# The scheduler cannot be reached
# --------------------------------------------------------------------------- #
# name -> (address, runner params, upper bound of the whole kedro run in seconds)
UNKNOWN_HOST = "tcp://nonexistent.invalid:8786"
UNREACHABLE = {
    "nothing_listening_timeout_2": ("free-port", "client_args.timeout=2", 20),
    "unknown_host_timeout_2": (UNKNOWN_HOST, "client_args.timeout=2", 20),
    "nothing_listening_default_timeout": ("free-port", None, 30),
    "unknown_host_default_timeout": (UNKNOWN_HOST, None, 30),
}


@pytest.fixture(scope="module")
def unreachable_runs(faults_project):
    """The unreachable-scheduler runs, all at once (each waits on the network,
    not the CPU)."""

    def run(case: str) -> tuple[str, Result]:
        address, runner_params, _ = UNREACHABLE[case]
        if address == "free-port":
            address = f"tcp://127.0.0.1:{free_port()}"
        if runner_params:  # the address from --runner-params, with a timeout
            args = dask_run_args(address, runner_params)
        else:  # the address from conf/dask, overridden by --params
            args = [
                "--runner",
                DASK_RUNNER,
                "--params",
                f"dask_client.address={address}",
            ]
        return address, kedro_run(
            faults_project, "run", "--env", "dask", "--pipelines", "slowsave", *args,
            timeout=120,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=len(UNREACHABLE)) as pool:
        return dict(zip(UNREACHABLE, pool.map(run, UNREACHABLE), strict=True))


@pytest.mark.parametrize("case", list(UNREACHABLE))
def test_unreachable_scheduler_is_one_line_within_the_timeout(case, unreachable_runs):
    address, result = unreachable_runs[case]
    line = assert_one_clear_error(result, address)
    assert "connect" in line.lower(), line
    bound = UNREACHABLE[case][2]
    assert result.duration < bound, (
        f"took {result.duration:.1f} s (bound {bound} s)\n{result.describe()}"
    )


# --------------------------------------------------------------------------- #
# Two runs at once on one scheduler
# --------------------------------------------------------------------------- #
def test_two_concurrent_runs_on_one_scheduler_do_not_collide(
    cluster, faults_project, rendered_project, slowsave_reference
):
    """The same project run twice at once (same files, same bytes): both succeed
    and their tasks carry two distinct run tokens."""
    assert_cluster_idle(cluster.address)
    reset_data(faults_project, rendered_project)
    before = executed_keys_by_worker(cluster.address)
    args = [
        "run", "--env", "dask", "--pipelines", "slowsave",
        "--params", "slowsave_sleep=1", *dask_run_args(cluster.address),
    ]  # fmt: skip
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(lambda _: kedro_run(faults_project, *args, timeout=180), range(2))
        )
    for result in results:
        assert result.returncode == 0, result.describe() + "\n" + cluster.log_tails()
    assert_same_outputs_exactly(slowsave_reference, faults_project)

    tokens = run_tokens(new_executed_keys(before, cluster.address), SLOWSAVE_NODES)
    assert set(tokens) == set(SLOWSAVE_NODES), tokens
    all_tokens = set().union(*tokens.values())
    assert len(all_tokens) == 2, tokens
    for node, node_tokens in tokens.items():
        assert node_tokens == all_tokens, f"{node} ran for {node_tokens} only"


def assert_same_outputs_exactly(expected: Path, actual: Path) -> None:
    want, got = data_files(expected), data_files(actual)
    assert sorted(got) == sorted(want), (sorted(got), sorted(want))
    assert_files_equal(expected, actual, sorted(want))


# --------------------------------------------------------------------------- #
# Ctrl-C
# --------------------------------------------------------------------------- #
def _wait_for_marker(run: BackgroundRun, marker: Path, timeout: float = 90) -> None:
    started = wait_until(
        lambda: "started" in events(marker) or not run.running(), timeout
    )
    if not started or not run.running():
        pytest.fail(f"the slow node never started\n{tail(run.output())}", pytrace=False)


@pytest.mark.parametrize(
    ("to_the_group", "node_heeds_cancel"),
    [
        # Ctrl-C in a terminal signals the whole foreground process group, the
        # LocalCluster's worker processes included; the node, like most code,
        # cannot be interrupted by Dask.
        pytest.param(True, False, id="terminal_ctrl_c"),
        pytest.param(False, True, id="sigint_to_kedro_only"),
    ],
)
def test_ctrl_c_with_the_embedded_local_cluster(
    faults_project, tmp_path, to_the_group, node_heeds_cancel
):
    """Within 3 s: exit non-zero, no traceback, no worker or nanny left."""
    marker = tmp_path / "slow.jsonl"
    extra_env = {} if node_heeds_cancel else {"FAULT_NODES_IGNORE_CANCEL": "1"}
    with background_kedro(
        faults_project,
        "run",
        "--pipelines",
        "slowsave",
        "--params",
        f"slowsave_sleep=60,slowsave_marker={marker}",
        "--runner",
        DASK_RUNNER,
        "--runner-params",
        "client_args.n_workers=2,client_args.threads_per_worker=1",
        log=tmp_path / "kedro.log",
        **extra_env,
    ) as run:
        _wait_for_marker(run, marker)
        children = descendants(run.pid)
        worker_pid = read_jsonl(marker)[0]["pid"]
        assert worker_pid in {c.pid for c in children}, (worker_pid, children)
        sent = time.monotonic()
        # The run leads its own process group (background_kedro), as a shell job.
        (os.killpg if to_the_group else os.kill)(run.pid, signal.SIGINT)
        result = run.wait(timeout=15)  # fails the test beyond 15 s
        took = time.monotonic() - sent
        survivors = wait_until(lambda: not alive(children), 2) or alive(children)
    assert result.returncode != 0, result.describe()
    assert took < 3, f"exited {took:.1f} s after SIGINT\n{result.describe()}"
    assert "Traceback" not in result.output, result.describe()
    assert "Task exception was never retrieved" not in result.output, result.describe()
    assert survivors is True, (
        f"still running after kedro exited: "
        f"{[(p.pid, p.cmdline()) for p in survivors]}\n{result.describe()}"
    )


def _ctrl_c_exits_cleanly(run: BackgroundRun, noise: tuple[str, ...]) -> None:
    """Ctrl-C to ``run``'s process group, as a terminal sends it: a non-zero
    exit within 3 s, none of ``noise`` in the output, none of its processes
    left running."""
    children = descendants(run.pid)
    sent = time.monotonic()
    os.killpg(run.pid, signal.SIGINT)
    result = run.wait(timeout=15)  # fails the test beyond 15 s
    took = time.monotonic() - sent
    survivors = wait_until(lambda: not alive(children), 2) or alive(children)
    assert result.returncode != 0, result.describe()
    assert took < 3, f"exited {took:.1f} s after SIGINT\n{result.describe()}"
    for text in noise:
        assert text not in result.output, result.describe()
    assert survivors is True, [(p.pid, p.cmdline()) for p in survivors]


def test_ctrl_c_as_the_example_pipeline_runs_on_the_embedded_cluster(
    faults_project, tmp_path
):
    """Ctrl-C in the terminal while the example pipeline's first task (a chain
    ending in a node with several in-memory outputs) runs: within 3 s, no
    traceback (the scheduler's cancel of a task whose parts nobody wants
    asserted and logged one), nothing left. A century of days instead of two
    years keeps that first task running for seconds, not the quarter of a
    second the default data takes, so that it is still running when the
    SIGINT comes, on a fast machine too."""
    with background_kedro(
        faults_project,
        *("run", "--pipelines", EXAMPLE_PIPELINES, "--runner", DASK_RUNNER),
        *("--params", "raw_data.n_days=36500"),
        log=tmp_path / "kedro.log",
    ) as run:
        started = wait_until(
            lambda: "Started a Dask LocalCluster" in run.output() or not run.running(),
            90,
        )
        assert started and run.running(), tail(run.output())
        time.sleep(0.3)  # the first task is submitted, and runs for ~2.5 s here
        assert "Completed 4 out of" not in run.output(), tail(run.output())
        _ctrl_c_exits_cleanly(
            run, ("Traceback", "CRITICAL", "Task exception was never retrieved")
        )


def _cluster_processes(pid: int) -> list[psutil.Process]:
    """The processes multiprocessing started under ``pid`` for a LocalCluster:
    its forkserver and the workers forked from it (or spawned workers)."""
    found = []
    for proc in descendants(pid):
        with contextlib.suppress(psutil.Error):
            if is_worker_process(proc) or "forkserver" in " ".join(proc.cmdline()):
                found.append(proc)
    return found


def test_ctrl_c_while_the_embedded_cluster_starts(faults_project, tmp_path):
    """Ctrl-C in the terminal as soon as the embedded LocalCluster's processes
    exist, while they still import Dask: within 3 s, no traceback (a process
    that got the SIGINT then printed a KeyboardInterrupt traceback each),
    nothing left."""
    with background_kedro(
        faults_project,
        *("run", "--pipelines", EXAMPLE_PIPELINES, "--runner", DASK_RUNNER),
        log=tmp_path / "kedro.log",
    ) as run:
        started = wait_until(
            lambda: _cluster_processes(run.pid) or not run.running(),
            90,
            interval=0.02,
        )
        assert started and run.running(), tail(run.output())
        time.sleep(0.2)  # well into their imports, which take about a second
        assert "Started a Dask LocalCluster" not in run.output(), tail(run.output())
        _ctrl_c_exits_cleanly(run, ("Traceback", "KeyboardInterrupt", "CRITICAL"))


def test_ctrl_c_against_an_external_scheduler_leaves_no_task(
    cluster, faults_project, tmp_path
):
    assert_cluster_idle(cluster.address)
    marker = tmp_path / "slow.jsonl"
    with (
        inspector(cluster.address) as client,
        background_kedro(
            faults_project,
            "run",
            "--env",
            "dask",
            "--pipelines",
            "slowsave",
            "--params",
            f"slowsave_sleep=60,slowsave_marker={marker}",
            *dask_run_args(cluster.address),
            log=tmp_path / "kedro.log",
        ) as run,
    ):
        _wait_for_marker(run, marker)
        busy = [k for keys in executing(client).values() for k in keys]
        tokens = run_tokens(busy, SLOWSAVE_NODES).get("slow_square_node")
        assert tokens, f"slow_square_node is not executing: {busy}"
        (token,) = tokens
        assert keys_of_run(scheduler_state(client)["keys"], token)
        sent = time.monotonic()
        os.kill(run.pid, signal.SIGINT)
        result = run.wait(timeout=15)
        took = time.monotonic() - sent
        left = wait_until(
            lambda: not keys_of_run(scheduler_state(client)["keys"], token), SETTLE
        ) or keys_of_run(scheduler_state(client)["keys"], token)
        # The cancelled node gave its worker thread back.
        freed = wait_until(lambda: "cancelled" in events(marker), SETTLE)
    assert result.returncode != 0, result.describe()
    assert took < 15, took
    assert left is True, f"the scheduler still holds tasks of the run: {left}"
    assert freed, f"the slow node was not cancelled on its worker: {events(marker)}"


# --------------------------------------------------------------------------- #
# Workers die
# --------------------------------------------------------------------------- #
def _worker_process(client: Client, address: str, nannies) -> psutil.Process:
    """The ``dask worker`` child process (under its nanny) serving ``address``."""
    pid = client.run(os.getpid, workers=[address])[address]
    process = psutil.Process(pid)
    assert process.parent().pid in {nanny.pid for nanny in nannies}, (
        f"worker pid {pid} is not the child of a nanny we started"
    )
    return process


def _executing_node(client: Client, node: str) -> tuple[str, str] | None:
    """(worker address, key) of the worker executing ``node``, if one is."""
    for address, keys in executing(client).items():
        for key in keys:
            if node_of_key(key, [node]) == node:
                return address, key
    return None


@contextlib.contextmanager
def _run_on_two_workers(
    project: Path, pipeline: str, params: str, tmp_path: Path, *runner_params: str
) -> Iterator[tuple[DaskCluster, Client, BackgroundRun]]:
    """A real scheduler with two workers for ``project``, a client looking at it,
    and ``kedro run --env dask --pipelines <pipeline> --params <params>`` running
    on it in the background, to kill workers under."""
    with (
        dask_cluster(project, n_workers=2) as cluster,
        inspector(cluster.address) as client,
        background_kedro(
            project,
            *("run", "--env", "dask", "--pipelines", pipeline, "--params", params),
            *dask_run_args(cluster.address, *runner_params),
            log=tmp_path / "kedro.log",
        ) as run,
    ):
        yield cluster, client, run


def test_worker_killed_mid_run_the_run_completes(
    rendered_project, slowsave_reference, tmp_path
):
    """SIGKILL the worker process running the slow node, a few seconds into it:
    its nanny starts a new worker, Dask runs the lost tasks again, and the run
    ends as an undisturbed one."""
    project = fault_project(rendered_project, tmp_path / "project")
    marker = tmp_path / "slow.jsonl"
    with _run_on_two_workers(
        project, "slowsave", f"slowsave_sleep=6,slowsave_marker={marker}", tmp_path
    ) as (killed, client, run):
        _wait_for_marker(run, marker)
        found = wait_until(lambda: _executing_node(client, "slow_square_node"), 10)
        assert found, f"slow_square_node is not executing\n{tail(run.output())}"
        address, key = found
        victim = _worker_process(client, address, killed.workers)
        # Kill it a while into the node, as a crash would: not at its first instant.
        kill_at = read_jsonl(marker)[0]["time"] + 2.5
        time.sleep(max(0.0, kill_at - time.time()))
        assert _executing_node(client, "slow_square_node") == found, (
            "the slow node is no longer executing where it was: too late to kill"
        )
        victim.kill()
        victim.wait(10)
        result = run.wait(timeout=120)
        scheduler_log = killed.logs["scheduler"].read_text(errors="replace")
    assert result.returncode == 0, (
        "the run failed after a worker died; the scheduler said:\n"
        + "\n".join(problems(scheduler_log))
        + f"\n{result.describe()}"
    )
    started = [r for r in read_jsonl(marker) if r["event"] == "started"]
    assert len(started) == 2 and started[0]["pid"] == victim.pid, started
    assert started[1]["pid"] != victim.pid, started
    assert_same_outputs_exactly(slowsave_reference, project)


@pytest.mark.parametrize("fuse", ["true", "false"], ids=["fused", "one-node-a-task"])
def test_a_dead_worker_costs_no_finished_node_a_second_run(
    rendered_project, tmp_path, fuse
):
    """SIGKILL every worker that ran a node of ``reruns`` once those nodes have
    finished, while ``slow_node`` keeps ``join_node`` waiting: a node whose
    outputs are all persisted (alone, or a chain handing data in memory) runs
    once; ``mixed_node``, whose in-memory output went with its worker, runs
    again, is named in the log, and its versioned dataset keeps one version."""
    project = fault_project(rendered_project, tmp_path / "project")
    marker = tmp_path / "runs.jsonl"
    finished_first = {"persisted_node", "chain_tail_node", "mixed_node"}
    with _run_on_two_workers(
        project,
        "reruns",
        f"reruns_sleep=10,reruns_marker={marker}",
        tmp_path,
        f"fuse_chains={fuse}",
    ) as (cluster, client, run):

        def ran() -> dict[str, list[int]]:
            pids: dict[str, list[int]] = {}
            for line in read_jsonl(marker) if marker.exists() else []:
                pids.setdefault(line["node"], []).append(line["pid"])
            return pids

        # Their outputs are saved by the time the next node starts: wait for
        # the files, and for the driver to have seen the tasks finish.
        done = wait_until(
            lambda: (
                finished_first <= ran().keys()
                and all(
                    f"Completed node: {name}" in run.output() for name in finished_first
                )
            ),
            60,
        )
        assert done, f"{ran()}\n{tail(run.output())}"
        assert run.running(), tail(run.output())
        pids = {pid for name in finished_first for pid in ran()[name]}
        workers = client.run(os.getpid)
        victims = [
            _worker_process(client, address, cluster.workers)
            for address, pid in workers.items()
            if pid in pids
        ]
        for victim in victims:
            victim.kill()
            victim.wait(10)
        result = run.wait(timeout=120)
    assert result.returncode == 0, result.describe()
    runs = {name: len(found) for name, found in ran().items()}
    assert runs["persisted_node"] == 1, runs
    assert runs["chain_head_node"] == runs["chain_tail_node"] == 1, runs
    assert runs["join_node"] == 1, runs
    # The mixed node ran again for its in-memory output, and said so...
    assert runs["mixed_node"] == 2, runs
    warning = next(
        (line for line in result.output.splitlines() if "left holding" in line), ""
    )
    assert "'mixed_node'" in warning, result.describe()
    # ...but saved its versioned dataset once.
    versions = list((project / "data/07_model_output/reruns_versioned.csv").iterdir())
    assert len(versions) == 1, versions
    joined = pd.read_csv(project / "data/08_reporting/reruns_joined.csv")
    assert joined.iloc[0]["mixed"] == joined.iloc[0]["persisted"], joined


def test_no_worker_ever_joined_is_a_clear_bounded_error(faults_project):
    # A real scheduler that no worker ever joins.
    with start_cluster({}, worker_env=base_env()) as scheduler:
        address = scheduler.address
        result = kedro_run(
            faults_project,
            "run",
            "--env",
            "dask",
            "--pipelines",
            "slowsave",
            *dask_run_args(address, "client_args.worker_wait=3"),
            timeout=60,
        )
        with inspector(address) as client:
            state = scheduler_state(client)
    line = assert_one_clear_error(result, address)
    assert "worker" in line.lower(), line
    assert result.duration < 30, result.describe()
    assert not state["keys"] and not state["prefixes"], state


def test_all_workers_killed_mid_run_is_a_clear_bounded_error(
    rendered_project, tmp_path
):
    """SIGKILL every nanny and worker (none comes back): the run fails within
    ``worker_wait`` and change, saying the workers are gone."""
    project = fault_project(rendered_project, tmp_path / "project")
    marker = tmp_path / "slow.jsonl"
    with (
        dask_cluster(project, n_workers=2) as doomed,
        background_kedro(
            project,
            "run",
            "--env",
            "dask",
            "--pipelines",
            "slowsave",
            "--params",
            f"slowsave_sleep=60,slowsave_marker={marker}",
            *dask_run_args(doomed.address, "client_args.worker_wait=3"),
            log=tmp_path / "kedro.log",
        ) as run,
    ):
        _wait_for_marker(run, marker)
        for group_leader in doomed.workers:  # nanny and its worker: one group each
            _kill_group(group_leader, signal.SIGKILL)
        killed = time.monotonic()
        result = run.wait(timeout=60)
        took = time.monotonic() - killed
    line = assert_one_clear_error(result, doomed.address)
    assert "worker" in line.lower(), line
    assert took < 30, f"{took:.1f} s\n{result.describe()}"


def test_the_only_worker_a_node_can_use_leaves_mid_run(rendered_project, tmp_path):
    """``combine_node`` asks for a GPU, which only worker ``gpu1`` offers; its
    nanny and worker are SIGKILLed (none comes back) while the slow node runs
    on ``cpu1``: once ``combine_node`` is ready no worker can take it, and the
    run fails within ``worker_wait`` and change, naming the node and the
    resource, instead of waiting for ever."""
    project = fault_project(rendered_project, tmp_path / "project")
    marker = tmp_path / "slow.jsonl"
    with start_cluster(
        {"cpu1": None, "gpu1": "GPU=1"},
        worker_env=base_env(project),
        worker_cwd=project,
    ) as cluster:
        env = project / "conf" / "gpu_leaves"
        env.mkdir(parents=True)
        (env / "parameters.yml").write_text(
            f"dask_client:\n  address: {cluster.address}\n  worker_wait: 3\n"
            "dask_runner:\n  node_options:\n"
            "    - nodes: [combine_node]\n      resources: {GPU: 1}\n"
        )
        with background_kedro(
            project,
            *("run", "--env", "gpu_leaves", "--pipelines", "slowsave"),
            "--params",
            f"slowsave_sleep=4,slowsave_marker={marker}",
            *("--runner", DASK_RUNNER),
            log=tmp_path / "kedro.log",
        ) as run:
            _wait_for_marker(run, marker)
            gpu = cluster.workers[cluster.worker_names.index("gpu1")]
            _kill_group(gpu, signal.SIGKILL)
            killed = time.monotonic()
            result = run.wait(timeout=90)
            took = time.monotonic() - killed
    line = assert_one_clear_error(result, cluster.address, "combine_node", "GPU")
    assert "worker_wait" in line and "1 worker(s)" in line, line
    assert "Completed node: slow_square_node" in result.output, result.describe()
    assert took < 30, f"{took:.1f} s\n{result.describe()}"


@pytest.mark.parametrize("recorded", [False, True], ids=["plain", "run_record"])
def test_scheduler_killed_mid_run_names_it_and_what_finished(
    rendered_project, tmp_path, recorded
):
    """SIGKILL the scheduler while the slow node runs: one line saying the
    scheduler at that address was lost, which nodes had finished, Kedro's resume
    hint above it, and an exit bounded by the connect timeout. With a run record
    asked for, the same: collecting the workers' measurements at the end does
    not wait for the lost scheduler, and the record holds what finished."""
    project = fault_project(rendered_project, tmp_path / "project")
    marker = tmp_path / "slow.jsonl"
    record = tmp_path / "record" / "run.json"
    options = [f"run_record={record}"] if recorded else []
    with (
        dask_cluster(project, n_workers=2) as doomed,
        background_kedro(
            project,
            *("run", "--env", "dask", "--pipelines", "slowsave"),
            "--params",
            f"slowsave_sleep=60,slowsave_marker={marker}",
            *dask_run_args(doomed.address, "client_args.timeout=5", *options),
            log=tmp_path / "kedro.log",
        ) as run,
    ):
        _wait_for_marker(run, marker)
        if recorded:  # workers send measurements within a quarter of a second
            time.sleep(1)
        _kill_group(doomed.scheduler, signal.SIGKILL)
        killed = time.monotonic()
        result = run.wait(timeout=60)
        took = time.monotonic() - killed
    line = assert_one_clear_error(result, doomed.address, "lost during the run")
    assert "make_numbers_node" in line, line  # it finished before the slow node
    assert "--from-nodes" in result.output, result.describe()
    assert took < 20, f"{took:.1f} s\n{result.describe()}"
    if recorded:
        nodes = [n["node"] for n in json.loads(record.read_text())["nodes"]]
        assert "make_numbers_node" in nodes, result.describe()


def test_a_node_that_kills_its_workers_is_named_in_one_line(rendered_project, tmp_path):
    """A node whose process dies (SIGKILL, as the out-of-memory killer does):
    after Dask's allowed failures, one line naming the node, how many workers
    died, their memory limit and what to change; the node before it finished."""
    project = fault_project(rendered_project, tmp_path / "project")
    with dask_cluster(project, n_workers=2) as cluster:
        result = kedro_run(
            project,
            *("run", "--env", "dask", "--pipelines", "killer"),
            *dask_run_args(cluster.address, "fuse_chains=false"),  # one node a task
            timeout=180,
        )
    line = assert_one_clear_error(result, "'killer_node'", "killed 4 Dask workers")
    assert "numbers_node" not in line, line
    assert "memory limit" in line and "node_options" in line, line
    assert "Completed node: numbers_node" in result.output, result.describe()
