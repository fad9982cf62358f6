"""``recording``: a DaskRunner run on a real cluster leaves what SequentialRunner
leaves for Kedro-Viz's Workflow view, and, on request, a run record and its
timeline. Read back with the installed Kedro-Viz's own reader."""

from __future__ import annotations

import gc
import json
import logging
import threading
from pathlib import Path

import dask
import pandas as pd
import pytest
from kedro.framework.hooks.manager import _NullPluginManager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset
from kedro_viz.integrations.kedro.run_hooks import PipelineRunStatusHook

from {{ cookiecutter.python_package }}.runner import DaskRunner
from {{ cookiecutter.python_package }}.runner.compat import create_hook_manager
from {{ cookiecutter.python_package }}.runner.recording import RunRecorder
from {{ cookiecutter.python_package }}.runner.run_params import RunParamsHook
from {{ cookiecutter.python_package }}.runner.run_record import read_run_record
from {{ cookiecutter.python_package }}.runner.worker import picklable_node_hooks


def double(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(value=df["value"] * 2)


def total(df: pd.DataFrame) -> int:
    return int(df["value"].sum())


def explode(df: pd.DataFrame) -> int:
    raise ValueError("boom on purpose")


def _pipeline(last=total) -> Pipeline:
    return Pipeline(
        [
            node(double, "raw", "doubled", name="double_node"),
            node(last, "doubled", "result", name="last_node"),
        ]
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory Kedro-Viz takes for a Kedro project, and the current directory."""
    (tmp_path / "pyproject.toml").write_text('[tool.kedro]\npackage_name = "x"\n')
    pd.DataFrame({"value": range(5)}).to_csv(tmp_path / "raw.csv", index=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _catalog(project: Path) -> DataCatalog:
    return DataCatalog(
        {
            "raw": CSVDataset(filepath=str(project / "raw.csv")),
            "doubled": MemoryDataset(),
        }
    )


def _hooks(**run_params) -> object:
    """A hook manager that went through ``before_pipeline_run`` as in a session."""
    manager = create_hook_manager()
    manager.register(RunParamsHook())
    params = {"runner": "DaskRunner", "tags": (), "node_names": (), **run_params}
    manager.hook.before_pipeline_run(
        run_params=params, pipeline=_pipeline(), catalog=DataCatalog()
    )
    return manager


def _run_status(project: Path) -> dict[str, str]:
    from kedro_viz.api.rest.responses.run_events import get_run_status_response

    response = get_run_status_response()
    return {
        **{key: info.status.value for key, info in response.nodes.items()},
        "pipeline": response.pipeline.status.value,
    }


def test_a_dask_run_reads_in_kedro_viz_as_a_sequential_run(project, client_args):
    # SequentialRunner's file, written by Kedro-Viz's own hook.
    hook = PipelineRunStatusHook()
    manager = create_hook_manager()
    manager.register(hook)
    manager.register(RunParamsHook())
    params = {"runner": None, "tags": (), "node_names": ()}  # None: sequential
    manager.hook.before_pipeline_run(
        run_params=params, pipeline=_pipeline(), catalog=DataCatalog()
    )
    SequentialRunner().run(_pipeline(), _catalog(project), manager)
    manager.hook.after_pipeline_run(
        run_params=params, run_result={}, pipeline=_pipeline(), catalog=DataCatalog()
    )
    sequential = _run_status(project)
    (project / ".viz" / "kedro_pipeline_events.json").unlink()

    DaskRunner(client_args=client_args).run(_pipeline(), _catalog(project), _hooks())

    assert _run_status(project) == sequential
    assert len(sequential) == 3  # two nodes and the pipeline
    assert set(sequential.values()) == {"success"}


def test_a_failed_dask_run_shows_the_node_and_its_error(project, client_args):
    with pytest.raises(ValueError, match="boom on purpose"):
        DaskRunner(client_args=client_args).run(
            _pipeline(explode), _catalog(project), _hooks()
        )

    events = json.loads((project / ".viz" / "kedro_pipeline_events.json").read_text())
    [error] = [e for e in events if e["event"] == "on_node_error"]
    assert error["node"] == "last_node"
    assert "boom on purpose" in error["error"]
    assert "Traceback" in error["traceback"]
    assert _run_status(project)["pipeline"] == "failed"


def test_a_partial_run_leaves_kedro_viz_s_file_alone(project, client_args):
    DaskRunner(client_args=client_args).run(
        _pipeline(), _catalog(project), _hooks(tags=("some_tag",))
    )

    assert not (project / ".viz" / "kedro_pipeline_events.json").exists()


def test_run_record_and_timeline_on_request(project, client_args, worker_addresses):
    record = project / "reports" / "run.json"

    DaskRunner(client_args=client_args, run_record=str(record), fuse_chains=False).run(
        _pipeline(), _catalog(project), _NullPluginManager()
    )

    nodes = read_run_record(record)
    assert [n.node for n in nodes] == ["double_node", "last_node"]
    assert {n.worker for n in nodes} <= worker_addresses
    assert all(n.status == "success" and n.end >= n.start for n in nodes)
    # The doubled frame moved only if the two nodes ran on different workers.
    moved = nodes[1].moved_bytes
    assert (moved > 0) == (nodes[0].worker != nodes[1].worker)
    page = record.with_suffix(".html").read_text()
    assert "double_node" in page and "<script src=" not in page


def fails_the_first_time(df: pd.DataFrame, marker: str) -> int:
    """Fails on its first run (``marker`` does not exist yet), then succeeds."""
    if not Path(marker).exists():
        Path(marker).touch()
        raise RuntimeError("failing once on purpose")
    return total(df)


def test_a_retried_node_counts_its_retries(project, client_args):
    """Dask reruns a node with ``retries``; the record keeps its last run and
    counts the runs before it."""
    record = project / "reports" / "run.json"
    pipeline = Pipeline(
        [
            node(double, "raw", "doubled", name="double_node"),
            node(
                fails_the_first_time,
                ["doubled", "params:marker"],
                "result",
                name="flaky",
            ),
        ]
    )
    catalog = _catalog(project)
    catalog["params:marker"] = MemoryDataset(str(project / "failed-once"))
    options = [{"nodes": ["flaky"], "retries": 2}]

    DaskRunner(
        client_args=client_args, run_record=str(record), node_options=options
    ).run(pipeline, catalog, _hooks())

    runs = {n.node: (n.status, n.retries) for n in read_run_record(record)}
    assert runs == {"double_node": ("success", 0), "flaky": ("success", 1)}
    assert set(_run_status(project).values()) == {"success"}


def test_kedro_viz_hooks_stay_on_the_driver():
    from kedro_viz.integrations.kedro.run_hooks import pipeline_run_hook

    manager = create_hook_manager()
    manager.register(pipeline_run_hook)

    assert picklable_node_hooks(manager) == []


def increment(value: int) -> int:
    return value + 1


def test_a_run_of_more_nodes_than_the_scheduler_s_event_log_keeps(
    project, client_args, inspector
):
    """The scheduler keeps only the last ``low-level-log-length`` events of a topic
    (1000 by default): every node of a longer run is still recorded."""
    kept = inspector.run_on_scheduler(
        dask.config.get, "distributed.admin.low-level-log-length"
    )
    nodes = kept + 5
    pipeline = Pipeline(
        [node(increment, f"d{i}", f"d{i + 1}", name=f"n{i}") for i in range(nodes)]
    )
    record = project / "reports" / "run.json"

    DaskRunner(client_args=client_args, run_record=str(record), progress=False).run(
        pipeline, DataCatalog({"d0": MemoryDataset(0)}), _NullPluginManager()
    )

    assert [n.node for n in read_run_record(record)] == [f"n{i}" for i in range(nodes)]


def test_recording_does_not_need_forwarded_logs(project, client_args):
    """Measurements travel on their own topic: with ``forward_logs: false`` the
    run is still in Kedro-Viz's file and in the record."""
    record = project / "reports" / "run.json"

    DaskRunner(client_args=client_args, forward_logs=False, run_record=str(record)).run(
        _pipeline(), _catalog(project), _hooks()
    )

    assert [n.node for n in read_run_record(record)] == ["double_node", "last_node"]
    assert set(_run_status(project).values()) == {"success"}
    assert len(_run_status(project)) == 3


def test_the_run_s_files_are_written_with_the_garbage_collector_paused(
    project, client_args, monkeypatch
):
    """Writing after a large run must not pay a collection of the driver's whole
    heap; the collector is on again afterwards, as it was."""
    collecting = []
    real_write = RunRecorder._write

    def write(recorder, *args):
        collecting.append(gc.isenabled())
        real_write(recorder, *args)

    monkeypatch.setattr(RunRecorder, "_write", write)
    record = project / "reports" / "run.json"

    DaskRunner(client_args=client_args, run_record=str(record), progress=False).run(
        _pipeline(), _catalog(project), _hooks()
    )

    assert collecting == [False]
    assert gc.isenabled()
    assert [n.node for n in read_run_record(record)] == ["double_node", "last_node"]


def test_the_files_are_written_while_the_connection_closes(
    project, client_args, monkeypatch, caplog
):
    """The run's files are written off the run's thread, from once every
    measurement is in until the runner has closed its connection; the run
    returns once they are there, and says what it wrote."""
    from distributed import Client

    events: list[str] = []
    real_write, real_close = RunRecorder._write, Client.close

    def write(recorder, *args):
        events.append(f"write starts on {threading.current_thread().name}")
        real_write(recorder, *args)
        events.append("write ends")

    def close(client, *args, **kwargs):
        events.append("client closes")
        return real_close(client, *args, **kwargs)

    monkeypatch.setattr(RunRecorder, "_write", write)
    monkeypatch.setattr(Client, "close", close)
    record = project / "reports" / "run.json"

    with caplog.at_level(logging.INFO):
        DaskRunner(client_args=client_args, run_record=str(record)).run(
            _pipeline(), _catalog(project), _hooks()
        )
        events.append("run returned")

    assert "write starts on kedro-dask-run-files" in events
    assert "client closes" in events
    assert events.index("write ends") < events.index("run returned")
    assert events.index("client closes") < events.index("run returned")
    assert [n.node for n in read_run_record(record)] == ["double_node", "last_node"]
    assert f"Run record: {record}" in caplog.text


def test_a_record_that_cannot_be_written_is_a_warning(
    project, client_args, monkeypatch, caplog
):
    """Writing the files never hides the run's result: the run succeeds and
    says which file it could not write."""
    (project / "reports").write_text("a file where the record's folder goes")
    record = project / "reports" / "run.json"

    with caplog.at_level(logging.WARNING):
        outputs = DaskRunner(client_args=client_args, run_record=str(record)).run(
            _pipeline(), _catalog(project), _hooks()
        )

    assert outputs["result"].load() == 20
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith("Could not write the run's record:") and "reports" in m
        for m in warnings
    ), warnings
