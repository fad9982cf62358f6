"""The driver processes of the as-shipped measurements (started by ``as_shipped.py``).

Each runs as a fresh process from the rendered project's root, without the
benchmark's logging settings, and does what ``kedro run`` does before it runs a
pipeline: ``bootstrap_project`` (Kedro's logging from the project's
``conf/logging.yml``, the project package configured) and a hook manager built
as ``KedroSession`` builds it.

    python as_shipped_driver.py warm SPEC.json RESULT.json
    python as_shipped_driver.py fresh-start PROJECT_DIR PACKAGE

``warm``: the W1 fan-out and chain on the two warm clusters, every variant of
``VARIANTS`` interleaved (see ``benchmarks/README.md``), and the plain-Dask floor.
It counts the console lines each run adds to the driver's output and to the
as-shipped workers' output, and the CPU time the run costs the workers of the
cluster it runs on. Progress goes to the file descriptor ``SPEC
["progress_fd"]``; stdout and stderr are the driver's console.

``fresh-start``: one embedded-LocalCluster run of one trivial node, timed from
the runner's construction to the end of ``run``; prints ``RESULT <json>`` last.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import logging
import operator
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The variants of the warm measurements; names are shared with report.py.
SHIPPED = "DaskRunner, as shipped"
QUIET_WORKERS = "DaskRunner, workers at WARNING"
QUIET_ALL = "DaskRunner, driver + workers at WARNING"
# As shipped, but what the driver's handlers would print is discarded: the run
# lasts about as long as QUIET_ALL's, so the workers' CPU time compares.
CONSOLE_DISCARDED = "DaskRunner, as shipped, driver's console discarded"
PLAIN = "plain Dask client.get"
SEQUENTIAL_SHIPPED = "SequentialRunner, as shipped"
# As shipped, the console a terminal: rich's handler (``TTY_COMPATIBLE=1``, rich's
# own switch), where the others print through the project's plain ``console``
# handler as ``kedro run`` does when its output is not a terminal.
SHIPPED_TERMINAL = "DaskRunner, as shipped, on a terminal"
SEQUENTIAL_TERMINAL = "SequentialRunner, as shipped, on a terminal"
VARIANTS = (
    SHIPPED,
    QUIET_WORKERS,
    QUIET_ALL,
    CONSOLE_DISCARDED,
    PLAIN,
    SEQUENTIAL_SHIPPED,
    SHIPPED_TERMINAL,
    SEQUENTIAL_TERMINAL,
)
ON_TERMINAL = (SHIPPED_TERMINAL, SEQUENTIAL_TERMINAL)
# The warm cluster each variant runs on (SequentialRunner: none, the driver).
CLUSTER_OF = {
    SHIPPED: "shipped",
    SHIPPED_TERMINAL: "shipped",
    CONSOLE_DISCARDED: "shipped",
    PLAIN: "shipped",
    QUIET_WORKERS: "quiet",
    QUIET_ALL: "quiet",
}
CASES = ("W1 fan-out", "W1 chain")
# Sizes of the untimed warm-up runs of each variant and case.
WARM_UP_SIZES = (3, 40)
# Seconds over which the workers' idle CPU use is measured.
IDLE_SECONDS = 5.0


def _session_hook_manager() -> Any:
    """A hook manager with what ``KedroSession`` registers: the project's
    ``HOOKS`` and the installed plugins' hooks."""
    from kedro.framework.hooks import _create_hook_manager
    from kedro.framework.hooks.manager import (
        _register_hooks,
        _register_hooks_entry_points,
    )
    from kedro.framework.project import settings

    manager = _create_hook_manager()
    _register_hooks(manager, settings.HOOKS)
    _register_hooks_entry_points(manager, settings.DISABLE_HOOKS_FOR_PLUGINS)
    return manager


def _import_runner(package: str) -> Any:
    """The project's runner package, imported as ``kedro run`` imports it; then,
    as the project's ``cli.run`` does, Kedro's logging configuration applied
    again (importing distributed reset its loggers) for the console it prints
    to (no terminal here: the project's plain ``console`` handler), and
    ``info.log``'s handler given Python 3.13's rollover check."""
    from kedro.framework.project import LOGGING

    runner = __import__(f"{package}.runner", fromlist=["DaskRunner"])
    _cli(package).configure_run_logging(LOGGING.data)
    return runner


def _cli(package: str) -> Any:
    """The project's ``cli`` module."""
    return __import__(f"{package}.cli", fromlist=["configure_run_logging"])


def _bootstrap(project_dir: Path) -> float:
    """What the ``kedro`` CLI does first; returns the seconds it took."""
    start = time.perf_counter()
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project_dir)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- #
# Plain Dask: the same graph shapes without Kedro
# --------------------------------------------------------------------------- #
def plain_fan_out(n: int) -> tuple[dict, list]:
    """One source task and ``n`` trivial tasks reading it, keys of one prefix."""
    token = uuid.uuid4().hex
    source = (f"source-{token}", 0)
    keys = [(f"noop-{token}", i) for i in range(n)]
    graph: dict = {source: (int, 1)}
    graph.update({key: (operator.pos, source) for key in keys})
    return graph, keys


def plain_chain(n: int) -> tuple[dict, list]:
    """``n`` trivial tasks in a chain, keys of one prefix; only the last is
    fetched (the chain's one free output)."""
    token = uuid.uuid4().hex
    keys = [(f"noop-{token}", i) for i in range(n)]
    graph: dict = {keys[0]: (int, 1)}
    graph.update({keys[i]: (operator.pos, keys[i - 1]) for i in range(1, n)})
    return graph, keys[-1:]


# --------------------------------------------------------------------------- #
# warm
# --------------------------------------------------------------------------- #
class _Console:
    """Counts the lines a run adds to the files a console's output goes to."""

    def __init__(self, paths: list[str]):
        self.paths = [Path(p) for p in paths]

    def sizes(self) -> list[int]:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        return [p.stat().st_size if p.exists() else 0 for p in self.paths]

    def lines_since(self, sizes: list[int]) -> int:
        import harness

        self.sizes()
        total = 0
        for path, size in zip(self.paths, sizes, strict=True):
            with path.open("rb") as f:
                f.seek(size)
                total += harness.count_lines(f.read())
        return total


class _WarmDriver:
    """The as-shipped driver of the warm measurements: one Kedro project
    bootstrapped as ``kedro run`` does, clients to both clusters for the plain
    graphs and the garbage collections."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.bootstrap_s = _bootstrap(Path(spec["project_dir"]))
        # Imported after Kedro's logging is set up, as ``kedro run`` imports the
        # runner (and with it distributed, which sets its own logger's level).
        import quiet_logging
        from distributed import Client
        from kedro.framework.project import LOGGING

        # The project's own configuration, its rich handler for a terminal.
        self.terminal_logging = copy.deepcopy(LOGGING.data)
        runner = _import_runner(spec["package"])
        self.pipe_logging = LOGGING.data
        self.configure_run_logging = _cli(spec["package"]).configure_run_logging
        self.dask_runner = runner.DaskRunner
        self.quiet_logging = quiet_logging
        self.hook_manager = _session_hook_manager()
        self.shipped = Client(spec["shipped_address"], set_as_default=False)
        self.quiet = Client(spec["quiet_address"], set_as_default=False)
        self.driver_levels = {
            name: logging.getLogger(name).level for name in quiet_logging.LOGGERS
        }
        self.driver_console = _Console([spec["driver_console"]])
        self.worker_console = _Console(spec["worker_logs"])

    def driver_default(self) -> None:
        for name, level in self.driver_levels.items():
            logging.getLogger(name).setLevel(level)

    @contextlib.contextmanager
    def console_for(self, variant: str) -> Iterator[None]:
        """The driver's console as ``variant`` has it: a terminal for the
        ``ON_TERMINAL`` variants (rich's handler, the live progress display),
        else a file (the plain ``console`` handler), as ``kedro run`` sets it."""
        if variant not in ON_TERMINAL:
            yield
            return
        os.environ["TTY_COMPATIBLE"] = "1"
        self.configure_run_logging(self.terminal_logging)
        self.driver_default()
        try:
            yield
        finally:
            del os.environ["TTY_COMPATIBLE"]
            self.configure_run_logging(self.pipe_logging)
            self.driver_default()

    def _kedro_run(self, runner: Any, pipeline: Any) -> None:
        from kedro.io import DataCatalog

        runner.run(pipeline, DataCatalog(), self.hook_manager, run_id=uuid.uuid4().hex)

    def run(self, variant: str, case: str, n: int) -> None:
        """One run of ``variant`` on the ``case`` shape of size ``n``."""
        import workloads
        from kedro.runner import SequentialRunner

        if variant == PLAIN:
            make = plain_fan_out if case == "W1 fan-out" else plain_chain
            graph, keys = make(n)
            self.shipped.get(graph, keys)
            return
        pipeline = (workloads.fan_out if case == "W1 fan-out" else workloads.chain)(n)
        if variant in (SEQUENTIAL_SHIPPED, SEQUENTIAL_TERMINAL):
            self._kedro_run(SequentialRunner(), pipeline)
            return
        address = self.spec[f"{CLUSTER_OF[variant]}_address"]
        if variant == QUIET_ALL:
            self.quiet_logging.apply()
        root = logging.getLogger()
        handlers = list(root.handlers)
        if variant == CONSOLE_DISCARDED:
            root.handlers = [logging.NullHandler()]
        try:
            self._kedro_run(
                self.dask_runner(client_args={"address": address}), pipeline
            )
        finally:
            root.handlers = handlers
            self.driver_default()

    def _workers_of(self, variant: str) -> Any:
        """The client of the cluster whose workers run ``variant`` (``None``:
        SequentialRunner, which runs in the driver)."""
        cluster = CLUSTER_OF.get(variant)
        return None if cluster is None else getattr(self, cluster)

    def measure(
        self, variant: str, case: str, n: int
    ) -> tuple[float, int, int, float | None]:
        """Seconds of one timed run, the lines it added to the driver's and to
        the workers' consoles, and the CPU seconds it cost the workers it ran on
        (their processes' CPU time, read before and after: every thread, Dask's
        own included)."""
        gc.collect()
        self.shipped.run(gc.collect)
        self.quiet.run(gc.collect)
        workers = self._workers_of(variant)
        cpu_before = _cpu_seconds(workers)
        driver_before = self.driver_console.sizes()
        workers_before = self.worker_console.sizes()
        with self.console_for(variant):
            start = time.perf_counter()
            self.run(variant, case, n)
            seconds = time.perf_counter() - start
        cpu_after = _cpu_seconds(workers)
        return (
            seconds,
            self.driver_console.lines_since(driver_before),
            self.worker_console.lines_since(workers_before),
            None if workers is None else cpu_after - cpu_before,
        )

    def idle_cpu_rates(self, seconds: float = IDLE_SECONDS) -> dict[str, float]:
        """CPU seconds per second that each cluster's workers use while no run
        goes on: Dask's own periodic work (heartbeats, monitors, the event loop's
        ticks), which a longer run accrues without doing more."""
        before = {
            "shipped": _cpu_seconds(self.shipped),
            "quiet": _cpu_seconds(self.quiet),
        }
        start = time.perf_counter()
        time.sleep(seconds)
        elapsed = time.perf_counter() - start
        after = {
            "shipped": _cpu_seconds(self.shipped),
            "quiet": _cpu_seconds(self.quiet),
        }
        return {name: (after[name] - before[name]) / elapsed for name in before}

    def logging_state(self) -> dict[str, Any]:
        describe = self.quiet_logging.describe
        state = {
            "driver_default": describe(),
            "shipped_workers": self.shipped.run(describe),
            "quiet_workers": self.quiet.run(describe),
        }
        self.quiet_logging.apply()
        state["driver_quiet"] = describe()
        self.driver_default()
        return state

    def close(self) -> None:
        self.shipped.close()
        self.quiet.close()


def _cpu_seconds(client: Any) -> float:
    """The CPU seconds the workers of ``client``'s cluster have used so far."""
    if client is None:
        return 0.0
    return sum(client.run(time.process_time).values())


def warm(spec_path: Path, result_path: Path) -> None:
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    progress = os.fdopen(spec["progress_fd"], "w", buffering=1)
    driver = _WarmDriver(spec)
    # Untimed: first-use costs on the driver and on both clusters' workers
    # (imports, the shipped package, Kedro's logging set-up on the workers). A
    # small fan-out may run on one worker only: the larger one reaches both.
    for n in WARM_UP_SIZES:
        for variant in VARIANTS:
            for case in CASES:
                with driver.console_for(variant):
                    driver.run(variant, case, n)
    progress.write("as shipped: warmed up\n")
    logging_before = driver.logging_state()
    idle_before = driver.idle_cpu_rates()

    n, repeats = spec["nodes"], spec["repeats"]
    results: dict[str, Any] = {
        case: {
            "nodes": n + 1 if case == "W1 fan-out" else n,
            "times_s": {v: [] for v in VARIANTS},
            "driver_lines": {v: [] for v in VARIANTS},
            "worker_lines": {v: [] for v in VARIANTS},
            "worker_cpu_s": {v: [] for v in VARIANTS},
        }
        for case in CASES
    }
    order_log = []
    for case in CASES:
        for rep in range(repeats):
            shift = rep % len(VARIANTS)
            order = [*VARIANTS[shift:], *VARIANTS[:shift]]
            order_log.append({"case": case, "order": order})
            for variant in order:
                seconds, driver_lines, worker_lines, worker_cpu = driver.measure(
                    variant, case, n
                )
                results[case]["times_s"][variant].append(seconds)
                results[case]["worker_cpu_s"][variant].append(worker_cpu)
                results[case]["driver_lines"][variant].append(driver_lines)
                results[case]["worker_lines"][variant].append(worker_lines)
                cpu_note = (
                    "" if worker_cpu is None else f"  workers {worker_cpu:.3f} s CPU"
                )
                progress.write(
                    f"{case:<16} rep {rep + 1}/{repeats} {variant:<40} "
                    f"{seconds:8.3f} s  {driver_lines} + {worker_lines} lines"
                    f"{cpu_note}\n"
                )
    logging_after = driver.logging_state()
    idle_after = driver.idle_cpu_rates()
    driver.close()
    result_path.write_text(
        json.dumps(
            {
                "variants": list(VARIANTS),
                "cases": results,
                "order": order_log,
                "bootstrap_s": driver.bootstrap_s,
                # As the timed runs found it (after the untimed ones: Kedro's
                # logging is set up on a worker by the first node it runs), and
                # as they left it (a runner may change the workers' levels).
                "logging": logging_before,
                "logging_after": logging_after,
                # CPU seconds per second each cluster's workers use while idle
                # (Dask's own periodic work), before and after the timed runs.
                "idle_cpu_per_s": {
                    cluster: [idle_before[cluster], idle_after[cluster]]
                    for cluster in idle_before
                },
            },
            indent=2,
        ),
        encoding="utf-8",
    )


# --------------------------------------------------------------------------- #
# fresh-start
# --------------------------------------------------------------------------- #
def one() -> int:
    """The trivial node (pickled by value: this script is ``__main__``)."""
    return 1


def fresh_start(project_dir: Path, package: str) -> None:
    """What ``kedro run --runner <package>.runner.DaskRunner`` does, in its order,
    for a one-node pipeline: the project's ``cli.run`` starts the workers'
    forkserver, then Kedro's session loads the project (context, pipelines,
    catalog) and runs the runner, which is timed."""
    started = time.perf_counter()
    bootstrap_s = _bootstrap(project_dir)
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.pipeline import Pipeline, node

    # As the project's cli.run does for ``--runner <package>.runner.DaskRunner``:
    # the workers' forkserver started, then the runner (and distributed) imported
    # and Kedro's logging applied again.
    cli = __import__(f"{package}.cli", fromlist=["run"])
    local_workers = __import__(
        f"{package}.runner.local_workers", fromlist=["start_worker_forkserver"]
    )
    local_workers.start_worker_forkserver({}, cli._pipeline_modules(package))
    start = time.perf_counter()
    runner_module = _import_runner(package)
    import_s = time.perf_counter() - start
    with KedroSession.create(project_dir) as session:
        context = session.load_context()
        pipelines.get("__default__")  # Kedro's session loads them before the run
        catalog = context.catalog
        hook_manager = session._hook_manager
        pipeline = Pipeline([node(one, None, "one_out", name="one")])
        gc.collect()
        start = time.perf_counter()
        runner = runner_module.DaskRunner()
        runner.run(pipeline, catalog, hook_manager, run_id=uuid.uuid4().hex)
        run_s = time.perf_counter() - start
    assert catalog.load("one_out") == 1
    result = {
        "run_s": run_s,
        "bootstrap_s": bootstrap_s,
        "import_runner_s": import_s,
        "in_process_s": time.perf_counter() - started,
    }
    sys.stdout.flush()
    print("RESULT " + json.dumps(result), flush=True)


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "warm":
        warm(Path(args[0]), Path(args[1]))
    elif command == "fresh-start":
        fresh_start(Path(args[0]), args[1])
    else:
        raise SystemExit(f"unknown command {command!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
