"""``compat``: the private Kedro and Dask API the runner relies on. Each test
pins what the runner expects of one function, against the installed Kedro and
Dask: when an upgrade changes it, the failing test names the function."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pandas as pd
import pytest
from kedro.framework.hooks import hook_impl
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.io.memory_dataset import _infer_copy_mode
from kedro_datasets.pandas import CSVDataset

from {{ cookiecutter.python_package }}.runner.compat import (
    add_validator_specs,
    copy_mode_of,
    create_hook_manager,
    hold,
    memory_copy_mode,
    named_graph,
    scheduler_events,
    start_on_workers,
    store,
    taken,
)


class DataFrame:
    """Named like the dataframes Kedro passes by reference (polars, spark...)."""


@pytest.mark.parametrize(
    "data",
    [pd.DataFrame({"a": [1]}), np.ones(3), DataFrame(), {"a": [1]}, [1, 2], 7, None],
    ids=lambda data: type(data).__name__,
)
def test_copy_mode_is_inferred_as_kedro_does(data):
    assert copy_mode_of(data) == _infer_copy_mode(data)


@pytest.mark.parametrize("copy_mode", ["assign", "copy", "deepcopy", None])
def test_store_stores_as_memory_dataset_save_does(copy_mode):
    stored_value, saved_value = {"a": [1, 2]}, {"a": [1, 2]}
    stored, saved = (
        MemoryDataset(copy_mode=copy_mode),
        MemoryDataset(copy_mode=copy_mode),
    )

    store(stored, stored_value)
    saved.save(saved_value)

    assert stored.load() == saved.load() == {"a": [1, 2]}
    # The same copies as save: a change to what was loaded reaches the stored
    # data, and the value handed in, exactly when it does for save.
    stored.load()["a"].append(3)
    saved.load()["a"].append(3)
    assert stored.load() == saved.load()
    assert stored_value == saved_value


def test_hold_keeps_the_very_object_and_load_copies_by_mode():
    value = {"a": [1]}

    dataset = hold(MemoryDataset(copy_mode="deepcopy"), value)

    assert dataset.exists()
    loaded = dataset.load()
    assert loaded == value and loaded is not value
    assert hold(MemoryDataset(copy_mode="assign"), value).load() is value


def test_taken_is_what_load_returns_for_an_assign_dataset():
    value = {"a": [1]}
    dataset = MemoryDataset(copy_mode="assign")
    dataset.save(value)

    assert taken(dataset) is dataset.load() is value
    with pytest.raises(DatasetError, match="has not been saved yet"):
        taken(MemoryDataset(copy_mode="assign"))


def test_memory_copy_mode_reads_the_configured_mode():
    assert memory_copy_mode(MemoryDataset(copy_mode="assign")) == "assign"
    assert memory_copy_mode(MemoryDataset()) is None
    assert memory_copy_mode(CSVDataset(filepath="x.csv")) is None


def test_validator_specs_added_to_a_catalog_are_its_specs():
    source = DataCatalog()
    specs = dict(source.validator_specs)  # whatever Kedro keeps: copied as is
    catalog = DataCatalog(datasets={"x": MemoryDataset(1)})

    add_validator_specs(catalog, {"x": "a spec"})

    assert catalog.validator_specs == {**specs, "x": "a spec"}


@pytest.mark.parametrize("traced", [True, False])
def test_the_hook_manager_knows_kedro_s_node_hooks(traced):
    class Recorder:
        calls: list[str] = []

        @hook_impl
        def before_node_run(self, node) -> None:
            self.calls.append(node)

    manager = create_hook_manager(traced=traced)
    manager.register(Recorder())

    manager.hook.before_node_run(
        node="n", catalog=None, inputs={}, is_async=False, run_id=None
    )
    assert Recorder.calls == ["n"]
    # The same hook specifications as the manager of a Kedro session.
    assert vars(manager.hook).keys() == vars(_create_hook_manager().hook).keys()


_HOOKS = "kedro.framework.hooks.manager"


def _hook_traces(manager, caplog) -> list[str]:
    """The trace records a hook call on ``manager`` leaves at DEBUG."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=_HOOKS):
        manager.hook.before_node_run(
            node="n", catalog=None, inputs={}, is_async=False, run_id=None
        )
    return [r.getMessage() for r in caplog.records if r.name == _HOOKS]


def test_a_worker_s_hook_manager_writes_the_traces_kedro_s_writes(caplog):
    """Kedro writes its traces of hook calls only when its hook manager logs at
    DEBUG: a worker's manager (``traced=False``) skips pluggy's tracing below
    DEBUG, and writes the same traces as Kedro's at DEBUG."""
    assert _hook_traces(create_hook_manager(traced=False), caplog) == []
    with caplog.at_level(logging.DEBUG, logger=_HOOKS):
        traced, kedros = create_hook_manager(traced=False), _create_hook_manager()
    assert any("before_node_run" in t for t in _hook_traces(kedros, caplog))
    assert _hook_traces(traced, caplog) == _hook_traces(kedros, caplog)


def test_the_graph_is_named_by_the_run_token_not_tokenized():
    graph = {("noop-abc", "x"): (int, 1)}

    expression = named_graph(graph, "abc")

    assert expression.deterministic_token == "abc"
    assert expression.__dask_keys__() == [("noop-abc", "x")]


def _read_events(topic: str) -> list:
    return [message for _, message in scheduler_events(topic)]


def test_a_task_reads_the_scheduler_s_events_of_a_topic(inspector):
    """What ``worker.Reruns`` relies on: a task on a worker reads a topic's
    events through its worker's connection to the scheduler."""
    inspector.log_event("kedro-compat-test", "noted")
    future = inspector.submit(_read_events, "kedro-compat-test", pure=False)
    assert future.result() == ["noted"]
    with pytest.raises(ValueError):  # not on a worker
        scheduler_events("kedro-compat-test")


def _address(dask_worker) -> str:
    return dask_worker.address


async def _slow() -> None:
    await asyncio.sleep(3)  # over before the session's cluster closes


def test_start_on_workers_answers_for_each_worker_or_gives_up(
    inspector, worker_addresses
):
    answers = start_on_workers(inspector, _address, timeout=10).result()
    assert answers == {address: address for address in worker_addresses}

    slow = start_on_workers(inspector, _slow, timeout=0.5)
    assert not slow.done()  # started, not waited for
    with pytest.raises(TimeoutError):  # not the answers, 3 s later
        slow.result()
