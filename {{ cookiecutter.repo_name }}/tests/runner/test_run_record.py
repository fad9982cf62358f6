"""Tests of ``run_record``: Kedro-Viz's Workflow view, the run record, the timeline.

The contract tests run the same small pipeline twice in a throwaway Kedro project:
once with ``SequentialRunner`` and Kedro-Viz's own run hook, once node by node as a
Dask worker runs it (Kedro's ``Task``, measured by ``RunMeter``, the measurements
passed on as JSON as Dask would carry them), written by ``write_viz_events``. Both
files are read by the installed Kedro-Viz's own reader, whose answers must agree.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
import pandas as pd
import pytest
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner
from kedro.runner.task import Task
from kedro_datasets.pandas import CSVDataset

from {{ cookiecutter.python_package }}.runner import run_record
from {{ cookiecutter.python_package }}.runner.run_record import (
    NodeMessage,
    NodeRun,
    RunMeter,
)

WORKERS = ("tcp://10.0.0.1:40001", "tcp://10.0.0.2:40002")
SEQUENTIAL = "<kedro.runner.sequential_runner.SequentialRunner object at 0x7f0>"
DASK = "<{{ cookiecutter.python_package }}.runner.dask_runner.DaskRunner object at 0x7f0>"


# ------------------------------------------------------- the pipeline run --- #


def scale(raw: pd.DataFrame, factor: int) -> pd.DataFrame:
    return raw.assign(value=raw["value"] * factor)


def summarise(scaled: pd.DataFrame, fail: bool) -> pd.DataFrame:
    if fail:
        raise ValueError("summarise failed on purpose")
    return scaled.groupby("group", as_index=False)["value"].sum()


def count(scaled: pd.DataFrame) -> int:
    return len(scaled)


def report(summary: pd.DataFrame, rows: int) -> str:
    return f"{len(summary)} groups, {rows} rows"


def example_pipeline() -> Pipeline:
    return Pipeline(
        [
            node(scale, ["raw", "params:factor"], "scaled@pandas", name="scale"),
            node(summarise, ["scaled@pandas", "params:fail"], "summary", name="sum"),
            node(count, "scaled@pandas", "rows", name="count"),
            node(report, ["summary", "rows"], "report", name="report"),
        ]
    )


def example_catalog(project: Path, fail: bool = False) -> DataCatalog:
    """The catalog, with the memory datasets a runner would add."""
    catalog = DataCatalog(
        {
            "raw": CSVDataset(filepath=str(project / "data" / "raw.csv")),
            "summary": CSVDataset(filepath=str(project / "data" / "summary.csv")),
            "params:factor": MemoryDataset(3),
            "params:fail": MemoryDataset(fail),
        }
    )
    for name in example_pipeline().datasets():
        if name not in catalog:
            catalog[name] = MemoryDataset()
    return catalog


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory Kedro-Viz takes for a Kedro project, and the current directory."""
    (tmp_path / "pyproject.toml").write_text('[tool.kedro]\npackage_name = "x"\n')
    (tmp_path / "data").mkdir()
    pd.DataFrame({"group": list("abcab"), "value": range(5)}).to_csv(
        tmp_path / "data" / "raw.csv", index=False
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def full_run_params(runner: str = SEQUENTIAL, **filters: Any) -> dict[str, Any]:
    """``run_params`` as Kedro 1.x's session passes them to pipeline hooks."""
    params: dict[str, Any] = {
        "run_id": "2026-01-01T00.00.00.000Z",
        "project_path": "/project",
        "env": "local",
        "kedro_version": "1.7.0",
        "tags": None,
        "from_nodes": None,
        "to_nodes": None,
        "node_names": None,
        "from_inputs": None,
        "to_outputs": None,
        "load_versions": None,
        "runtime_params": {},
        "pipeline_names": None,
        "namespaces": None,
        "runner": runner,
        "only_missing_outputs": False,
    }
    params.update(filters)
    return params


def sequential_run_with_kedro_viz(
    pipeline: Pipeline, catalog: DataCatalog, run_params: dict[str, Any]
) -> Any:
    """Run with SequentialRunner and Kedro-Viz's hook, as ``kedro run`` does; return
    the hook (it has written ``.viz/kedro_pipeline_events.json`` if it records)."""
    from kedro_viz.integrations.kedro.run_hooks import PipelineRunStatusHook

    hook = PipelineRunStatusHook()
    manager = _create_hook_manager()
    manager.register(hook)  # node and dataset hooks, called by the runner
    hook.after_catalog_created(catalog)
    hook.before_pipeline_run(run_params, pipeline)
    try:
        SequentialRunner().run(pipeline, catalog, manager)
    except Exception as exc:  # noqa: BLE001 - as KedroSession.run, which re-raises
        hook.on_pipeline_error(exc)
    else:
        hook.after_pipeline_run()
    return hook


def run_as_dask_workers(
    pipeline: Pipeline, catalog: DataCatalog
) -> tuple[list[NodeRun], BaseException | None]:
    """Run node by node as a Dask worker does, alternating workers, stopping at the
    first failure; the measurements travel as JSON, as in a Dask message."""
    meter = RunMeter()
    manager = _create_hook_manager()
    manager.register(meter)
    messages = []
    error = None
    for index, each in enumerate(pipeline.nodes):
        worker = WORKERS[index % 2]
        try:
            with meter.measure(each, catalog, worker=worker) as measure:
                Task(
                    node=each, catalog=catalog, hook_manager=manager, is_async=False
                ).execute()
        except Exception as exc:  # noqa: BLE001 - the driver re-raises it
            error = exc
        message = json.loads(json.dumps(measure.message()))
        messages.append(NodeMessage._make(message))
        if error is not None:
            break
    return run_record.node_runs(messages), error


def read_with_kedro_viz() -> Any:
    """What Kedro-Viz's ``/api/run-status`` answers, read from the current project."""
    from kedro_viz.api.rest.responses.run_events import get_run_status_response

    return get_run_status_response()


def essentials(response: Any) -> dict[str, Any]:
    """What both runs must agree on: everything but clocks, run ids and tracebacks."""

    def error(info: Any) -> Any:
        return None if info.error is None else info.error.message

    return {
        "nodes": {
            key: (info.status.value, error(info))
            for key, info in response.nodes.items()
        },
        "datasets": {
            key: (
                info.name,
                info.size,
                info.status.value,
                error(info),
                None if info.error is None else info.error.error_operation,
            )
            for key, info in response.datasets.items()
        },
        "pipeline": (response.pipeline.status.value, error(response.pipeline)),
    }


Scenario = Callable[[Path], DataCatalog]


def succeeds(project: Path) -> DataCatalog:
    return example_catalog(project)


def node_fails(project: Path) -> DataCatalog:
    return example_catalog(project, fail=True)


def load_fails(project: Path) -> DataCatalog:
    (project / "data" / "raw.csv").unlink(missing_ok=True)
    return example_catalog(project)


@pytest.fixture(params=[succeeds, node_fails, load_fails])
def scenario(request: pytest.FixtureRequest) -> Scenario:
    return request.param


@pytest.fixture
def both_runs(project: Path, scenario: Scenario) -> Iterator[tuple[Any, Any, Any]]:
    """Kedro-Viz's reading of a SequentialRunner run, of the same run done as the
    Dask workers do it, and the Dask run's records."""
    pipeline = example_pipeline()
    events = run_record.viz_events_path(project)
    sequential_run_with_kedro_viz(pipeline, scenario(project), full_run_params())
    assert events.is_file()
    expected = read_with_kedro_viz()
    events.unlink()

    records, error = run_as_dask_workers(pipeline, scenario(project))
    written = run_record.write_viz_events(
        records,
        pipeline,
        events,
        start=min(r.start for r in records),
        end=max(r.end for r in records),
        error=error,
        run_params=full_run_params(DASK),
    )
    assert written == events
    yield expected, read_with_kedro_viz(), records


# ------------------------------------------------------------ contract -- #


def test_kedro_viz_reads_the_dask_run_as_the_sequential_one(both_runs):
    expected, actual, _ = both_runs
    assert essentials(actual) == essentials(expected)


def test_durations_and_tracebacks_are_shown(both_runs, scenario):
    expected, actual, records = both_runs
    for key, info in expected.nodes.items():
        assert (actual.nodes[key].duration > 0) == (info.duration > 0), key
        if info.error is not None:
            assert actual.nodes[key].error.traceback, key
    if scenario is succeeds:
        assert actual.pipeline.error is None
        assert actual.pipeline.duration > 0
        return
    assert actual.pipeline.error.traceback
    failed = [r for r in records if r.failed]
    assert [r.node for r in failed] == (
        ["sum"] if scenario is node_fails else ["scale"]
    )
    assert failed[0].error in actual.pipeline.error.traceback


def test_the_dask_run_shows_each_node_that_ran(both_runs):
    expected, actual, records = both_runs
    assert set(actual.nodes) == set(expected.nodes)
    assert {r.node for r in records if r.run_time is not None} <= {
        "scale",
        "sum",
        "count",
        "report",
    }


def test_ids_are_kedro_vizs():
    from kedro_viz.integrations.kedro.hooks_utils import hash_node
    from kedro_viz.utils import _hash_input_output

    pipeline = example_pipeline()
    for each in pipeline.nodes:
        assert run_record.node_id(each) == hash_node(each)
    for name in pipeline.datasets():
        assert run_record.dataset_id(name) == _hash_input_output(name)


def test_dataset_sizes_are_measured_as_kedro_viz_does(project):
    from kedro_viz.integrations.kedro.hooks_utils import compute_size

    catalog = example_catalog(project)
    SequentialRunner().run(example_pipeline(), catalog)
    for name in ("raw", "summary", "params:factor", "scaled@pandas", "missing"):
        assert run_record.dataset_size(catalog, name) == compute_size(name, catalog)
    assert run_record.dataset_size(catalog, "summary") > 0


# ----------------------------------------------------------- partial runs --- #


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"tags": ["model"]},
        {"node_names": ["scale"]},
        {"from_nodes": ["sum"]},
        {"to_nodes": ["sum"]},
        {"from_inputs": ["raw"]},
        {"to_outputs": ["summary"]},
        {"pipeline_names": ["data_processing"]},
        {"namespaces": ["ns"]},
        {"load_versions": {"raw": "2026"}},
    ],
    ids=lambda filters: next(iter(filters), "full"),
)
def test_partial_runs_follow_kedro_vizs_rule(project, filters):
    pipeline = example_pipeline()
    hook = sequential_run_with_kedro_viz(
        pipeline, example_catalog(project), full_run_params(**filters)
    )
    recorded = run_record.viz_events_path(project).is_file()
    assert hook._should_collect_events is recorded

    previous = run_record.viz_events_path(project)
    previous.parent.mkdir(exist_ok=True)
    previous.write_text("[]")
    records, _ = run_as_dask_workers(pipeline, example_catalog(project))
    written = run_record.write_viz_events(
        records,
        pipeline,
        previous,
        start=0.0,
        end=1.0,
        run_params=full_run_params(DASK, **filters),
    )
    assert (written is not None) is recorded
    assert (previous.read_text() != "[]") is recorded


def test_nothing_is_written_without_kedro_viz(project, monkeypatch):
    monkeypatch.setattr(run_record, "_kedro_viz_installed", lambda: False)
    pipeline = example_pipeline()
    records, _ = run_as_dask_workers(pipeline, example_catalog(project))
    path = run_record.viz_events_path(project)
    assert (
        run_record.write_viz_events(records, pipeline, path, start=0.0, end=1.0) is None
    )
    assert not path.exists()
    assert not run_record.viz_events_wanted()


def test_a_project_that_disables_kedro_viz_hooks_gets_no_events(monkeypatch):
    from kedro.framework.project import settings

    monkeypatch.setattr(
        type(settings), "DISABLE_HOOKS_FOR_PLUGINS", ("kedro-viz",), raising=False
    )
    assert not run_record.viz_events_wanted()


def test_kedro_vizs_warning_about_other_runners_can_be_quieted(project, caplog):
    pipeline = example_pipeline()
    run_record.quiet_kedro_viz_runner_warning()
    run_record.quiet_kedro_viz_runner_warning()
    with caplog.at_level("WARNING"):
        sequential_run_with_kedro_viz(pipeline, example_catalog(project), {})
        hook = sequential_run_with_kedro_viz(
            pipeline, example_catalog(project), full_run_params(DASK)
        )
        sequential_run_with_kedro_viz(
            pipeline, example_catalog(project), full_run_params(DASK, tags=["x"])
        )
    assert not hook._should_collect_events
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert not [w for w in warnings if "non-sequential" in w]
    assert [w for w in warnings if "partial pipeline runs" in w]


def test_an_error_outside_any_node_names_the_first_node_not_started(project):
    pipeline = example_pipeline()
    records, _ = run_as_dask_workers(pipeline, example_catalog(project))
    events = run_record.viz_events(
        records[:1], pipeline, start=0.0, end=1.0, error=RuntimeError("worker lost")
    )
    last = events[-1]
    assert last["event"] == "on_pipeline_error"
    assert last["error"] == "worker lost"
    assert last["status"] == "not_started"
    assert last["node"] == records[1].node


# ------------------------------------------------------------- the meter --- #


def test_the_message_is_plain_data(project):
    meter = RunMeter()
    manager = _create_hook_manager()
    manager.register(meter)
    catalog = example_catalog(project)
    first = example_pipeline().nodes[0]
    with meter.measure(first, catalog, worker=WORKERS[0]) as measure:
        Task(
            node=first, catalog=catalog, hook_manager=manager, is_async=False
        ).execute()
    message = measure.message()

    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, tuple):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, str | int | float)

    assert plain(message)
    # As it travels in a Dask event: packed with msgpack, and back as tuples.
    unpacked = msgpack.unpackb(msgpack.packb(message), use_list=False)
    assert NodeMessage._make(unpacked) == message
    assert pickle.loads(pickle.dumps(message)) == message
    record = NodeRun.from_message(NodeMessage._make(unpacked))
    assert record.worker == WORKERS[0]
    assert record.status == "success"
    assert 0 < record.run_time <= record.duration
    assert [(d.dataset, d.operation) for d in record.datasets] == [
        ("raw", "loaded"),
        ("params:factor", "loaded"),
        ("scaled@pandas", "saved"),
    ]
    assert record.datasets[0].size == (project / "data" / "raw.csv").stat().st_size


def test_datasets_known_to_have_no_file_are_not_looked_up(project, monkeypatch):
    """Told which datasets may have a file (a node task's persisted ones), the
    meter gives the others the size Kedro-Viz gives a dataset without a file, 0,
    without looking them up in the catalog."""
    meter = RunMeter()
    manager = _create_hook_manager()
    manager.register(meter)
    catalog = example_catalog(project)
    first = example_pipeline().nodes[0]
    looked_up = []
    real = run_record.dataset_size

    def spy(catalog: Any, name: str) -> int:
        looked_up.append(name)
        return real(catalog, name)

    monkeypatch.setattr(run_record, "dataset_size", spy)
    with meter.measure(first, catalog, WORKERS[0], files={"raw"}) as measure:
        Task(
            node=first, catalog=catalog, hook_manager=manager, is_async=False
        ).execute()

    assert looked_up == ["raw"]
    sizes = {name: size for name, _, size in measure.message().datasets}
    assert sizes == {
        "raw": (project / "data" / "raw.csv").stat().st_size,
        "params:factor": 0,
        "scaled@pandas": 0,
    }
    assert sizes["params:factor"] == real(catalog, "params:factor")


def test_nodes_measured_at_once_in_threads_keep_their_own_events(project):
    meter = RunMeter()
    manager = _create_hook_manager()
    manager.register(meter)
    catalog = example_catalog(project)
    pipeline = example_pipeline()
    Task(
        node=pipeline.nodes[0], catalog=catalog, hook_manager=manager, is_async=False
    ).execute()
    barrier = threading.Barrier(2)

    def run(each: Any) -> NodeMessage:
        with meter.measure(each, catalog) as measure:
            barrier.wait(timeout=10)
            Task(
                node=each, catalog=catalog, hook_manager=manager, is_async=False
            ).execute()
        return measure.message()

    with ThreadPoolExecutor(2) as pool:
        messages = list(pool.map(run, pipeline.nodes[1:3]))
    for message, each in zip(messages, pipeline.nodes[1:3], strict=True):
        names = {name for name, _, _ in message.datasets}
        assert names == set(each.inputs) | set(each.outputs), each.name


def test_a_failure_while_saving_names_the_dataset(project):
    meter = RunMeter()
    manager = _create_hook_manager()
    manager.register(meter)
    catalog = example_catalog(project)
    (project / "data" / "a_directory").mkdir()
    catalog["summary"] = CSVDataset(filepath=str(project / "data" / "a_directory"))
    pipeline = example_pipeline()
    nodes = {each.name: each for each in pipeline.nodes}
    Task(nodes["scale"], catalog, hook_manager=manager, is_async=False).execute()
    with (
        pytest.raises(DatasetError, match="summary|a_directory"),
        meter.measure(nodes["sum"], catalog) as measure,
    ):
        Task(
            node=nodes["sum"],
            catalog=catalog,
            hook_manager=manager,
            is_async=False,
        ).execute()
    record = NodeRun.from_message(measure.message())
    assert record.failed
    assert record.run_time is not None
    assert (record.failed_dataset, record.failed_operation) == ("summary", "saving")
    events = run_record.viz_events([record], pipeline, start=0.0, end=1.0)
    assert [e["event"] for e in events][-2:] == ["after_node_run", "on_pipeline_error"]
    assert events[-1]["dataset"] == "summary"


def _message(
    node: str,
    worker: str,
    start: float = 1.0,
    status: str = "success",
    datasets: tuple[tuple[str, str, int | None], ...] = (),
    output_nbytes: dict[str, int] | None = None,
) -> NodeMessage:
    """A worker's measurement of a node run of one second, without an error."""
    return NodeMessage(
        *(node, worker, start, start + 1, 0.5, status, "", "", "", ""),
        datasets=datasets,
        output_nbytes=output_nbytes,
    )


def test_retried_nodes_keep_their_last_run_and_retries():
    """A node run more than once sent a message a run: the last counts, the ones
    before are its retries."""
    messages = [
        _message("a", WORKERS[0], 1.0, status="failed"),
        _message("b", WORKERS[1], 0.5),
        _message("c", WORKERS[0], 0.7, status="failed"),
        _message("a", WORKERS[0], 2.0, status="failed"),
        _message("a", WORKERS[1], 3.0),
    ]
    records = run_record.node_runs(messages)
    assert [(r.node, r.worker, r.retries, r.status) for r in records] == [
        ("b", WORKERS[1], 0, "success"),
        ("c", WORKERS[0], 0, "failed"),
        ("a", WORKERS[1], 2, "success"),
    ]


def test_moved_bytes_count_inputs_from_other_workers():
    """An input counts when another worker made it in memory: ``summary`` is a
    file (no ``output_nbytes``), ``scaled@pandas`` and ``rows`` are in memory."""
    where = {"scale": WORKERS[0], "sum": WORKERS[0], "count": WORKERS[1]}
    in_memory = {"scaled@pandas": 1000, "rows": 8}
    messages = [
        _message(
            each.name,
            {**where, "report": WORKERS[0]}[each.name],
            datasets=tuple(
                [(name, "loaded", 0) for name in each.inputs]
                + [(name, "saved", 0) for name in each.outputs]
            ),
            output_nbytes={n: in_memory[n] for n in each.outputs if n in in_memory},
        )
        for each in example_pipeline().nodes
    ]
    moved = run_record.moved_input_bytes(messages)
    assert moved == {"scale": 0, "sum": 0, "count": 1000, "report": 8}


# ------------------------------------------- the run record and the timeline --- #


def test_the_run_record_has_every_node_its_worker_and_times(project, tmp_path):
    records, error = run_as_dask_workers(example_pipeline(), node_fails(project))
    path = run_record.write_run_record(
        records,
        tmp_path / "out" / "run.json",
        run_id="r1",
        start=0.0,
        end=9.0,
        error=error,
    )
    data = json.loads(path.read_text())
    assert data["format"] == "kedro-dask-run-record"
    assert (data["run_id"], data["status"]) == ("r1", "failed")
    assert data["error"] == "summarise failed on purpose"
    assert data["workers"] == sorted(WORKERS)
    assert [n["node"] for n in data["nodes"]] == ["scale", "count", "sum"]
    for entry, record in zip(data["nodes"], records, strict=True):
        assert entry["worker"] == record.worker
        assert entry["start"] <= entry["end"]
        assert entry["duration"] == pytest.approx(entry["end"] - entry["start"])
        assert {"retries", "moved_bytes", "run_time", "status"} <= set(entry)
    assert data["nodes"][-1]["traceback"]
    assert run_record.read_run_record(path) == records
    # Indented, as json.dumps(indent=2) would.
    assert path.read_text() == json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def test_a_run_record_of_no_node_is_valid_json(tmp_path):
    path = run_record.write_run_record([], tmp_path / "run.json", error="no worker")

    data = json.loads(path.read_text())
    assert (data["nodes"], data["status"], data["error"]) == ([], "failed", "no worker")


_PREPARE_TIMELINE = """
import json
import sys
import threading
from {{ cookiecutter.python_package }}.runner import run_record

made_in = []
make_page = run_record._make_page


def _make_page(title):
    made_in.append(threading.current_thread())
    return make_page(title)


run_record._make_page = _make_page
assert "bokeh" not in sys.modules
page = run_record.prepare_timeline().result(60)
made = [{"main": t is threading.main_thread(), "daemon": t.daemon} for t in made_in]
shown = {"made": made, "bokeh": "bokeh" in sys.modules, "page": page.decode()}
print(json.dumps(shown))
"""


def prepare_timeline_in_a_fresh_process(cache: Path) -> dict[str, Any]:
    """``prepare_timeline`` in a fresh process (this one may have imported bokeh)
    whose cache directory is ``cache``: where the page was made, whether bokeh
    was imported, and the page."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "XDG_CACHE_HOME": str(cache),
    }
    result = subprocess.run(
        [sys.executable, "-c", _PREPARE_TIMELINE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_timeline_page_is_made_in_the_background(tmp_path):
    """A run asked for its record has bokeh make the timeline's page in a thread
    while it runs, bokeh's import included; the run's end only adds the data."""
    made = prepare_timeline_in_a_fresh_process(tmp_path)
    assert made["made"] == [{"main": False, "daemon": True}]
    assert made["bokeh"]
    assert 'id="kedro-dask-timeline-data"' in made["page"]


def test_the_timeline_page_is_kept_for_the_next_runs(tmp_path):
    """The page is the same for every run: the next runs read it from the user's
    cache directory and never import bokeh; a page cut short there is made again,
    and a page kept for another version of bokeh or of the runner goes."""
    other_version = tmp_path / "kedro-dask" / "timeline-0123456789abcdef.html"
    other_version.parent.mkdir()
    other_version.write_text("<html></html>", encoding="utf-8")
    first = prepare_timeline_in_a_fresh_process(tmp_path)
    assert not other_version.exists()
    (kept,) = (tmp_path / "kedro-dask").glob("timeline-*.html")
    second = prepare_timeline_in_a_fresh_process(tmp_path)
    assert (second["made"], second["bokeh"]) == ([], False)
    assert second["page"] == first["page"] == kept.read_text(encoding="utf-8")

    kept.write_text(first["page"][: len(first["page"]) // 2], encoding="utf-8")
    third = prepare_timeline_in_a_fresh_process(tmp_path)
    assert third["made"] and third["bokeh"]
    assert kept.read_text(encoding="utf-8") == third["page"]
    assert list((tmp_path / "kedro-dask").iterdir()) == [kept]


def test_the_timeline_is_a_page_that_needs_no_server(project, tmp_path):
    records, _ = run_as_dask_workers(example_pipeline(), node_fails(project))
    ok = NodeRun(
        "count", worker=WORKERS[1], start=records[-1].end, end=records[-1].end + 1
    )
    path = run_record.write_timeline([*records, ok], tmp_path / "timeline.html")
    html = path.read_text()
    assert html.lstrip().lower().startswith("<!doctype html>")
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", html, re.IGNORECASE)
    assert tags, "bokeh's code is inlined in script tags"
    assert not [tag for tag in tags if re.search(r"\b(src|href)=", tag)]
    assert timeline_data(html) == json.loads(run_record.run_record_json(records + [ok]))


def timeline_data(html: str) -> Any:
    """The run record a timeline's page holds, read back."""
    element = re.search(
        r'<script type="application/json" id="kedro-dask-timeline-data">(.*?)'
        r"</script>",
        html,
        re.DOTALL,
    )
    assert element, "the page holds the run's data"
    return json.loads(element.group(1))


def test_the_timeline_holds_the_run_record_it_is_given(tmp_path):
    """The run's end makes the run record's JSON once, for both files."""
    record = NodeRun("a", worker=WORKERS[0], start=1.0, end=2.0)
    record_json = run_record.run_record_json([record], run_id="r7", start=0.5)
    path = run_record.write_timeline(
        [record], tmp_path / "timeline.html", record_json=record_json
    )
    assert timeline_data(path.read_text()) == json.loads(record_json)


def test_no_node_name_or_error_ends_the_timeline_data(tmp_path):
    """The run's data is a JSON element of the page: what a node is called, or
    what its error says, reads back as it was and cannot end the element."""
    odd = NodeRun(
        "</script><script>alert(1)</script>",
        worker=WORKERS[0],
        start=1.0,
        end=2.0,
        status=run_record.FAILED,
        error="<!-- boom",
    )
    html = run_record.write_timeline([odd], tmp_path / "timeline.html").read_text()
    data = timeline_data(html)
    assert data["workers"] == [WORKERS[0]]
    assert [(n["node"], n["error"]) for n in data["nodes"]] == [(odd.node, odd.error)]
