"""Shared fixtures and helpers for the starter's end-to-end tests.

Everything here is real: projects are rendered with cookiecutter / ``kedro new``,
``kedro run`` is a subprocess, and Dask clusters are real ``dask scheduler`` /
``dask worker`` processes listening on 127.0.0.1. Every process a helper starts
runs in its own process group, which is killed when the helper or fixture ends,
whether the test passed or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from cookiecutter.main import cookiecutter
from distributed import Client

from . import probes

KEDRO = str(Path(sys.executable).with_name("kedro"))
"""The ``kedro`` command of the test environment, as users run it: the console
script, not ``python -m kedro`` (multiprocessing's spawn runs the main script
again in each worker process it starts; not a module run with ``-m``)."""

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = REPO_ROOT / "{{ cookiecutter.repo_name }}"
TEMPLATE_PACKAGE_DIR = TEMPLATE_DIR / "src" / "{{ cookiecutter.python_package }}"
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
RECORD_DIR_VARIABLE = "KEDRO_TEST_RECORD_DIR"  # see fixtures/recorded_project

# Project overlays, copied into projects by ``add_overlay``: not test modules.
collect_ignore = ["fixtures"]

PROJECT_NAME = "Dask Demo"
REPO_NAME = "dask-demo"
PACKAGE = "dask_demo"
DASK_RUNNER = f"{PACKAGE}.runner.DaskRunner"

# Upper bounds, in seconds. Generous for a loaded 2-core machine, but finite.
RENDER_TIMEOUT = 120
KEDRO_RUN_TIMEOUT = 300
CLUSTER_START_TIMEOUT = 90
TAIL = 6000  # characters of captured output quoted in assertion messages

# Kedro writes dataset versions in folders named like 2024-01-31T12.34.56.789Z.
_VERSION_DIR = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z")


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the processes the tests start, as it does a user's.

    A background job of a non-interactive shell (``pytest ... &`` in a script,
    as CI may start the tests) begins with SIGINT ignored, and every process
    started from it inherits that: the tests that send kedro a SIGINT would
    find it deaf. A handler of our own is reset to the default in each child
    (an ignored signal stays ignored), so the children start as a terminal's
    jobs do.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# --------------------------------------------------------------------------- #
# Small helpers
# --------------------------------------------------------------------------- #
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(text: str, size: int = TAIL) -> str:
    return text if len(text) <= size else "...\n" + text[-size:]


def base_env(project_dir: Path | None = None) -> dict[str, str]:
    """Environment for subprocesses: telemetry off, wide un-coloured logs and,
    given a project, ``<project>/src`` on ``PYTHONPATH``."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTEST_ADDOPTS", "KEDRO_ENV", "KEDRO_LOGGING_CONFIG"):
        env.pop(name, None)
    env.update(
        KEDRO_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        COLUMNS="250",  # rich wraps log lines at the terminal width
        NO_COLOR="1",
        TERM="dumb",
    )
    if project_dir is not None:
        env["PYTHONPATH"] = str(Path(project_dir) / "src")
    return env


def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the process group ``proc`` leads (started with a new session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _stop(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left of it."""
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # Children (nanny -> worker) may outlive the leader: kill the whole group.
    _kill_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


@dataclass
class Result:
    args: list[str]
    returncode: int
    output: str  # stdout and stderr, interleaved
    duration: float

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n"
            f"exit code {self.returncode} after {self.duration:.1f} s\n"
            f"{tail(self.output)}"
        )


def run_cmd(
    args: list[str],
    cwd: Path,
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> Result:
    """Run a command in its own process group, bounded by ``timeout``.

    Returns the exit code and the combined output. On timeout, the whole process
    group is killed and the test fails with the output collected so far. The
    group is killed after a normal exit too, so nothing the command spawned (a
    LocalCluster's workers, say) survives it.
    """
    start = time.monotonic()
    proc = subprocess.Popen(
        [str(a) for a in args],
        cwd=cwd,
        env=env if env is not None else base_env(),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            output, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            output = "<no output: pipe still held open>"
        pytest.fail(
            f"Timed out after {timeout} s: {' '.join(map(str, args))}\n{tail(output)}",
            pytrace=False,
        )
    finally:
        _kill_group(proc)
    return Result(
        [str(a) for a in args], proc.returncode, output, time.monotonic() - start
    )


def error_lines(output: str) -> list[str]:
    """Lines reporting an error: ``<Type>Error: ...`` / ``Error: ...``."""
    return [
        line
        for line in output.splitlines()
        if re.search(r"(^|[\s.])\w*Error: ", line) and "Warning" not in line
    ]


def assert_one_clear_error(result: Result, *needles: str) -> str:
    """What a user reads when the README promises one line: a non-zero exit, no
    traceback, no ``NoneType: None`` and exactly one error line, naming
    ``needles``."""
    assert result.returncode != 0, result.describe()
    assert "Traceback" not in result.output, result.describe()
    assert "NoneType: None" not in result.output, result.describe()
    lines = error_lines(result.output)
    assert len(lines) == 1, f"expected one error line, got {lines}\n{result.describe()}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def is_worker_process(proc: psutil.Process) -> bool:
    """Whether ``proc`` is a Dask worker process multiprocessing started for a
    LocalCluster: spawned (``spawn_main``), or forked by a forkserver, as the
    runner's embedded cluster forks them."""
    with contextlib.suppress(psutil.Error):
        if "spawn_main" in " ".join(proc.cmdline()):
            return True
        parent = proc.parent()
        return parent is not None and "forkserver" in " ".join(parent.cmdline())
    return False


def kedro(
    project_dir: Path,
    *args: str,
    timeout: float = KEDRO_RUN_TIMEOUT,
    **extra_env: str,
) -> Result:
    """``kedro <args>`` from ``project_dir``, with ``extra_env``."""
    return run_cmd(
        [KEDRO, *args],
        cwd=project_dir,
        timeout=timeout,
        env={**base_env(project_dir), **extra_env},
    )


def kedro_ok(
    project_dir: Path, *args: str, timeout: float = KEDRO_RUN_TIMEOUT
) -> Result:
    result = kedro(project_dir, *args, timeout=timeout)
    assert result.returncode == 0, result.describe()
    return result


def copy_project(project_dir: Path, dest_parent: Path) -> Path:
    """Copy a project (keeping its folder name) into ``dest_parent``."""
    dest = Path(dest_parent) / Path(project_dir).name
    shutil.copytree(
        project_dir,
        dest,
        ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".ruff_cache"),
    )
    return dest


def reset_data(project_dir: Path, pristine_dir: Path) -> None:
    """Put ``data/`` back to what the freshly rendered project had."""
    shutil.rmtree(project_dir / "data")
    shutil.copytree(pristine_dir / "data", project_dir / "data")


def data_files(project_dir: Path) -> dict[str, Path]:
    """Every file under ``data/`` except ``.gitkeep``, keyed by a relative path in
    which dataset version folders are replaced by ``<version>``."""
    data = Path(project_dir) / "data"
    files = {}
    for path in sorted(data.rglob("*")):
        if path.is_file() and path.name != ".gitkeep":
            rel = _VERSION_DIR.sub("<version>", path.relative_to(data).as_posix())
            files[rel] = path
    return files


def _is_parquet(rel: str) -> bool:
    return any(part.endswith(".parquet") for part in rel.split("/"))


def assert_same_outputs(expected_dir: Path, actual_dir: Path) -> dict[str, Path]:
    """The two projects hold the same data files with the same contents: CSV and
    other files byte for byte, Parquet files as equal DataFrames."""
    expected, actual = data_files(expected_dir), data_files(actual_dir)
    assert sorted(actual) == sorted(expected), "different sets of data files"
    for rel, path in expected.items():
        if _is_parquet(rel):
            want, got = pd.read_parquet(path), pd.read_parquet(actual[rel])
            assert got.equals(want), (
                f"{rel} differs:\nexpected\n{want.head()}\ngot\n{got.head()}"
            )
        else:
            assert actual[rel].read_bytes() == path.read_bytes(), f"{rel} differs"
    return expected


def assert_has_csv_and_parquet(files: dict[str, Path]) -> None:
    assert files, "the run persisted no data file"
    assert any(rel.endswith(".csv") for rel in files), sorted(files)
    assert any(_is_parquet(rel) for rel in files), sorted(files)


def pipeline_node_names(project_dir: Path, pipeline: str = "__default__") -> list[str]:
    """Node names of a registered pipeline (comma-separated names: their union),
    as the project's ``kedro registry describe`` lists them."""
    names: set[str] = set()
    for name in pipeline.split(","):
        result = kedro_ok(project_dir, "registry", "describe", name, timeout=120)
        _, found, listing = result.output.partition("\nNodes:\n")
        assert found, f"no node listing\n{result.describe()}"
        names.update(re.findall(r"^- (\S+) \(", listing, re.MULTILINE))
    assert names, f"the pipeline {pipeline!r} has no node"
    return sorted(names)


# --------------------------------------------------------------------------- #
# Project overlays (tests/fixtures) and what their hooks record
# --------------------------------------------------------------------------- #
def add_overlay(project: Path, overlay: str, **placeholders: str) -> Path:
    """Copy ``tests/fixtures/<overlay>`` over ``project`` (a copy), replacing
    ``PACKAGE_NAME`` in paths and texts by the package name, and each other
    ``placeholders`` key in texts by its value. Existing files are refused: an
    overlay adds to a project, it does not change what the template renders."""
    replace = {"PACKAGE_NAME": PACKAGE, **placeholders}
    source = FIXTURES_DIR / overlay
    assert source.is_dir(), source
    for path in sorted(source.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(source).as_posix().replace("PACKAGE_NAME", PACKAGE)
        dest = Path(project) / rel
        assert not dest.exists(), f"{overlay} would overwrite {rel}"
        text = path.read_text()
        for placeholder, value in replace.items():
            text = text.replace(placeholder, value)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    return project


def add_run_recorder(project: Path) -> Path:
    """Add the ``recorded_project`` overlay and register its ``RunRecorder`` hook
    in the project's settings: with ``RECORD_DIR_VARIABLE`` set for ``kedro
    run``, every node that runs, and every error a node raises, is recorded
    where it happened (see ``recorded_nodes``)."""
    add_overlay(project, "recorded_project")
    settings = Path(project) / "src" / PACKAGE / "settings.py"
    settings.write_text(
        settings.read_text()
        + "\n\n# Added by the starter's tests: tests/fixtures/recorded_project.\n"
        + "from .recording_hooks import HOOKS  # noqa: E402, F401\n"
    )
    return project


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def recorded_nodes(record_dir: Path) -> list[dict]:
    """What ``RunRecorder`` saw: one record per node run, with ``node``, the
    ``worker`` address and ``worker_name`` it ran on, ``pid`` and ``time``."""
    return read_jsonl(Path(record_dir) / "nodes.jsonl")


def workers_of_nodes(record_dir: Path) -> dict[str, list[str | None]]:
    """Node name -> the name of the Dask worker of each of its runs (None for a
    run outside a worker), from ``recorded_nodes``."""
    ran_on: dict[str, list[str | None]] = {}
    for entry in recorded_nodes(record_dir):
        ran_on.setdefault(entry["node"], []).append(entry["worker_name"])
    return ran_on


def run_recorded(
    project: Path, record_dir: Path, *args: str, timeout: float = KEDRO_RUN_TIMEOUT
) -> tuple[Result, dict[str, list[str | None]]]:
    """``kedro <args>`` in a project with ``add_run_recorder``, recording into
    ``record_dir`` (new): the result, and node -> the Dask worker name of each of
    its runs (``workers_of_nodes``)."""
    record_dir = Path(record_dir)
    assert not recorded_nodes(record_dir), f"{record_dir} already holds records"
    env = {RECORD_DIR_VARIABLE: str(record_dir)}
    result = kedro(project, *args, timeout=timeout, **env)
    return result, workers_of_nodes(record_dir)


def _browser_program(name: str) -> str:
    """A program the browser tests need: missing, the test fails (never skips)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: the browser tests need Debian's "
            "chromium and chromium-driver (.ci/run installs them)",
            pytrace=False,
        )
    return path


@contextlib.contextmanager
def headless_chromium() -> Iterator[Any]:
    """A Selenium driver of a headless Chromium with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = _browser_program("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1600,1000")
    service = Service(executable_path=_browser_program("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


BROWSER_TIMEOUT = 60  # seconds for a page to draw what a browser test waits for


def wait_in_browser(driver: Any, drawn: Any, not_drawn: Any, screenshot: Path) -> Any:
    """What ``drawn(driver)`` returns once it is true (a Selenium wait of
    ``BROWSER_TIMEOUT`` seconds); else the test fails with ``not_drawn()``, what
    the page shows, and a ``screenshot`` of it."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, BROWSER_TIMEOUT).until(drawn)
    except TimeoutException:
        driver.save_screenshot(str(screenshot))
        pytest.fail(
            f"{not_drawn()} within {BROWSER_TIMEOUT} s (screenshot {screenshot})"
        )


def render_with_cookiecutter(output_dir: Path, **extra_context: str) -> Path:
    """Render the starter with the cookiecutter Python API."""
    return Path(
        cookiecutter(
            str(REPO_ROOT),
            no_input=True,
            extra_context=extra_context,
            output_dir=str(output_dir),
        )
    )


# --------------------------------------------------------------------------- #
# Real Dask clusters
# --------------------------------------------------------------------------- #
@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    worker_names: list[str]
    logs: dict[str, Path] = field(default_factory=dict)
    security: Any = None  # a distributed.Security for a TLS cluster

    def log_texts(self) -> dict[str, str]:
        return {n: p.read_text(errors="replace") for n, p in self.logs.items()}

    def log_tails(self, size: int = 3000) -> str:
        parts = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace") if path.exists() else ""
            header = f"----- {name} (exit code {self._exit(name)}) -----"
            parts.append(f"{header}\n{tail(text, size)}")
        return "\n".join(parts)

    def _exit(self, name: str) -> int | None:
        procs = {"scheduler": self.scheduler}
        # Workers not started yet (the scheduler failed first) have no process.
        procs.update(zip(self.worker_names, self.workers, strict=False))
        proc = procs.get(name)
        return proc.poll() if proc else None


def _spawn(args: list[str], log: Path, cwd: Path, env: dict) -> subprocess.Popen:
    """Start ``args`` in a session (process group) of its own, output to ``log``."""
    with log.open("w") as handle:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_workers(cluster: DaskCluster, deadline: float) -> None:
    """Return once exactly ``cluster.worker_names`` have joined the scheduler;
    else fail with the processes' logs."""
    names = sorted(cluster.worker_names)
    try:
        with Client(
            cluster.address,
            timeout=max(10.0, deadline - time.monotonic()),
            security=cluster.security,
            set_as_default=False,
        ) as client:
            if names:
                remaining = max(5.0, deadline - time.monotonic())
                client.wait_for_workers(len(names), timeout=remaining)
            info = client.scheduler_info(n_workers=-1)
            joined = sorted(w["name"] for w in info["workers"].values())
    except Exception as exc:
        raise AssertionError(
            f"Dask workers {names} did not join {cluster.address}: {exc!r}\n"
            + cluster.log_tails()
        ) from exc
    assert joined == names, f"{joined} != {names}\n{cluster.log_tails()}"


def scheduler_command(scheduler_file: Path, port: int = 0, *flags: str) -> list[str]:
    """``dask scheduler`` on 127.0.0.1 at ``port`` (0: one it picks), writing its
    address to ``scheduler_file`` (read back with ``_scheduler_address``)."""
    return [
        *(sys.executable, "-m", "dask", "scheduler"),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--scheduler-file", str(scheduler_file)),
        *("--dashboard-address", "127.0.0.1:0"),
        *("--idle-timeout", "1800"),  # safety net should teardown be skipped
        *flags,
    ]


def _scheduler_address(
    scheduler_file: Path, proc: subprocess.Popen, deadline: float
) -> str | None:
    """The address the scheduler writes to ``scheduler_file`` once it listens
    (``None`` if it exits or the deadline passes first). Reading it back, rather
    than reserving a port beforehand, leaves no gap for another process to take
    the port."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return json.loads(scheduler_file.read_text())["address"]
        time.sleep(0.1)
    return None


@contextlib.contextmanager
def start_cluster(
    workers: dict[str, str | None],
    *,
    worker_env: dict[str, str],
    worker_cwd: Path | None = None,
    timeout: float = CLUSTER_START_TIMEOUT,
    port: int = 0,
    tls_flags: Sequence[str] = (),
    security: Any = None,
) -> Iterator[DaskCluster]:
    """A real ``dask scheduler`` and one single-threaded ``dask worker`` per entry
    of ``workers`` (name -> ``--resources`` spec or None), all on 127.0.0.1.

    The scheduler runs from an empty directory with a plain environment; the
    workers with ``worker_env`` from ``worker_cwd`` (default: that empty
    directory). With ``tls_flags`` (``--tls-ca-file``, ``--tls-cert``, ...) every
    process speaks TLS and ``security`` is the client's. Yields once every worker
    is registered; kills every process group it started on exit.
    """
    workdir = Path(tempfile.mkdtemp(prefix="dask-cluster-"))
    protocol = "tls" if tls_flags else "tcp"
    scheduler_file = workdir / "scheduler.json"
    names = list(workers)
    logs = {"scheduler": workdir / "scheduler.log"}
    logs.update({name: workdir / f"{name}.log" for name in names})
    procs: list[subprocess.Popen] = []

    def spawn(args: list[str], log: Path, cwd: Path, env: dict) -> subprocess.Popen:
        procs.append(_spawn(args, log, cwd, env))
        return procs[-1]

    try:
        scheduler = spawn(
            scheduler_command(scheduler_file, port, "--protocol", protocol, *tls_flags),
            logs["scheduler"],
            workdir,
            base_env(),
        )
        cluster = DaskCluster("", scheduler, [], names, logs, security)
        deadline = time.monotonic() + timeout
        address = _scheduler_address(scheduler_file, scheduler, deadline)
        if address is None:
            raise AssertionError(
                f"the Dask scheduler (port {port}) did not start within {timeout} s\n"
                + cluster.log_tails()
            )
        cluster.address = address
        for name, resources in workers.items():
            args = [
                *(sys.executable, "-m", "dask", "worker", address),
                *("--nthreads", "1", "--name", name, "--host", "127.0.0.1"),
                *("--dashboard-address", "127.0.0.1:0"),
                *("--local-directory", str(workdir / "scratch")),
                *("--death-timeout", "120"),  # exit if the scheduler is gone
                *tls_flags,
            ]
            if resources:
                args += ["--resources", resources]
            cluster.workers.append(
                spawn(args, logs[name], worker_cwd or workdir, worker_env)
            )
        _wait_for_workers(cluster, deadline)
        yield cluster
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def kedro_dask_cluster(
    project_dir: Path,
    env: str,
    address: str,
    workers: Sequence[str],
    logs_dir: Path,
    security: Any = None,
) -> Iterator[DaskCluster]:
    """The project's own ``kedro dask scheduler`` and one ``kedro dask worker
    --nthreads 1 --name <name>`` per name, all with ``--env env`` and started
    from ``<project>/conf`` with no ``PYTHONPATH``. Yields once every worker has
    joined ``address``; stops every process group on exit."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    logs = {name: logs_dir / f"{name}.log" for name in ("scheduler", *workers)}
    procs: list[subprocess.Popen] = []

    def start(name: str, args: list[str]) -> subprocess.Popen:
        command = [KEDRO, "dask", *args, "--env", env]
        procs.append(
            _spawn(command, logs[name], Path(project_dir) / "conf", base_env())
        )
        return procs[-1]

    deadline = time.monotonic() + CLUSTER_START_TIMEOUT
    try:
        scheduler = start(
            "scheduler", ["scheduler", "--dashboard-address", "127.0.0.1:0"]
        )
        cluster = DaskCluster(address, scheduler, [], list(workers), logs, security)
        for name in workers:
            cluster.workers.append(
                start(name, ["worker", "--nthreads", "1", "--name", name])
            )
        _wait_for_workers(cluster, deadline)
        yield cluster
    finally:
        for proc in reversed(procs):
            _stop(proc)


def dask_cluster(
    project_dir: Path, n_workers: int = 2, timeout: float = CLUSTER_START_TIMEOUT
) -> contextlib.AbstractContextManager[DaskCluster]:
    """A scheduler and ``n_workers`` workers (``w1``, ``w2``, ...) that run from
    ``project_dir`` (so relative data paths resolve) with its ``src`` on
    ``PYTHONPATH``."""
    return start_cluster(
        {f"w{i}": None for i in range(1, n_workers + 1)},
        worker_env=base_env(project_dir),
        worker_cwd=Path(project_dir),
        timeout=timeout,
    )


def executed_keys_by_worker(address: str) -> dict[str, list[str]]:
    """Worker name -> keys of every task that worker has executed so far."""
    with Client(address, timeout=10) as client:
        replies = client.run(probes.executed_keys)
    return {reply["name"]: reply["keys"] for reply in replies.values()}


def node_of_key(key: Any, node_names: Collection[str]) -> str | None:
    """The node a task key belongs to, or None for other keys.

    A node's task key is ``(<function>-<run token>, <node name>)``.
    """
    if isinstance(key, tuple) and len(key) == 2 and key[1] in node_names:
        return key[1]
    return None


def run_token(key: Any) -> str | None:
    """The run token of a task key of the DaskRunner, or None for other keys."""
    if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str):
        return key[0].rsplit("-", 1)[-1]
    return None


# --------------------------------------------------------------------------- #
# Fixtures
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="session")
def rendered_project(tmp_path_factory) -> Path:
    """The starter rendered once, as "Dask Demo". Tests must not write into it:
    copy it with ``copy_project`` first."""
    project = render_with_cookiecutter(
        tmp_path_factory.mktemp("rendered"), project_name=PROJECT_NAME
    )
    assert project.name == REPO_NAME
    return project


@pytest.fixture(scope="session")
def node_names(rendered_project, tmp_path_factory) -> list[str]:
    """The default pipeline's node names (read in a copy: ``kedro`` commands
    write ``info.log``)."""
    project = copy_project(rendered_project, tmp_path_factory.mktemp("node-names"))
    return pipeline_node_names(project)


@pytest.fixture(scope="session")
def sequential_run(rendered_project, tmp_path_factory) -> tuple[Path, Result]:
    """A copy of the project after one ``kedro run`` with the SequentialRunner,
    and what that run printed: the reference outputs and console."""
    project = copy_project(rendered_project, tmp_path_factory.mktemp("sequential"))
    result = kedro_ok(project, "run")
    assert_has_csv_and_parquet(data_files(project))
    return project, result


@pytest.fixture(scope="session")
def sequential_project(sequential_run) -> Path:
    return sequential_run[0]


@pytest.fixture
def fresh_project(rendered_project, tmp_path) -> Path:
    """A private copy of the rendered project, data untouched."""
    return copy_project(rendered_project, tmp_path)
