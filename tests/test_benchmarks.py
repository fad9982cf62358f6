"""The benchmark suite (``benchmarks/run.py``) runs end to end in ``--quick`` mode
and writes well-formed results. Timings are never asserted: only that every part
was measured (as shipped, tuned, the plain-Dask floor, in that order), that every
workload was run (or skipped, with a reason) by every runner and every
as-shipped variant, that the as-shipped processes really ran with the project's
logging, and that the three output files are complete."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, base_env, run_cmd

pytestmark = [pytest.mark.slow, pytest.mark.dask]

BENCH_DIR = REPO_ROOT / "benchmarks"
QUICK_TIMEOUT = 300  # seconds; the quick run takes about 1.5 minutes
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PARTS = ("## 1. As shipped", "## 2. Tuned", "## 3. Plain-Dask floor")
AS_SHIPPED_TARGETS = (
    "W1 fan-out worker logging",
    "W1 chain worker logging",
    "W1 fan-out vs plain Dask",
    "Demo wall time",
    "Demo console lines",
    "Fresh start-up",
)
TUNED_TARGETS = ("W1 fan-out", "W1 chain", "W2", "W3 time", "W3 memory", "W4")
W1_CASES = ("W1 fan-out", "W1 chain")
DEMO_COMMANDS = ("`kedro run`", "`kedro run --runner dask_demo.runner.DaskRunner`")


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
    driver = _load("as_shipped_driver")
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
        "variants": list(driver.VARIANTS),
        "shipped": driver.SHIPPED,
        "in_the_driver": {driver.SEQUENTIAL_SHIPPED, driver.SEQUENTIAL_TERMINAL},
        "fresh_repeats": quick.fresh_repeats,
    }


@pytest.fixture(scope="module")
def markdown(quick_run) -> str:
    return (quick_run / "results.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def data(quick_run) -> dict:
    return json.loads((quick_run / "results.json").read_text(encoding="utf-8"))


def _section(markdown: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same level."""
    level = heading.split(" ", 1)[0]
    body = markdown.split(heading, 1)[1]
    return body.split(f"\n{level} ", 1)[0]


def _table_rows(section: str, first_header: str, nth: int = 0) -> list[list[str]]:
    """Cells of the body rows of the ``nth`` table whose header starts with
    ``first_header`` in ``section``."""
    rows, inside, seen = [], False, 0
    for raw in section.splitlines():
        line = raw.strip()
        if not line.startswith("|"):
            if inside:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == first_header and not inside:
            seen += 1
            inside = seen > nth
            continue
        if inside and not line.startswith("|---"):
            rows.append(cells)
    assert inside, f"no table starting with '{first_header}'"
    return rows


def _number(cell: str) -> float:
    value = float(cell.replace("**", "").replace(",", "").rstrip("×").split()[0])
    assert math.isfinite(value), cell
    return value


def test_markdown_parts_come_in_the_project_order(markdown):
    for heading in ("## Machine", "## Targets", *PARTS):
        assert heading in markdown, heading
    positions = [markdown.index(h) for h in ("## Targets", *PARTS)]
    assert positions == sorted(positions), "as shipped, tuned, floor: in this order"
    assert "Load average" in markdown


def test_targets_list_as_shipped_first_then_tuned(markdown):
    rows = _table_rows(_section(markdown, "## Targets"), "Part")
    parts = [cells[0] for cells in rows]
    assert parts == sorted(parts, key=lambda p: p != "as shipped"), parts
    targets = {cells[1]: cells for cells in rows}
    for name in AS_SHIPPED_TARGETS:
        cells = targets[name]
        assert cells[0] == "as shipped"
        assert cells[3] != "–", f"{name} not measured"
        assert "met" in cells[4], cells
    for name in TUNED_TARGETS:
        assert targets[name][0] == "tuned"
    assert "W1-scale" in targets


def test_as_shipped_warm_tables(markdown, expected):
    section = _section(markdown, "## 1. As shipped")
    assert "conf/logging.yml" in section
    costs = _table_rows(section, "Workload")
    assert [cells[0] for cells in costs] == list(W1_CASES)
    for cells in costs:
        for cell in cells[1:]:
            _number(cell)  # seconds and ms per node, all measured
    variants = _table_rows(section, "Workload", nth=1)
    pairs = [(cells[0], cells[1]) for cells in variants]
    assert pairs == [(c, v) for c in W1_CASES for v in expected["variants"]]
    for cells in variants:
        _number(cells[6])  # median s
        _number(cells[9])  # × plain Dask
        if cells[1] not in expected["in_the_driver"]:  # ran on workers
            _number(cells[10])  # the workers' CPU per node
        _number(cells[11]), _number(cells[12])  # console lines per run


def test_as_shipped_demo_and_fresh_start_tables(markdown, expected):
    demo = _section(markdown, "### Quickstart demo")
    rows = _table_rows(demo, "Command")
    assert [cells[0] for cells in rows[:2]] == list(DEMO_COMMANDS)
    for cells in rows[:2]:
        assert _number(cells[2]) > 0 and _number(cells[4]) > 0  # seconds, lines
    assert rows[2][0] == "DaskRunner / SequentialRunner"
    assert rows[2][2].endswith("×") and rows[2][4].endswith("×")
    fresh = _section(markdown, "### Embedded start-up in a fresh process")
    rows = _table_rows(fresh, "Repetition")
    assert len(rows) == expected["fresh_repeats"] + 1  # every repetition + summary
    for i, cells in enumerate(rows[:-1], 1):
        assert cells[0] == str(i)
        assert _number(cells[1]) > 0 and _number(cells[4]) > 0
    assert rows[-1][0] == "median / max"


def test_tuned_results_have_a_row_per_workload_and_runner(markdown, expected):
    section = _section(markdown, "## 2. Tuned")
    assert "WARNING" in section  # the logging level used is reported
    rows = _table_rows(_section(section, "### Results"), "Workload")
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


def test_floor_table(markdown):
    rows = _table_rows(_section(markdown, "## 3. Plain-Dask floor"), "Workload")
    assert [cells[0] for cells in rows] == list(W1_CASES)
    for cells in rows:
        assert _number(cells[2]) > 0  # plain Dask median
        _number(cells[5]), _number(cells[6])  # DaskRunner / plain Dask


def test_json_is_complete(data, expected):
    assert {
        "machine",
        "settings",
        "sections",
        "targets",
        "as_shipped",
        "summary",
        "runs",
        "floor",
    } <= data.keys()
    assert data["sections"] == ["as_shipped", "tuned", "floor"]
    machine = data["machine"]
    for key in (
        "nproc",
        "cpu_model",
        "ram_gib",
        "python",
        "kedro",
        "dask",
        "distributed",
        "load_average_at_start",
        "load_average_at_end",
    ):
        assert machine[key], key
    settings = data["settings"]
    assert settings["mode"] == "quick"
    assert settings["logging"]["levels"]["kedro"] == "WARNING"
    assert settings["runner_source"]["commit"]
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
    parts = [t["part"] for t in data["targets"]]
    assert parts == sorted(parts, key=lambda p: p != "as shipped")
    for target in data["targets"]:
        assert target["met"] in (True, False, None)
        assert target["comparable"] is False  # quick mode
        if target["part"] == "as shipped":
            assert isinstance(target["measured"], float), target
    for case in W1_CASES:
        assert data["floor"]["cases"][case]["median_s"] > 0


def test_json_as_shipped_measurements(data, expected):
    shipped = data["as_shipped"]
    warm = shipped["data"]["warm"]
    for case in W1_CASES:
        record = warm["cases"][case]
        for variant in expected["variants"]:
            assert len(record["times_s"][variant]) == data["settings"]["repeats"]
            assert all(isinstance(n, int) for n in record["driver_lines"][variant])
            # The workers' CPU time of every run that ran on workers.
            cpu = record["worker_cpu_s"][variant]
            if variant in expected["in_the_driver"]:
                assert cpu == [None] * len(cpu)
            else:
                assert all(isinstance(s, float) and s > 0 for s in cpu), variant
        # The as-shipped driver logs per node, as the project's logging says.
        for variant in expected["in_the_driver"]:
            assert min(record["driver_lines"][variant]) > 0
        costs = shipped["summary"]["warm"]["costs"][case]
        for key in (
            "worker_logging_ms_per_node",
            "worker_logging_cpu_ms_per_node",
            "driver_logging_ms_per_node",
            "shipped_vs_plain",
        ):
            assert isinstance(costs[key], float), key
    # The as-shipped driver ran with the project's conf/logging.yml (a console
    # handler), the tuned variant with its loggers quietened in place.
    logging_state = warm["logging"]
    assert logging_state["driver_default"]["root_handlers"]
    assert set(logging_state["driver_quiet"]["levels"].values()) == {"WARNING"}
    assert logging_state["shipped_workers"] and logging_state["quiet_workers"]
    demo = shipped["data"]["demo"]
    for runs in demo["runs"].values():
        assert len(runs) == expected["fresh_repeats"]
        assert all(r["seconds"] > 0 and r["lines"] > 0 for r in runs)
    assert shipped["summary"]["demo"]["time_ratio"] > 0
    assert shipped["summary"]["demo"]["lines_ratio"] > 0
    fresh = shipped["data"]["fresh_start"]["runs"]
    assert len(fresh) == expected["fresh_repeats"]
    for run in fresh:
        assert 0 < run["run_s"] < run["process_s"]


def test_chart_is_a_png(quick_run):
    png = quick_run / "benchmark.png"
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == PNG_SIGNATURE
