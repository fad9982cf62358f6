"""Fresh-process start-up of the embedded LocalCluster, as ``kedro run`` gets it.

    python benchmarks/startup.py PROJECT_DIR [REPEATS]

PROJECT_DIR: a rendered demo project (``dask_demo``). Each repetition is a fresh
process, interleaved:

- ``driver``: ``as_shipped_driver.py fresh-start`` (runner construction, one
  trivial node, stop: the as-shipped benchmark's figure);
- ``kedro run --nodes generate_raw_sales_node`` with SequentialRunner and with
  the DaskRunner (embedded LocalCluster): the process's wall time; the
  difference is what the embedded cluster costs a one-node ``kedro run``.

Prints each run, then median and max of each.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import harness  # noqa: E402

NODE = "generate_raw_sales_node"


def _run(args: list[str], cwd: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env.update(COLUMNS="120", PYTHONPATH=str(cwd / "src"))
    start = time.perf_counter()
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    return seconds, result.stdout


def main(project: Path, repeats: int) -> None:
    kedro = harness.kedro_command()  # the console script, as users run it
    cases = {
        "driver fresh-start (run_s)": [
            sys.executable,
            str(BENCH_DIR / "as_shipped_driver.py"),
            "fresh-start",
            str(project),
            "dask_demo",
        ],
        "kedro run one node, Sequential": [*kedro, "run", "--nodes", NODE],
        "kedro run one node, DaskRunner": [
            *kedro,
            "run",
            "--runner",
            "dask_demo.runner.DaskRunner",
            "--nodes",
            NODE,
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for rep in range(repeats):
        for name, args in cases.items():
            seconds, out = _run(args, project)
            if name.startswith("driver"):
                marker = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
                seconds = json.loads(marker[-1].removeprefix("RESULT "))["run_s"]
            times[name].append(seconds)
            print(f"rep {rep + 1}/{repeats} {name:<34} {seconds:6.2f} s", flush=True)
    print(f"load average {os.getloadavg()}")
    for name, values in times.items():
        print(
            f"{name:<34} median {statistics.median(values):5.2f} s  "
            f"max {max(values):5.2f} s  ({', '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), int(sys.argv[2]) if len(sys.argv) > 2 else 7)
