"""``benchmarks/compare_runners.py``: it runs this project's pipeline through the
real ``kedro`` command with each runner and reports what it measured. (Its
figures are for you to read; no test asserts a timing.)"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT_ROOT / "benchmarks" / "compare_runners.py"


@pytest.fixture(scope="module")
def compare_runners():
    spec = importlib.util.spec_from_file_location("compare_runners", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_report_gives_ratios_to_sequential_runner(compare_runners):
    measured = {
        "SequentialRunner": [compare_runners.Measurement(2.0, 100)] * 3,
        "DaskRunner": [
            compare_runners.Measurement(seconds, lines)
            for seconds, lines in ((3.0, 120), (2.5, 110), (9.0, 500))
        ],
    }

    table = compare_runners.report(measured).splitlines()

    assert table[2] == "| SequentialRunner | 2.00 | 1.00 | 100 | 1.00 |"
    assert table[3] == "| DaskRunner | 3.00 | 1.50 | 120 | 1.20 |"  # medians


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """This project without its data and caches: the runs write there, not here."""
    skip = shutil.ignore_patterns("data", ".*cache", "__pycache__", "*.log")
    return Path(shutil.copytree(PROJECT_ROOT, tmp_path / "project", ignore=skip))


def test_both_runners_run_the_project_through_kedro(
    compare_runners, project_copy, capsys
):
    status = compare_runners.main(
        ["--repeats", "1", "--project-path", str(project_copy)]
        + ["--pipelines", "data_processing"]
    )

    assert status == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| SequentialRunner",
        "| DaskRunner",
    ]
    for row in rows:
        seconds, lines = (
            re.findall(r"\| ([\d.]+) \| [\d.]+ ", row)[0],
            row.split(" | ")[3],
        )
        assert float(seconds) > 0
        assert int(lines) > 0
    # The runs wrote into the copy, as `kedro run` there does.
    assert (project_copy / "data" / "03_primary" / "model_input_table.parquet").exists()


def test_a_failing_run_is_one_error_with_its_last_lines(
    compare_runners, project_copy, capsys
):
    status = compare_runners.main(
        ["--repeats", "1", "--project-path", str(project_copy)]
        + ["--pipelines", "no_such_pipeline"]
    )

    assert status == 1
    error = capsys.readouterr().err
    assert error.startswith("Error: ")
    assert "no_such_pipeline" in error
