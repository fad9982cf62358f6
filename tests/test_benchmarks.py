"""The benchmark suite (``benchmarks/run.py``) runs end to end in ``--quick`` mode
and writes well-formed results. Timings are never asserted: only that every
workload was run (or skipped, with a reason) by every runner and that the three
output files are complete."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, base_env, run_cmd

pytestmark = [pytest.mark.slow, pytest.mark.dask]

BENCH_DIR = REPO_ROOT / "benchmarks"
QUICK_TIMEOUT = 170  # seconds; the quick run takes about one minute
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _load(name: str):
    """A module of ``benchmarks/`` (only standard-library imports at the top)."""
    spec = importlib.util.spec_from_file_location(
        f"_bench_{name}", BENCH_DIR / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench-results")
    result = run_cmd(
        [sys.executable, str(BENCH_DIR / "run.py"), "--quick", "--out", str(out)],
        cwd=tmp_path_factory.mktemp("bench-cwd"),
        timeout=QUICK_TIMEOUT,
        env=base_env(),
    )
    assert result.returncode == 0, result.describe()
    assert "Benchmark finished" in result.output, result.describe()
    return out


@pytest.fixture(scope="module")
def expected() -> dict:
    run = _load("run")
    harness = _load("harness")
    quick = run.QUICK
    cases = [
        "W1 fan-out",
        "W1 chain",
        *(f"W1-scale {n}" for n in quick.scale_nodes),
        "W2 CPU",
        "W3 data",
        "W4 start-up",
    ]
    skipped = {
        (f"W1-scale {n}", harness.PARALLEL)
        for n in quick.scale_nodes
        if n > quick.parallel_max_nodes
    }
    return {
        "cases": cases,
        "runners": list(harness.RUNNERS),
        "skipped": skipped,
        "local_only": harness.LOCAL_ONLY,
    }


def _results_rows(markdown: str) -> list[list[str]]:
    """Cells of the rows of the ``## Results`` table."""
    section = markdown.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = []
    for raw in section.splitlines():
        line = raw.strip()
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "Workload":
            continue
        rows.append(cells)
    return rows


def test_markdown_has_a_row_per_workload_and_runner(quick_run, expected):
    text = (quick_run / "results.md").read_text(encoding="utf-8")
    for heading in ("## Machine", "## Settings", "## Targets", "## Results"):
        assert heading in text
    assert "WARNING" in text  # the logging level used is reported
    rows = _results_rows(text)
    pairs = [(cells[0], cells[1]) for cells in rows]
    assert len(pairs) == len(set(pairs)), "a workload x runner row is repeated"
    for case in expected["cases"]:
        for runner in expected["runners"]:
            assert (case, runner) in pairs, f"no row for {case} x {runner}"
    assert ("W4 start-up", expected["local_only"]) in pairs
    by_pair = dict(zip(pairs, rows, strict=True))
    for pair in expected["skipped"]:
        assert "skipped" in by_pair[pair][-1], by_pair[pair]
    for runner in expected["runners"]:
        assert "×" in by_pair[("W3 data", runner)][8], "W3 row without memory"
    for target in ("W1 fan-out", "W1 chain", "W2", "W3 time", "W3 memory", "W4"):
        assert f"| {target} |" in text.split("## Targets", 1)[1]


def test_json_is_complete(quick_run, expected):
    data = json.loads((quick_run / "results.json").read_text(encoding="utf-8"))
    assert {"machine", "settings", "targets", "summary", "runs"} <= data.keys()
    machine = data["machine"]
    for key in (
        "nproc",
        "cpu_model",
        "ram_gib",
        "python",
        "kedro",
        "dask",
        "distributed",
    ):
        assert machine[key], key
    assert data["settings"]["mode"] == "quick"
    assert data["settings"]["logging"]["levels"]["kedro"] == "WARNING"
    summary = {(r["case"], r["runner"]): r for r in data["summary"]}
    for case in expected["cases"]:
        for runner in expected["runners"]:
            row = summary[(case, runner)]
            if (case, runner) in expected["skipped"]:
                assert row["skipped"] and row["median_s"] is None
            else:
                assert row["runs"] >= 1
                assert isinstance(row["median_s"], float) and row["median_s"] >= 0
    for runner in expected["runners"]:
        assert summary[("W3 data", runner)]["worker_net_peak_x"] is not None
    for target in data["targets"]:
        assert target["met"] in (True, False, None)
        assert target["comparable"] is False  # quick mode


def test_chart_is_a_png(quick_run):
    png = quick_run / "benchmark.png"
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == PNG_SIGNATURE
