"""The as-shipped part of the benchmark: what a user of the rendered project gets.

Every process here starts from the user's environment (``harness.
user_environment``: no benchmark logging settings, no ``DASK_*`` variables, 120
columns, no tty), from the rendered project's root, so Kedro takes its logging
from the project's ``conf/logging.yml``, as ``kedro run`` and workers started as
the README says do.

- ``time_demo``: the README's quickstart demo, ``kedro run`` with
  SequentialRunner and with the DaskRunner (embedded LocalCluster), each a fresh
  process of the real ``kedro`` executable: wall time and console lines.
- ``time_fresh_start``: the embedded LocalCluster's start, one trivial node and
  its stop, in a fresh process each time (``as_shipped_driver.py fresh-start``).
- ``time_warm``: the W1 fan-out and chain on a warm cluster started as the
  README says, with the workers and the driver at the project's default
  logging, then quieter step by step, next to plain Dask on the same graph
  shapes (``as_shipped_driver.py warm``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness

BENCH_DIR = Path(__file__).resolve().parent
DRIVER = BENCH_DIR / "as_shipped_driver.py"

DEMO_NAME = "Dask Demo"
DEMO_DIR = "dask-demo"
DEMO_PACKAGE = "dask_demo"
DEMO_SEQUENTIAL = "SequentialRunner"
DEMO_DASK = "DaskRunner (LocalCluster)"
DEMO_ARGS = {
    DEMO_SEQUENTIAL: ["run"],
    DEMO_DASK: ["run", "--runner", f"{DEMO_PACKAGE}.runner.DaskRunner"],
}
PROCESS_TIMEOUT = 600  # seconds, one fresh process
WARM_TIMEOUT = 1800  # seconds, the whole warm as-shipped driver

Say = Callable[[str], None]


def render_demo(starter_dir: Path, parent: Path) -> Path:
    """``kedro new --starter <starter> --name "Dask Demo" --telemetry no``, as the
    README's quickstart does, with the real ``kedro`` executable."""
    parent.mkdir(parents=True, exist_ok=True)
    args = [
        *harness.kedro_command(),
        "new",
        "--starter",
        str(starter_dir),
        "--name",
        DEMO_NAME,
        "--telemetry",
        "no",
    ]
    result = harness.run_process(args, parent, harness.user_environment(), 300)
    project = parent / DEMO_DIR
    if result.returncode != 0 or not (project / "conf" / "logging.yml").exists():
        raise RuntimeError(f"kedro new failed:\n{result.describe(args)}")
    return project


def time_demo(project: Path, repeats: int, warmup: bool, say: Say) -> dict[str, Any]:
    """``kedro run`` with each runner in fresh processes, interleaved (each
    repetition runs both, starting with the other one than the last time)."""
    kedro = harness.kedro_command()
    env = harness.user_environment()

    def once(name: str) -> harness.ProcessRun:
        args = [*kedro, *DEMO_ARGS[name]]
        result = harness.run_process(args, project, env, PROCESS_TIMEOUT)
        if result.returncode != 0:
            raise RuntimeError(f"the demo failed:\n{result.describe(args)}")
        return result

    if warmup:  # untimed: bytecode of the new project, data files, disk cache
        for name in DEMO_ARGS:
            once(name)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in DEMO_ARGS}
    last_output: dict[str, list[str]] = {}
    order_log = []
    names = list(DEMO_ARGS)
    for rep in range(repeats):
        order = names if rep % 2 == 0 else names[::-1]
        order_log.append(order)
        for name in order:
            result = once(name)
            runs[name].append({"seconds": result.seconds, "lines": result.lines})
            last_output[name] = result.output.splitlines()
            say(
                f"{'demo kedro run':<16} rep {rep + 1}/{repeats} {name:<28} "
                f"{result.seconds:8.3f} s  {result.lines} lines"
            )
    return {
        "commands": {name: "kedro " + " ".join(a) for name, a in DEMO_ARGS.items()},
        "executable": kedro,
        "columns": harness.CONSOLE_COLUMNS,
        "warmup": warmup,
        "runs": runs,
        "order": order_log,
        "last_output": last_output,
    }


def time_fresh_start(project: Path, repeats: int, say: Say) -> dict[str, Any]:
    """The embedded LocalCluster's start + one trivial node + stop, each time in
    a fresh process started from the project root."""
    args = [sys.executable, str(DRIVER), "fresh-start", str(project), DEMO_PACKAGE]
    env = harness.user_environment()
    runs = []
    for rep in range(repeats):
        result = harness.run_process(args, project, env, PROCESS_TIMEOUT)
        marker = [ln for ln in result.output.splitlines() if ln.startswith("RESULT ")]
        if result.returncode != 0 or not marker:
            raise RuntimeError(f"fresh start-up failed:\n{result.describe(args)}")
        run = json.loads(marker[-1].removeprefix("RESULT "))
        run["process_s"] = result.seconds
        run["lines"] = result.lines - 1  # without the RESULT line
        runs.append(run)
        say(
            f"{'fresh start-up':<16} rep {rep + 1}/{repeats} "
            f"{'DaskRunner (LocalCluster)':<28} {run['run_s']:8.3f} s  "
            f"(process {result.seconds:.2f} s)"
        )
    return {
        "command": f"python {DRIVER.name} fresh-start <project> {DEMO_PACKAGE}",
        "runs": runs,
    }


def time_warm(
    env: harness.Environment,
    quiet_cluster: harness.WarmCluster,
    nodes: int,
    repeats: int,
    say: Say,
) -> dict[str, Any]:
    """Start the as-shipped cluster, run the warm driver against it and the quiet
    cluster, stop the as-shipped cluster."""
    python_path = [str(env.project_dir / "src"), str(BENCH_DIR)]
    log_dir = env.tmp_dir / "shipped-cluster"
    worker_env = harness.user_environment(python_path)
    worker_env["PYTHONUNBUFFERED"] = "1"  # as the quiet cluster's workers
    shipped = harness.WarmCluster(
        2,
        log_dir,
        worker_cwd=env.project_dir,
        scheduler_env=harness.user_environment(),
        worker_env=worker_env,
        quiet=False,
    )
    with shipped:
        say(f"As-shipped cluster: {shipped.address}, workers {shipped.worker_pids}")
        console = log_dir / "driver-console.log"
        spec_path, result_path = log_dir / "spec.json", log_dir / "result.json"
        read_fd, write_fd = os.pipe()
        spec = {
            "project_dir": str(env.project_dir),
            "package": harness.PACKAGE,
            "shipped_address": shipped.address,
            "quiet_address": quiet_cluster.address,
            "nodes": nodes,
            "repeats": repeats,
            "driver_console": str(console),
            "worker_logs": [
                str(p) for p in shipped.worker_logs + quiet_cluster.worker_logs
            ],
            "progress_fd": write_fd,
        }
        spec_path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
        args = [sys.executable, str(DRIVER), "warm", str(spec_path), str(result_path)]
        with console.open("wb") as out:
            proc = subprocess.Popen(
                args,
                cwd=env.project_dir,
                env=harness.user_environment(python_path),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        os.close(write_fd)
        watchdog = threading.Timer(WARM_TIMEOUT, harness.kill_group, [proc.pid])
        watchdog.start()
        try:
            with os.fdopen(read_fd, encoding="utf-8", errors="replace") as progress:
                for line in progress:
                    say(line.rstrip("\n"))
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            harness.kill_group(proc.pid)
        if returncode != 0 or not result_path.exists():
            tail = console.read_text(errors="replace")[-4000:]
            raise RuntimeError(
                f"the as-shipped driver failed (exit {returncode}):\n{tail}\n"
                f"{shipped.log_tail()}"
            )
        data = json.loads(result_path.read_text(encoding="utf-8"))
    data["worker_command"] = (
        "PYTHONPATH=src:<benchmarks> python -m dask worker <address> --nthreads 1 "
        "(from the project root)"
    )
    return data
