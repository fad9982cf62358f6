"""Time ``kedro run`` of this project with SequentialRunner and with DaskRunner.

Each run is a fresh ``kedro run`` process, as you would type it, with the
project's own configuration and logging: what you wait for and what you read.
Runs are interleaved (Sequential, Dask, Sequential, ...) so that a busy machine
slows both alike; the report gives the median wall time and console lines of
each, and their ratio to SequentialRunner.

    python benchmarks/compare_runners.py                 # embedded LocalCluster
    python benchmarks/compare_runners.py --env dask      # your own cluster
    python benchmarks/compare_runners.py --repeats 5 --pipelines data_science

Other arguments go to every ``kedro run``. Outputs are written to the
project's data folders as by any run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Measurement:
    """One ``kedro run``: its wall time in seconds and the lines it printed."""

    seconds: float
    lines: int


def package_name(project_root: Path = PROJECT_ROOT) -> str:
    """The project's package, as ``pyproject.toml`` declares it to Kedro."""
    pyproject = tomllib.loads((project_root / "pyproject.toml").read_text())
    return str(pyproject["tool"]["kedro"]["package_name"])


def time_run(args: list[str], project_root: Path = PROJECT_ROOT) -> Measurement:
    """Run ``kedro run <args>`` in a fresh process and measure it.

    Raises:
        RuntimeError: The run failed; its last lines are in the message.
    """
    command = [sys.executable, "-m", "kedro", "run", *args]
    start = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own interpreter running kedro
        command,
        cwd=project_root,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command)} failed:\n{tail}")
    return Measurement(seconds, len(output.splitlines()))


def compare(
    repeats: int, env: str | None, extra: list[str], project_root: Path = PROJECT_ROOT
) -> dict[str, list[Measurement]]:
    """Interleaved runs of each runner, ``repeats`` times."""
    env_args = ["--env", env] if env else []
    runners = {
        "SequentialRunner": [*env_args, *extra],
        "DaskRunner": [
            *env_args,
            "--runner",
            f"{package_name(project_root)}.runner.DaskRunner",
            *extra,
        ],
    }
    measured: dict[str, list[Measurement]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, args in runners.items():
            measured[name].append(time_run(args, project_root))
    return measured


def report(measured: dict[str, list[Measurement]]) -> str:
    """A table of median wall time and lines, with ratios to the first runner."""
    medians = {
        name: (
            statistics.median(m.seconds for m in runs),
            statistics.median(m.lines for m in runs),
        )
        for name, runs in measured.items()
    }
    base_seconds, base_lines = next(iter(medians.values()))
    rows = [
        "| runner | wall time (s) | × Sequential | console lines | × Sequential |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, (seconds, lines) in medians.items():
        rows.append(
            f"| {name} | {seconds:.2f} | {seconds / base_seconds:.2f} "
            f"| {lines:.0f} | {lines / base_lines:.2f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each runner")
    parser.add_argument("--env", help="Kedro environment, e.g. dask")
    parser.add_argument(
        "--project-path", type=Path, default=PROJECT_ROOT, help="project to run"
    )
    options, extra = parser.parse_known_args(argv)  # the rest is for kedro run
    if options.repeats < 1:
        parser.error("--repeats must be at least 1")
    try:
        measured = compare(options.repeats, options.env, extra, options.project_path)
    except RuntimeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(report(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
