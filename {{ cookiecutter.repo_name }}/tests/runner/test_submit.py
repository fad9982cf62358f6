"""``TaskFeeder``: a run's Dask graph submitted as its tasks become ready.

On the session's real cluster: what the scheduler knows at each step, and what
it still holds once the driver has seen a task finish.
"""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from distributed import Client
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_datasets.pandas import CSVDataset

from {{ cookiecutter.python_package }}.runner.graph import DaskGraph, PipelineGraph
from {{ cookiecutter.python_package }}.runner.submit import TaskFeeder
from {{ cookiecutter.python_package }}.runner.worker import RunContext

from .conftest import scheduler_keys_in_memory, scheduler_task_keys, wait_until


def add_one(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(value=df["value"] + 1)


def identity(data: Any) -> Any:
    return data


def total(disk: pd.DataFrame, memory: pd.DataFrame, extra: int) -> int:
    return int(disk["value"].sum() + memory["value"].sum()) + extra


RAW = pd.DataFrame({"value": [1, 2, 3]})  # + 1: 2, 3, 4, sum 9
EXTRA = 100


def _pipeline() -> Pipeline:
    """raw (CSV) -> make -> mem (memory) -> save -> disk (CSV); disk, mem and
    ``extra`` (an in-memory pipeline input) -> late -> out (free output)."""
    return Pipeline(
        [
            node(add_one, "raw", "mem", name="make"),
            node(identity, "mem", "disk", name="save"),
            node(total, ["disk", "mem", "extra"], "out", name="late"),
        ]
    )


def _graph(tmp_path: Path) -> DaskGraph:
    raw = CSVDataset(filepath=str(tmp_path / "raw.csv"), save_args={"index": False})
    raw.save(RAW)
    catalog = DataCatalog(
        datasets={
            "raw": raw,
            "mem": MemoryDataset(),
            "disk": CSVDataset(
                filepath=str(tmp_path / "disk.csv"), save_args={"index": False}
            ),
        }
    )
    context = RunContext(
        run_id="run", is_async=False, package_name=None, hook_plugins=pickle.dumps([])
    )
    plan = PipelineGraph(_pipeline(), catalog)
    return plan.to_dask(
        uuid.uuid4().hex,
        pickle.dumps(context),
        {"extra": pickle.dumps(EXTRA)},
        fuse=False,
    )


@pytest.fixture
def client(client_args) -> Any:
    with Client(client_args["address"], set_as_default=False, timeout=10) as client:
        yield client


def _key(dask_graph: DaskGraph, name: str) -> Any:
    return next(k for n, k in dask_graph.node_keys.items() if n.name == name)


def test_a_consumer_of_persisted_data_is_submitted_once_its_producer_finished(
    tmp_path, client
):
    dask_graph = _graph(tmp_path)
    make, save, late = (_key(dask_graph, n) for n in ("make", "save", "late"))
    feeder = TaskFeeder(client, dask_graph)

    # make and save (which takes make's data) go at once; late waits for save.
    started = feeder.start()
    assert {f.key for f in started} == {make, save}
    assert late not in client.run_on_scheduler(scheduler_task_keys)
    client.gather(started)
    assert all(f.status == "finished" for f in started)
    [make_future] = [f for f in started if f.key == make]
    assert feeder.finished([make]) == []  # late still waits for save
    [late_future] = feeder.finished([save])
    assert late_future.key == late
    del started, make_future

    # late took make's data, submitted in an earlier step, by its future.
    assert late_future.result() == 9 + 9 + EXTRA
    [out] = client.gather([feeder.kept[dask_graph.output_keys["out"]]])
    assert out == 9 + 9 + EXTRA


def test_a_finished_task_nobody_takes_from_is_released_at_once(tmp_path, client):
    """save's result (it has none: its output is on disk) is not held once the
    driver has seen it finish, so no lost worker can make Dask run it again;
    make's, which late takes, is held until late has finished."""
    dask_graph = _graph(tmp_path)
    make, save, late = (_key(dask_graph, n) for n in ("make", "save", "late"))
    feeder = TaskFeeder(client, dask_graph)
    started = feeder.start()
    client.gather(started)
    del started

    def known() -> set[Any]:
        return set(client.run_on_scheduler(scheduler_task_keys))

    def in_memory() -> set[Any]:
        return set(client.run_on_scheduler(scheduler_keys_in_memory))

    assert wait_until(lambda: save not in known()), known()
    assert make in in_memory()  # late, not submitted yet, will take it
    [late_future] = feeder.finished([make, save])
    assert late_future.result() == 9 + 9 + EXTRA
    assert make in in_memory()  # held until the driver sees late finished
    assert feeder.finished([late]) == []
    del late_future
    # Only the free output is left, for the driver to gather.
    assert set(feeder.kept) == {late}
    assert wait_until(lambda: in_memory() & {make, late} == {late}), in_memory()


def test_held_futures_are_what_to_cancel_on_failure(tmp_path, client):
    dask_graph = _graph(tmp_path)
    feeder = TaskFeeder(client, dask_graph)
    started = feeder.start()
    make = _key(dask_graph, "make")
    # make's data waits for late; extra's too.
    assert {f.key for f in feeder.held()} == {
        make,
        (f"kedro-input-{dask_graph.token}", "extra"),
    }
    client.cancel([*started, *feeder.held()], force=True)
    del started
    token = dask_graph.token
    assert wait_until(
        lambda: (
            not any(
                key[0].endswith(token)
                for key in client.run_on_scheduler(scheduler_task_keys)
            )
        )
    )
