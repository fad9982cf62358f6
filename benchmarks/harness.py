"""Machinery of the benchmark: environment, warm cluster, memory sampling, runs.

Nothing here knows the workloads' sizes or targets; ``run.py`` decides what to
run and ``report.py`` writes the results.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
LOGGING_YML = BENCH_DIR / "logging.yml"
PROJECT_NAME = "Bench Project"
PACKAGE = "bench_project"

SEQUENTIAL = "SequentialRunner"
THREAD = "ThreadRunner"
PARALLEL = "ParallelRunner"
DASK_LOCAL = "DaskRunner (LocalCluster)"
DASK_WARM = "DaskRunner (warm)"
RUNNERS = (SEQUENTIAL, THREAD, PARALLEL, DASK_LOCAL, DASK_WARM)
LOCAL_ONLY = "LocalCluster start/stop only"  # W4 reference, not a runner
LOCAL_CLUSTER_ARGS = {"n_workers": 2, "threads_per_worker": 1}
POOL_WORKERS = 2  # ThreadRunner / ParallelRunner max_workers, like 2 Dask workers
CONSOLE_COLUMNS = "120"  # terminal width of the as-shipped processes (no tty)

# The environment the benchmark was started with, before ``run.py`` adds its
# quiet logging settings: the as-shipped processes start from it.
ORIGINAL_ENV = dict(os.environ)
_NOT_A_USERS = ("PYTHONPATH", "KEDRO_LOGGING_CONFIG", "KEDRO_ENV")


# --------------------------------------------------------------------------- #
# Environment
# --------------------------------------------------------------------------- #
def quiet_environment() -> dict[str, str]:
    """Environment variables every benchmark process gets. Must be set before
    ``dask`` or ``kedro.framework.project`` is imported in the driver."""
    return {
        "KEDRO_LOGGING_CONFIG": str(LOGGING_YML),
        "DASK_DISTRIBUTED__WORKER__PRELOAD": '["quiet_logging"]',
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }


def user_environment(python_path: list[str] | None = None) -> dict[str, str]:
    """Environment of an as-shipped process, as a user's shell would give it.

    The benchmark's own logging settings (``KEDRO_LOGGING_CONFIG``, the quiet
    worker preload) and every ``DASK_*`` variable are left out, so Kedro finds
    the project's ``conf/logging.yml`` from the working directory and Dask runs
    with its default configuration. Telemetry is off, the console is 120
    columns wide (rich wraps log lines at that width; no process has a tty).
    """
    env = {
        k: v
        for k, v in ORIGINAL_ENV.items()
        if k not in _NOT_A_USERS and not k.startswith("DASK_")
    }
    env.update(
        KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", COLUMNS=CONSOLE_COLUMNS
    )
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(python_path)
    return env


@dataclass
class Environment:
    project_dir: Path
    python_path: list[str]
    logging_levels: dict[str, str]
    tmp_dir: Path
    source: dict[str, Any]
    starter_dir: Path = REPO_ROOT


def starter_snapshot(ref: str, dest: Path) -> Path:
    """The starter as committed at git ``ref``, extracted into ``dest``
    (``git archive``: the working tree, where others may be editing, is not
    touched)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def prepare_environment(starter_ref: str | None = None) -> Environment:
    """Render the starter, make its runner package and the workloads importable
    here and in every process started from here, and quiet the logging.

    Args:
        starter_ref: Render the starter as committed at this git ref instead of
            the working tree (the default: whatever the runner is right now).
    """
    os.environ.update(quiet_environment())
    from cookiecutter.main import cookiecutter

    tmp_dir = Path(tempfile.mkdtemp(prefix="kedro-dask-bench-"))
    if starter_ref:
        starter_dir = starter_snapshot(starter_ref, tmp_dir / "starter")
        source = runner_source(starter_ref)
    else:
        starter_dir = REPO_ROOT
        source = runner_source()
    project_dir = Path(
        cookiecutter(
            str(starter_dir),
            no_input=True,
            extra_context={"project_name": PROJECT_NAME},
            output_dir=str(tmp_dir),
        )
    )
    python_path = [str(project_dir / "src"), str(BENCH_DIR)]
    for entry in reversed(python_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    existing = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        python_path + ([existing] if existing else [])
    )
    import dask.config

    dask.config.refresh()  # picks up DASK_DISTRIBUTED__WORKER__PRELOAD
    import kedro.framework.project  # noqa: F401 - applies KEDRO_LOGGING_CONFIG
    import quiet_logging

    levels = quiet_logging.apply()
    source["dask_runner_options"] = dask_options()
    return Environment(project_dir, python_path, levels, tmp_dir, source, starter_dir)


def machine_facts() -> dict[str, Any]:
    import dask
    import distributed
    import kedro
    import numpy
    import psutil

    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kedro": kedro.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "numpy": numpy.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --------------------------------------------------------------------------- #
# Warm cluster: a dask scheduler and workers as subprocesses
# --------------------------------------------------------------------------- #
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WarmCluster:
    """``dask scheduler`` plus ``n_workers`` single-threaded ``dask worker``
    processes on 127.0.0.1, started once and kept for the whole benchmark.

    The processes stay in the benchmark's process group, so whatever ends the
    benchmark's group (Ctrl-C, a test's timeout) ends them too; ``stop`` ends
    them, and the worker processes the nannies started, by pid. The scheduler
    gets no project on its path (a plain scheduler runs any project); the
    workers get ``PYTHONPATH`` with the project and the workloads.

    Args:
        n_workers: Number of ``dask worker --nthreads 1`` processes.
        log_dir: Where each process's output goes (``<name>.log``), and the
            workers' scratch space.
        worker_cwd: The workers' working directory (default ``log_dir``); the
            project root for workers started as the README says, where Kedro
            finds ``conf/logging.yml``.
        scheduler_env, worker_env: The processes' environments (default: this
            process's, without ``PYTHONPATH`` for the scheduler).
        quiet: Set the benchmark's quiet levels on the workers once they are up
            (``quiet_logging.apply``), on top of the preload they get from the
            benchmark's environment.
    """

    def __init__(
        self,
        n_workers: int,
        log_dir: Path,
        timeout: float = 90,
        *,
        worker_cwd: Path | None = None,
        scheduler_env: dict[str, str] | None = None,
        worker_env: dict[str, str] | None = None,
        quiet: bool = True,
    ):
        self.n_workers = n_workers
        self.log_dir = log_dir
        self.timeout = timeout
        self.worker_cwd = worker_cwd or log_dir
        self.scheduler_env = scheduler_env
        self.worker_env = worker_env
        self.quiet = quiet
        self.address = ""
        self.client = None
        self.worker_pids: dict[str, int] = {}
        self._procs: list[subprocess.Popen] = []
        self._logs: list[Any] = []

    def _spawn(
        self, args: list[str], name: str, env: dict[str, str], cwd: Path
    ) -> None:
        log = (self.log_dir / f"{name}.log").open("w")
        self._logs.append(log)
        self._procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "dask", *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    @property
    def worker_logs(self) -> list[Path]:
        """The files the workers' (and their nannies') output goes to."""
        return [self.log_dir / f"worker-{i}.log" for i in range(1, self.n_workers + 1)]

    def start(self) -> WarmCluster:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        scheduler_env = self.scheduler_env or {
            k: v for k, v in os.environ.items() if k != "PYTHONPATH"
        }
        self._spawn(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                f"127.0.0.1:{free_port()}",
                "--idle-timeout",
                "900",  # a safety net should stop() never run
            ],
            "scheduler",
            scheduler_env,
            self.log_dir,
        )
        deadline = time.monotonic() + self.timeout
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if time.monotonic() > deadline or self._procs[0].poll() is not None:
                raise RuntimeError(f"dask scheduler did not start: {self.log_tail()}")
            time.sleep(0.1)
        for i in range(1, self.n_workers + 1):
            self._spawn(
                [
                    "worker",
                    self.address,
                    "--nthreads",
                    "1",
                    "--name",
                    f"w{i}",
                    "--host",
                    "127.0.0.1",
                    "--dashboard-address",
                    "127.0.0.1:0",
                    "--local-directory",
                    str(self.log_dir / "scratch"),
                    "--death-timeout",
                    "120",
                ],
                f"worker-{i}",
                self.worker_env or dict(os.environ),
                self.worker_cwd,
            )
        client = self.control()
        client.wait_for_workers(self.n_workers, timeout=self.timeout)
        if self.quiet:
            import quiet_logging

            client.run(quiet_logging.apply)
        self.worker_pids = client.run(os.getpid)
        return self

    def control(self) -> Any:
        """The benchmark's own client to the warm cluster, reconnected if lost."""
        from distributed import Client

        if self.client is None or self.client.status != "running":
            if self.client is not None:
                with contextlib.suppress(Exception):
                    self.client.close(timeout=5)
            self.client = Client(self.address, set_as_default=False, timeout=30)
        return self.client

    @property
    def scheduler_pid(self) -> int:
        return self._procs[0].pid

    @property
    def nanny_pids(self) -> list[int]:
        return [proc.pid for proc in self._procs[1:]]

    def collect_garbage(self) -> None:
        self.control().run(gc.collect)

    def log_tail(self, size: int = 2000) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-size:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        import psutil

        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close(timeout=10)
            self.client = None
        leftovers = []
        for proc in reversed(self._procs):  # workers first, the scheduler last
            with contextlib.suppress(psutil.Error):
                leftovers += psutil.Process(proc.pid).children(recursive=True)
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for child in leftovers:  # a nanny's worker process, should it outlive it
            with contextlib.suppress(psutil.Error):
                child.kill()
        for log in self._logs:
            log.close()

    def __enter__(self) -> WarmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- #
# Memory sampling
# --------------------------------------------------------------------------- #
@dataclass
class ProcessMemory:
    pid: int
    role: str
    baseline: int  # bytes before the run (or at first sight, see RssSampler)
    peak: int = 0

    @property
    def net_peak(self) -> int:
        return max(0, self.peak - self.baseline)


class RssSampler:
    """Samples the RSS of the processes that do a run's work, in a thread.

    Args:
        explicit: ``{pid: role}`` watched from the start (the driver, the warm
            cluster's worker processes), with their RSS just before the run as
            baseline.
        follow_children: Also watch processes the driver starts during the run
            (ParallelRunner's pool and manager, a LocalCluster's workers). Their
            baseline is ``child_baseline`` when given, else their RSS when first
            seen.
        interval: Seconds between RSS samples; the list of children is refreshed
            every ``child_every`` samples.
    """

    def __init__(
        self,
        explicit: dict[int, str],
        follow_children: bool = False,
        child_baseline: int | None = None,
        interval: float = 0.01,
        child_every: int = 10,
    ):
        import psutil

        self._psutil = psutil
        self._driver = psutil.Process()
        self._before = (
            {p.pid for p in self._driver.children(recursive=True)}
            if follow_children
            else set()
        )
        self.processes: dict[int, ProcessMemory] = {}
        self._handles: dict[int, Any] = {}
        for pid, role in explicit.items():
            proc = psutil.Process(pid)
            rss = proc.memory_info().rss
            self._handles[pid] = proc
            self.processes[pid] = ProcessMemory(pid, role, rss, rss)
        self._follow = follow_children
        self._child_baseline = child_baseline
        self._interval = interval
        self._child_every = child_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _refresh_children(self) -> None:
        try:
            children = self._driver.children(recursive=True)
        except self._psutil.Error:
            return
        for child in children:
            if child.pid in self._before or child.pid in self._handles:
                continue
            try:
                rss = child.memory_info().rss
            except self._psutil.Error:
                continue
            self._handles[child.pid] = child
            baseline = self._child_baseline if self._child_baseline else rss
            self.processes[child.pid] = ProcessMemory(child.pid, "child", baseline, rss)

    def _sample(self) -> None:
        for pid, proc in list(self._handles.items()):
            try:
                rss = proc.memory_info().rss
            except self._psutil.Error:
                self._handles.pop(pid)
                continue
            record = self.processes[pid]
            record.peak = max(record.peak, rss)

    def _loop(self) -> None:
        tick = 0
        while not self._stop.is_set():
            if self._follow and tick % self._child_every == 0:
                self._refresh_children()
            self._sample()
            tick += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def set_roles(self, roles: dict[int, str]) -> None:
        for pid, role in roles.items():
            if pid in self.processes:
                self.processes[pid].role = role


# --------------------------------------------------------------------------- #
# Runners and single runs
# --------------------------------------------------------------------------- #
@dataclass
class Context:
    env: Environment
    warm: WarmCluster
    local_worker_idle_rss: int | None = None


def make_runner(name: str, ctx: Context) -> Any:
    """A new runner, as a user would construct it."""
    from kedro.runner import ParallelRunner, SequentialRunner, ThreadRunner

    if name == SEQUENTIAL:
        return SequentialRunner()
    if name == THREAD:
        return ThreadRunner(max_workers=POOL_WORKERS)
    if name == PARALLEL:
        return ParallelRunner(max_workers=POOL_WORKERS)
    from bench_project.runner import DaskRunner

    if name == DASK_LOCAL:
        return DaskRunner(client_args=dict(LOCAL_CLUSTER_ARGS), **dask_options())
    if name == DASK_WARM:
        return DaskRunner(client_args={"address": ctx.warm.address}, **dask_options())
    raise ValueError(name)


def dask_options() -> dict[str, Any]:
    """DaskRunner options the benchmark sets; everything else keeps its default.

    The live progress display is switched off (when the runner has one): it is on
    by default only on a terminal, and timings must not depend on where the
    benchmark's output goes.
    """
    import inspect

    from bench_project.runner import DaskRunner

    if "progress" in inspect.signature(DaskRunner).parameters:
        return {"progress": False}
    return {}


def runner_source(ref: str | None = None) -> dict[str, Any]:
    """Which DaskRunner was measured: the repository commit and whether the
    template's runner (and the rest of the template, ``conf/logging.yml``
    included) had uncommitted changes when it was rendered; with ``ref``, the
    commit the starter was extracted from, clean by construction."""
    template_dir = "{{ cookiecutter.repo_name }}"
    runner_dir = f"{template_dir}/src/{{{{ cookiecutter.python_package }}}}/runner"

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    if ref:
        return {
            "commit": git("rev-parse", "--short", f"{ref}^{{commit}}") or ref,
            "rendered_from": f"git archive {ref}",
            "runner_uncommitted_changes": False,
            "template_uncommitted_changes": False,
        }
    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "rendered_from": "working tree",
        "runner_uncommitted_changes": bool(
            git("status", "--porcelain", "--", runner_dir)
        ),
        "template_uncommitted_changes": bool(
            git("status", "--porcelain", "--", template_dir, "cookiecutter.json")
        ),
    }


@dataclass
class RunResult:
    seconds: float
    memory: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _memory_sampler(name: str, ctx: Context) -> RssSampler:
    driver = {os.getpid(): "driver"}
    if name in (SEQUENTIAL, THREAD):
        return RssSampler(driver)
    if name == DASK_WARM:
        workers = {pid: "worker" for pid in ctx.warm.worker_pids.values()}
        return RssSampler({**driver, **workers})
    if name == PARALLEL:
        # Pool processes are forked from the driver: their idle RSS is the
        # driver's just before the run.
        import psutil

        return RssSampler(
            driver,
            follow_children=True,
            child_baseline=psutil.Process().memory_info().rss,
        )
    # LocalCluster workers are spawned during the run: their idle size is
    # measured once on a LocalCluster of the same kind that has run a node.
    if ctx.local_worker_idle_rss is None:
        ctx.local_worker_idle_rss = local_worker_idle_rss()
    return RssSampler(
        driver, follow_children=True, child_baseline=ctx.local_worker_idle_rss
    )


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def local_worker_idle_rss() -> int:
    """RSS of an idle worker of a LocalCluster like the runner's, once it has run
    a tiny two-node array pipeline (so Kedro, numpy and the runner are loaded)."""
    import workloads
    from bench_project.runner import DaskRunner
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            **LOCAL_CLUSTER_ARGS, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        pipeline = workloads.data_chain(2, 1_000)
        DaskRunner(
            client_args={"address": cluster.scheduler_address}, **dask_options()
        ).run(
            pipeline,
            workloads.catalog(pipeline, shared_memory=False, assign_datasets=True),
        )
        client.run(gc.collect)
        return min(client.run(_rss).values())


def _summarise_memory(
    sampler: RssSampler, name: str, runner: Any, unit: int
) -> dict[str, Any]:
    """Peak RSS of the busiest worker process, and of the driver and others."""
    if name == PARALLEL:
        manager = getattr(getattr(runner, "_manager", None), "_process", None)
        if manager is not None and manager.pid in sampler.processes:
            sampler.set_roles({manager.pid: "manager"})
    records = list(sampler.processes.values())
    driver = next(r for r in records if r.role == "driver")
    if name in (SEQUENTIAL, THREAD):
        workers = [driver]
    else:
        workers = [r for r in records if r.role in ("worker", "child")]
    # Tiny helper processes (multiprocessing's resource tracker) never peak high;
    # the busiest worker is the one with the highest net peak.
    busiest = max(workers, key=lambda r: r.net_peak) if workers else driver
    summary = {
        "worker_peak_rss_mb": round(busiest.peak / 1e6, 1),
        "worker_baseline_rss_mb": round(busiest.baseline / 1e6, 1),
        "worker_net_peak_mb": round(busiest.net_peak / 1e6, 1),
        "worker_net_peak_x": round(busiest.net_peak / unit, 2),
        "worker_peak_x": round(busiest.peak / unit, 2),
        "driver_net_peak_mb": round(driver.net_peak / 1e6, 1),
        "processes": [
            {
                "pid": r.pid,
                "role": r.role,
                "baseline_mb": round(r.baseline / 1e6, 1),
                "peak_mb": round(r.peak / 1e6, 1),
            }
            for r in records
        ],
    }
    manager = [r for r in records if r.role == "manager"]
    if manager:
        summary["manager_net_peak_mb"] = round(manager[0].net_peak / 1e6, 1)
    return summary


def run_pipeline(
    name: str,
    ctx: Context,
    pipeline_factory: Callable[[], Any],
    catalog_factory: Callable[[Any, bool], Any],
    memory_unit: int | None = None,
) -> RunResult:
    """Time one run: construct the runner and run the pipeline on a fresh catalog.

    The pipeline and catalog are built before the clock starts; the runner's
    construction (ParallelRunner starts its manager process there) and the whole
    ``run`` (cluster start and stop for the embedded LocalCluster) are timed.
    """
    pipeline = pipeline_factory()
    catalog = catalog_factory(pipeline, name == PARALLEL)
    gc.collect()
    if name == DASK_WARM:
        ctx.warm.collect_garbage()
    sampler = _memory_sampler(name, ctx) if memory_unit else None
    with sampler if sampler else contextlib.nullcontext():
        start = time.perf_counter()
        runner = make_runner(name, ctx)
        runner.run(pipeline, catalog)
        seconds = time.perf_counter() - start
    memory = _summarise_memory(sampler, name, runner, memory_unit) if sampler else None
    if name == PARALLEL:
        runner._manager.shutdown()
    del runner, catalog
    gc.collect()
    return RunResult(seconds, memory)


def time_local_cluster_only() -> RunResult:
    """Start and stop a LocalCluster the way the runner configures one, without a
    client or a run: the raw floor of the embedded-cluster start-up."""
    from distributed import LocalCluster

    gc.collect()
    start = time.perf_counter()
    cluster = LocalCluster(
        **LOCAL_CLUSTER_ARGS, host="127.0.0.1", dashboard_address="127.0.0.1:8787"
    )
    started = time.perf_counter() - start
    cluster.close()
    seconds = time.perf_counter() - start
    return RunResult(seconds, extra={"start_s": started, "stop_s": seconds - started})


@contextlib.contextmanager
def warm_cluster(
    log_dir: Path, n_workers: int = 2, **options: Any
) -> Iterator[WarmCluster]:
    cluster = WarmCluster(n_workers, log_dir, **options)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- #
# Fresh processes
# --------------------------------------------------------------------------- #
@dataclass
class ProcessRun:
    seconds: float  # wall time from the start of the process to its exit
    returncode: int
    output: str  # stdout and stderr, interleaved, as a console would show them

    @property
    def lines(self) -> int:
        return count_lines(self.output)

    def describe(self, args: list[str]) -> str:
        return (
            f"$ {' '.join(map(str, args))}\nexit code {self.returncode} after "
            f"{self.seconds:.1f} s\n{self.output[-4000:]}"
        )


def count_lines(text: str | bytes) -> int:
    """Lines as a console shows them: newlines, plus an unterminated last line."""
    newline = b"\n" if isinstance(text, bytes) else "\n"
    return text.count(newline) + (1 if text and not text.endswith(newline) else 0)


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid``, a process this benchmark started
    with ``start_new_session=True`` (a LocalCluster's workers, say)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_process(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> ProcessRun:
    """Run ``args`` as a fresh process without a tty, as a user's shell would
    with its output piped: stdout and stderr together, stdin empty. Times it from
    start to exit; whatever it leaves running is killed afterwards."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        seconds = time.perf_counter() - start
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        output, _ = proc.communicate(timeout=30)
        raise RuntimeError(
            f"timed out after {timeout} s: {' '.join(map(str, args))}\n"
            f"{output.decode(errors='replace')[-4000:]}"
        ) from None
    finally:
        kill_group(proc.pid)
    return ProcessRun(seconds, proc.returncode, output.decode(errors="replace"))


def kedro_command() -> list[str]:
    """The ``kedro`` executable of this Python environment, as a user types it."""
    candidate = Path(sys.executable).with_name("kedro")
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("kedro")
    return [found] if found else [sys.executable, "-m", "kedro"]
