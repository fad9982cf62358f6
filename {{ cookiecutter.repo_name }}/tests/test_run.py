"""End-to-end tests: the project loads and its default pipeline runs.

The project is copied to a temporary folder first so that the run does not write
into this checkout's ``data/`` folder.
"""

import shutil
from pathlib import Path

import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.runner import SequentialRunner

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_SKIP = ("__pycache__", ".pytest_cache", ".ruff_cache", "*.log", ".telemetry")


def _copy_project(destination: Path) -> Path:
    def ignore(directory, names):
        ignored = set(shutil.ignore_patterns(*_SKIP)(directory, names))
        # Keep the data folder layout but none of the previously produced files.
        if Path(directory).resolve().parent == (PROJECT_ROOT / "data").resolve():
            ignored |= {name for name in names if name != ".gitkeep"}
        return ignored

    shutil.copytree(PROJECT_ROOT, destination, ignore=ignore)
    return destination


@pytest.fixture
def project_copy(tmp_path, monkeypatch):
    path = _copy_project(tmp_path / "project")
    monkeypatch.chdir(path)
    bootstrap_project(path)
    return path


class TestKedroRun:
    def test_context_loads(self, project_copy):
        with KedroSession.create(project_path=project_copy) as session:
            context = session.load_context()
            assert context.params["raw_data"]["n_stores"] > 0
            assert context.params["polynomial"]["model_options"]["degree"] == 2
            assert "raw_sales" in context.catalog
            # Resolved through the "{namespace}.coefficients" dataset factory.
            assert "linear.coefficients" in context.catalog

    def test_default_pipeline_runs(self, project_copy):
        with KedroSession.create(project_path=project_copy) as session:
            outputs = session.run(runner=SequentialRunner())

        comparison = pd.read_csv(
            project_copy / "data" / "08_reporting" / "model_comparison.csv"
        )
        assert set(comparison["model"]) == {"linear", "ridge", "polynomial"}
        assert list(comparison["rank"]) == [1, 2, 3]
        # best_model_name is in no catalog file: it is a free, in-memory output.
        assert outputs["best_model_name"].load() == comparison["model"].iloc[0]
        models = project_copy / "data" / "06_models"
        for name in ("linear", "ridge", "polynomial"):
            assert (models / f"{name}_coefficients.csv").is_file()
