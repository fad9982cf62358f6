"""``PipelineGraph``: a Kedro pipeline translated into one Dask graph.

No cluster is needed: the graph is executed with Dask's synchronous in-process
scheduler, which runs its node tasks right here, and its keys are inspected with
Dask's public graph functions (``dask.core.get_dependencies``). No test reads how
a task is laid out inside the graph. The order that persisted data sets,
``DaskGraph.after``, is kept by the driver (``submit.TaskFeeder``); here
``_compute`` keeps it by giving each task a dependency on what it comes after.
"""

from __future__ import annotations

import functools
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dask
import pandas as pd
import pytest
from dask.core import get_dependencies
from dask.highlevelgraph import HighLevelGraph
from dask.utils import key_split
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset, DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_datasets.pandas import CSVDataset

import {{ cookiecutter.python_package }}
from {{ cookiecutter.python_package }}.runner.graph import (
    DaskGraph,
    PipelineGraph,
    UnpicklableError,
    task_prefix,
)
from {{ cookiecutter.python_package }}.runner.worker import RunContext


# --------------------------------------------------------------------------- #
# Node functions (module level: workers import them by name)
# --------------------------------------------------------------------------- #
def add_one(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(value=df["value"] + 1)


def total(df: pd.DataFrame, extra: int) -> int:
    return int(df["value"].sum()) + extra


def total_of_second(extra: int, df: pd.DataFrame) -> int:
    """``total`` taking the data frame second."""
    return total(df, extra)


def split_even_odd(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {
        "even": df[df["value"] % 2 == 0].reset_index(drop=True),
        "odd": df[df["value"] % 2 == 1].reset_index(drop=True),
    }


def count_rows(even: pd.DataFrame, odd: pd.DataFrame) -> tuple[int, int]:
    return len(even), len(odd)


def identity(data: Any) -> Any:
    return data


class Adder:
    """A callable object as a node function."""

    def __call__(self, x: int) -> int:
        return x + 1


class LockedDataset(AbstractDataset):
    """A dataset holding a lock, which no pickler can ship to a worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _load(self) -> Any:
        return 1

    def _save(self, data: Any) -> None:
        pass

    def _describe(self) -> dict[str, Any]:
        return {}


UNPICKLED: list[str] = []
"""Names of the ``TracedCSV`` files a task unpickled, in order."""


class TracedCSV(CSVDataset):
    """A CSV dataset noting in ``UNPICKLED`` each time a task unpickles it."""

    def __init__(self, filepath: str, **kwargs: Any) -> None:
        super().__init__(filepath=filepath, **kwargs)
        self.traced_name = Path(filepath).stem

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        UNPICKLED.append(self.traced_name)


RAN: list[tuple[str, str | None, int]] = []
"""``(node, run id, plugin instance)`` of each node run, in order."""


class RecordNodes:
    """A node hook noting in ``RAN`` each node a task runs: with the run id it
    sees and which unpickled copy of this plugin was called."""

    @hook_impl
    def before_node_run(self, node: Any, run_id: str) -> None:
        RAN.append((node.name, run_id, id(self)))


@pytest.fixture
def ran() -> Iterator[list[tuple[str, str | None, int]]]:
    RAN.clear()
    yield RAN
    RAN.clear()


@pytest.fixture
def unpickled() -> Iterator[list[str]]:
    UNPICKLED.clear()
    yield UNPICKLED
    UNPICKLED.clear()


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
RAW = pd.DataFrame({"value": [1, 2, 3, 4, 5]})
PREPARED = add_one(RAW)  # 2..6: evens 2, 4, 6; odds 3, 5; sum 20


def _catalog(tmp_path: Path, csv: type[CSVDataset] = CSVDataset) -> DataCatalog:
    raw = csv(filepath=str(tmp_path / "raw.csv"), save_args={"index": False})
    raw.save(RAW)
    return DataCatalog(
        datasets={
            "raw": raw,
            "prepared": MemoryDataset(),
            "report": csv(
                filepath=str(tmp_path / "report.csv"), save_args={"index": False}
            ),
        }
    )


def _pipeline() -> Pipeline:
    """raw (CSV) -> prepare -> prepared (memory) -> split -> even, odd (memory,
    undeclared) -> count -> counts (free); prepared -> write_report -> report
    (CSV) -> read_report -> report_total (free), with ``extra`` a memory input
    that the catalog does not declare."""
    return Pipeline(
        [
            node(add_one, "raw", "prepared", name="prepare"),
            node(
                split_even_odd, "prepared", {"even": "even", "odd": "odd"}, name="split"
            ),
            node(count_rows, ["even", "odd"], ["n_even", "n_odd"], name="count"),
            node(identity, "prepared", "report", name="write_report"),
            node(total, ["report", "extra"], "report_total", name="read_report"),
        ]
    )


def _context(run_id: str = "run", plugins: tuple[Any, ...] = ()) -> bytes:
    return pickle.dumps(
        RunContext(
            run_id=run_id,
            is_async=False,
            package_name=None,
            hook_plugins=pickle.dumps(list(plugins)),
        )
    )


EXTRA = 100  # the value of the in-memory pipeline input ``extra``


def _to_dask(  # noqa: PLR0913
    graph: PipelineGraph,
    token: str | None = None,
    *,
    fuse: bool = False,
    inputs: Mapping[str, Any] | None = None,
    context: bytes | None = None,
    node_options: Callable[[Any], dict[str, Any]] | None = None,
) -> tuple[DaskGraph, str]:
    """The graph of one run; one task per node unless ``fuse`` (chains below).

    Every in-memory pipeline input is ``EXTRA`` unless ``inputs`` says otherwise.
    """
    token = token or uuid.uuid4().hex
    values = dict.fromkeys(graph.memory_inputs, EXTRA) | dict(inputs or {})
    dask_graph = graph.to_dask(
        token,
        context or _context(),
        {name: pickle.dumps(values[name]) for name in graph.memory_inputs},
        node_options=node_options,
        fuse=fuse,
    )
    return dask_graph, token


def _key_of(dask_graph: DaskGraph, node_name: str) -> Any:
    return next(k for n, k in dask_graph.node_keys.items() if n.name == node_name)


def _depends_on(dask_graph: DaskGraph, key: Any) -> set[Any]:
    """The keys whose results Dask must have before it runs ``key``."""
    return set(get_dependencies(dask_graph.graph, key))


def _comes_after(dask_graph: DaskGraph, key: Any) -> set[Any]:
    """The node tasks that must finish before ``key`` is submitted."""
    return set(dask_graph.after.get(key, ()))


def _first(value: Any, *_finished: Any) -> Any:
    return value


def _compute(dask_graph: DaskGraph, *keys: Any) -> Any:
    """What the graph computes for ``keys``, in this process (node tasks too),
    each task run after the tasks in its ``after``."""
    graph = {
        key: (_first, task, *dask_graph.after.get(key, ()))
        for key, task in dask_graph.graph.items()
    }
    results = dask.get(graph, list(keys))
    return results[0] if len(keys) == 1 else tuple(results)


def _node_names(ran: list[tuple[str, str | None, int]]) -> list[str]:
    return [name for name, _run_id, _plugin in ran]


# --------------------------------------------------------------------------- #
# Classification
# --------------------------------------------------------------------------- #
def test_memory_and_persisted_datasets_are_told_apart(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))

    # Declared MemoryDataset, and names the catalog does not declare: memory.
    for name in ("prepared", "even", "odd", "n_even", "n_odd", "extra", "report_total"):
        assert graph.is_memory(name), name
    # A pandas.CSVDataset is persisted, whether read or written in the run.
    assert not graph.is_memory("raw")
    assert not graph.is_memory("report")


def test_memory_inputs_and_free_outputs(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))

    # ``raw`` is an input too, but persisted: workers read it themselves.
    assert graph.memory_inputs == ["extra"]
    assert graph.free_outputs == ["n_even", "n_odd", "report_total"]


def test_persisted_free_output_is_not_shipped_back(tmp_path):
    catalog = _catalog(tmp_path)
    pipeline = Pipeline([node(add_one, "raw", "report", name="to_csv")])

    graph = PipelineGraph(pipeline, catalog)
    dask_graph, _ = _to_dask(graph)

    assert graph.free_outputs == []
    assert dask_graph.output_keys == {}
    # The node writes the CSV on its worker; its task hands nothing back.
    assert _compute(dask_graph, _key_of(dask_graph, "to_csv")) is None
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "report.csv"), PREPARED)


# --------------------------------------------------------------------------- #
# Keys
# --------------------------------------------------------------------------- #
def test_node_keys_name_the_function_the_run_and_the_node(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, token = _to_dask(graph)

    assert set(dask_graph.node_keys) == set(_pipeline().nodes)
    for task_node, key in dask_graph.node_keys.items():
        group, name = key
        assert name == task_node.name
        assert group == f"{task_node.func.__name__}-{token}"
        # How Dask and its dashboard group tasks: by function, as for an array.
        assert key_split(key) == task_node.func.__name__
        assert key in dask_graph.graph
    assert len(set(dask_graph.node_keys.values())) == len(dask_graph.node_keys)


def test_nodes_running_one_function_share_a_task_group(tmp_path):
    pipeline = Pipeline(
        [node(add_one, "raw", f"out_{i}", name=f"add_{i}") for i in range(3)]
        + [node(identity, "out_0", "copy", name="copy")]
    )
    dask_graph, token = _to_dask(PipelineGraph(pipeline, _catalog(tmp_path)))

    groups = {name: group for group, name in dask_graph.node_keys.values()}
    assert groups == {
        "add_0": f"add_one-{token}",
        "add_1": f"add_one-{token}",
        "add_2": f"add_one-{token}",
        "copy": f"identity-{token}",
    }


@pytest.mark.parametrize(
    ("func", "prefix"),
    [
        (add_one, "add_one"),
        (functools.partial(total, extra=1), "total"),
        (lambda x: x, "lambda"),
        (Adder(), "Adder"),
    ],
)
def test_task_prefix_is_a_word_dask_keeps_whole(func, prefix):
    task_node = node(func, "a", "b", name="n")

    assert task_prefix(task_node) == prefix
    assert key_split((f"{task_prefix(task_node)}-{uuid.uuid4().hex}", "n")) == prefix


def test_keys_differ_between_runs(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))

    first, _ = _to_dask(graph)
    second, _ = _to_dask(graph)

    assert not set(first.graph) & set(second.graph)


def test_graph_holds_node_tasks_and_the_data_keys_of_in_memory_data(tmp_path):
    """Besides one task per node, a key per in-memory pipeline input and per
    output of a node with several in-memory outputs; nothing else."""
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, token = _to_dask(graph)

    assert set(dask_graph.graph) == {
        *dask_graph.node_keys.values(),
        (f"kedro-input-{token}", "extra"),
        *((f"kedro-output-{token}", n) for n in ("even", "odd", "n_even", "n_odd")),
    }


# --------------------------------------------------------------------------- #
# In-memory data
# --------------------------------------------------------------------------- #
def test_single_memory_output_is_the_node_result(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, _ = _to_dask(graph)
    prepare_key = _key_of(dask_graph, "prepare")

    # ``prepared`` has no key of its own: its consumers take the node's result...
    assert not any("prepared" in key for key in dask_graph.graph)
    assert _depends_on(dask_graph, _key_of(dask_graph, "split")) == {prepare_key}
    assert _depends_on(dask_graph, _key_of(dask_graph, "write_report")) == {prepare_key}
    # ...which is ``prepared`` itself.
    pd.testing.assert_frame_equal(_compute(dask_graph, prepare_key), PREPARED)
    # Same for a free output: the driver gathers the node's own key.
    read_key = _key_of(dask_graph, "read_report")
    assert dask_graph.output_keys["report_total"] == read_key
    assert _compute(dask_graph, read_key) == 20 + EXTRA


def test_several_memory_outputs_get_their_own_keys(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, token = _to_dask(graph)
    split_key = _key_of(dask_graph, "split")
    count_key = _key_of(dask_graph, "count")
    even_key = (f"kedro-output-{token}", "even")
    odd_key = (f"kedro-output-{token}", "odd")

    # ``count`` takes each output from its own key, which takes it from split.
    assert _depends_on(dask_graph, count_key) == {even_key, odd_key}
    assert _depends_on(dask_graph, even_key) == {split_key}
    assert _depends_on(dask_graph, odd_key) == {split_key}
    even, odd = _compute(dask_graph, even_key, odd_key)
    expected = split_even_odd(PREPARED)
    pd.testing.assert_frame_equal(even, expected["even"])
    pd.testing.assert_frame_equal(odd, expected["odd"])
    # Free outputs of a node with several memory outputs, likewise.
    n_even_key, n_odd_key = (dask_graph.output_keys[n] for n in ("n_even", "n_odd"))
    assert len({n_even_key, n_odd_key, count_key}) == 3
    assert _depends_on(dask_graph, n_even_key) == {count_key}
    assert _depends_on(dask_graph, n_odd_key) == {count_key}
    assert _compute(dask_graph, n_even_key, n_odd_key) == (3, 2)


def test_memory_pipeline_inputs_are_recomputable_tasks(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, token = _to_dask(graph)
    input_key = (f"kedro-input-{token}", "extra")

    # ``extra`` is the only in-memory data ``read_report`` receives; ``report``
    # comes from ``write_report`` on disk (see below).
    assert _depends_on(dask_graph, _key_of(dask_graph, "read_report")) == {input_key}
    assert input_key not in dask_graph.node_keys.values()
    # A task of the graph, needing nothing else, that yields the driver's value:
    # any worker can compute it again.
    assert _depends_on(dask_graph, input_key) == set()
    assert _compute(dask_graph, input_key) == EXTRA
    assert _compute(dask_graph, input_key) == EXTRA


def test_every_node_task_carries_the_same_run_context(tmp_path, ran):
    run_id = uuid.uuid4().hex
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, _ = _to_dask(graph, context=_context(run_id, (RecordNodes(),)))

    # Inline in each task, not a shared key: a node fed by no other node
    # depends on nothing, and no key but the nodes' and their data's exists
    # (``test_graph_holds_node_tasks_and_the_data_keys_of_in_memory_data``).
    assert _depends_on(dask_graph, _key_of(dask_graph, "prepare")) == set()
    _compute(dask_graph, *dask_graph.output_keys.values())

    # Every node saw the run's context: its run id, and its hooks, unpickled
    # once for all tasks (one plugin instance), as they are once per worker.
    assert sorted(_node_names(ran)) == sorted(n.name for n in _pipeline().nodes)
    assert {run for _name, run, _plugin in ran} == {run_id}
    assert len({plugin for _name, _run, plugin in ran}) == 1


def test_each_task_carries_only_its_own_nodes_datasets(tmp_path, unpickled):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path, csv=TracedCSV))
    dask_graph, _ = _to_dask(graph)
    read_report = next(n for n in _pipeline().nodes if n.name == "read_report")

    assert graph.memory_inputs_of(read_report) == ["extra"]
    assert graph.memory_outputs_of(read_report) == ["report_total"]

    assert _compute(dask_graph, _key_of(dask_graph, "prepare")) is not None
    assert unpickled == ["raw"]  # prepare's task ships ``raw`` alone
    unpickled.clear()
    _compute(dask_graph, *dask_graph.output_keys.values())
    # Each persisted dataset once per node loading or saving it (prepare;
    # write_report and read_report), none in split's and count's tasks.
    assert sorted(unpickled) == ["raw", "report", "report"]


# --------------------------------------------------------------------------- #
# Persisted data
# --------------------------------------------------------------------------- #
def test_persisted_dataset_orders_consumer_after_producer(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, _ = _to_dask(graph)
    write_key = _key_of(dask_graph, "write_report")

    # ``report`` is read from disk, so read_report comes after write_report's
    # task, which writes it and returns no data to pass on: not a dependency
    # Dask would keep the result of.
    read_key = _key_of(dask_graph, "read_report")
    assert _comes_after(dask_graph, read_key) == {write_key}
    assert write_key not in _depends_on(dask_graph, read_key)
    assert _compute(dask_graph, write_key) is None
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "report.csv"), PREPARED)
    # ``raw`` is not produced in the run: nothing to wait for.
    assert _depends_on(dask_graph, _key_of(dask_graph, "prepare")) == set()


def test_persisted_only_consumer_does_not_receive_the_producers_memory_data(
    tmp_path,
):
    """``write`` saves ``report`` (CSV) and hands ``kept`` in memory to
    ``use_kept``; ``read`` needs only ``report``: it comes after ``write``
    without depending on its result, so ``kept`` never moves to its worker."""
    pipeline = Pipeline(
        [
            node(lambda df: (df, 7), "raw", ["report", "kept"], name="write"),
            node(identity, "report", "copy", name="read"),
            node(identity, "kept", "kept_copy", name="use_kept"),
        ]
    )
    graph = PipelineGraph(pipeline, _catalog(tmp_path))
    dask_graph, _ = _to_dask(graph)
    write_key = _key_of(dask_graph, "write")

    assert _depends_on(dask_graph, _key_of(dask_graph, "use_kept")) == {write_key}
    assert _compute(dask_graph, write_key) == 7  # write's result is ``kept``
    assert _depends_on(dask_graph, _key_of(dask_graph, "read")) == set()
    assert _comes_after(dask_graph, _key_of(dask_graph, "read")) == {write_key}
    copy, kept_copy = _compute(
        dask_graph, dask_graph.output_keys["copy"], dask_graph.output_keys["kept_copy"]
    )
    pd.testing.assert_frame_equal(copy, RAW)
    assert kept_copy == 7


def test_transcoded_persisted_dataset_orders_consumer_after_producer(tmp_path):
    """``df@write`` and ``df@read`` are one dataset for Kedro (transcoding): the
    reader must wait for the writer, as Kedro's own toposort makes it."""
    path = str(tmp_path / "df.csv")
    catalog = DataCatalog(
        datasets={
            "src": MemoryDataset(),
            "df@write": CSVDataset(filepath=path, save_args={"index": False}),
            "df@read": CSVDataset(filepath=path),
        }
    )
    pipeline = Pipeline(
        [
            node(add_one, "src", "df@write", name="writer"),
            node(identity, "df@read", "copy", name="reader"),
        ]
    )
    assert pipeline.node_dependencies[pipeline.nodes[1]] == {pipeline.nodes[0]}

    dask_graph, _ = _to_dask(PipelineGraph(pipeline, catalog), inputs={"src": RAW})

    reader_key = _key_of(dask_graph, "reader")
    assert _comes_after(dask_graph, reader_key) == {_key_of(dask_graph, "writer")}
    # The reader reads what the writer wrote.
    pd.testing.assert_frame_equal(_compute(dask_graph, reader_key), PREPARED)


@pytest.mark.parametrize("fuse", [False, True])
def test_graph_computes_with_the_synchronous_scheduler(tmp_path, fuse):
    """The graph is valid Dask: its results are those of the pipeline."""
    catalog = _catalog(tmp_path)
    graph = PipelineGraph(_pipeline(), catalog)
    dask_graph, _ = _to_dask(graph, fuse=fuse)
    keys = [dask_graph.output_keys[name] for name in graph.free_outputs]
    n_even, n_odd, report_total = _compute(dask_graph, *keys)

    # raw + 1 = 2..6: evens 2, 4, 6; odds 3, 5; sum 20 + extra 100.
    assert (n_even, n_odd, report_total) == (3, 2, 120)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "report.csv"), PREPARED)


# --------------------------------------------------------------------------- #
# Chains
# --------------------------------------------------------------------------- #
def _names(chains: list[list]) -> list[list[str]]:
    return [[n.name for n in chain] for chain in chains]


def test_the_fixture_pipeline_has_one_chain(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))

    # prepare feeds two nodes, count is fed by one with two outputs: they stay
    # apart. write_report is read_report's only parent and feeds only it.
    assert sorted(_names(graph.chains())) == [
        ["count"],
        ["prepare"],
        ["split"],
        ["write_report", "read_report"],
    ]


@pytest.mark.parametrize(
    ("func", "inputs"),
    [(total, ["a_out", "extra"]), (total_of_second, ["extra", "a_out"])],
    ids=["handed-first", "handed-second"],
)
def test_a_linear_chain_is_one_task_that_takes_pipeline_inputs(
    tmp_path, ran, func, inputs
):
    """a -> b -> c handing memory data along, with ``extra`` (a pipeline input)
    joining at b, before or after what a hands it: one task, the input key its
    only dependency, running a, b and c in turn."""
    pipeline = Pipeline(
        [
            node(add_one, "raw", "a_out", name="a"),
            node(func, inputs, "b_out", name="b"),
            node(lambda x: x * 2, "b_out", "c_out", name="c"),
        ]
    )
    graph = PipelineGraph(pipeline, _catalog(tmp_path))
    context = _context(plugins=(RecordNodes(),))
    dask_graph, token = _to_dask(graph, fuse=True, context=context)

    chain_key = dask_graph.node_keys[pipeline.nodes[-1]]
    assert set(dask_graph.node_keys.values()) == {chain_key}
    assert chain_key == (f"lambda-{token}", "c")
    input_key = (f"kedro-input-{token}", "extra")
    assert set(dask_graph.graph) == {chain_key, input_key}  # a's, b's outputs: inside
    assert _depends_on(dask_graph, chain_key) == {input_key}
    assert dask_graph.output_keys == {"c_out": chain_key}
    # raw 1..5 + 1 = 2..6, summed 20, + extra 100, doubled.
    assert _compute(dask_graph, chain_key) == 240
    assert _node_names(ran) == ["a", "b", "c"]


def test_chains_stop_where_parallelism_or_options_differ(tmp_path):
    pipeline = Pipeline(
        [
            node(add_one, "raw", "left", name="fork"),  # two children
            node(identity, "left", "l1", name="l1"),
            node(identity, "left", "r1", name="r1"),
            node(identity, "l1", "l2", name="l2"),
            node(count_rows, ["l2", "r1"], ["n_l", "n_r"], name="join"),  # 2 parents
            node(identity, "n_l", "gpu_out", name="on_gpu", tags=["gpu"]),
            node(identity, "gpu_out", "after_gpu", name="after_gpu"),
        ]
    )
    graph = PipelineGraph(pipeline, _catalog(tmp_path))

    def options(task_node) -> dict:
        return {"resources": {"GPU": 1}} if "gpu" in task_node.tags else {}

    chains = _names(graph.chains(options))
    assert ["l1", "l2"] in chains  # a linear stretch between a fork and a join
    assert ["on_gpu"] in chains and ["after_gpu"] in chains  # options differ
    assert sorted(n for chain in chains for n in chain) == sorted(
        n.name for n in pipeline.nodes
    )
    assert len(chains) == 6
    # Without options, the GPU node and its child form a chain.
    assert ["on_gpu", "after_gpu"] in _names(graph.chains())


def test_a_free_output_ends_a_chain(tmp_path):
    """``count`` goes back to the driver: its node keeps its own key, even
    though its only child follows it through a persisted dataset."""
    pipeline = Pipeline(
        [
            node(lambda df: (df, 1), "raw", ["report", "count"], name="write"),
            node(identity, "report", "copy", name="read"),
        ]
    )
    graph = PipelineGraph(pipeline, _catalog(tmp_path))
    dask_graph, _ = _to_dask(graph, fuse=True)

    assert graph.free_outputs == ["copy", "count"]
    assert _names(graph.chains()) == [["write"], ["read"]]
    assert _key_of(dask_graph, "write") != _key_of(dask_graph, "read")
    assert dask_graph.output_keys["count"] == _key_of(dask_graph, "write")
    copy, count = _compute(dask_graph, *dask_graph.output_keys.values())
    pd.testing.assert_frame_equal(copy, RAW)
    assert count == 1


def test_a_fused_chain_runs_its_nodes_in_order_in_one_task(tmp_path, ran):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    context = _context(plugins=(RecordNodes(),))
    dask_graph, token = _to_dask(graph, fuse=True, context=context)
    key = _key_of(dask_graph, "read_report")

    assert _key_of(dask_graph, "write_report") == key
    # One task for the two nodes: no key of write_report's own
    # (``test_graph_holds_node_tasks...`` lists the rest).
    assert set(dask_graph.graph) - set(dask_graph.node_keys.values()) == {
        (f"kedro-input-{token}", "extra"),
        *((f"kedro-output-{token}", n) for n in ("even", "odd", "n_even", "n_odd")),
    }
    assert len(set(dask_graph.node_keys.values())) == 4
    # The chain takes what write_report takes, prepare's result, and what
    # read_report takes from outside the chain, ``extra``.
    assert _depends_on(dask_graph, key) == {
        _key_of(dask_graph, "prepare"),
        (f"kedro-input-{token}", "extra"),
    }
    # write_report writes ``report``, then read_report reads it, in one task.
    assert _compute(dask_graph, key) == 20 + EXTRA
    assert _node_names(ran) == ["prepare", "write_report", "read_report"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "report.csv"), PREPARED)


@pytest.mark.parametrize("fuse", [False, True])
def test_node_options_annotate_the_task_of_the_node(tmp_path, fuse):
    """Options are Dask annotations of the node's task: for a chain, those of
    its first node, on the chain's one key."""
    pipeline = Pipeline(
        [
            node(add_one, "raw", "a_out", name="gpu_a", tags=["gpu"]),
            node(add_one, "a_out", "b_out", name="gpu_b", tags=["gpu"]),
            node(identity, "b_out", "c_out", name="cpu_c"),
        ]
    )
    gpu = {"resources": {"GPU": 1}}

    def options(task_node) -> dict:
        return dict(gpu) if "gpu" in task_node.tags else {}

    graph = PipelineGraph(pipeline, _catalog(tmp_path))
    dask_graph, token = _to_dask(graph, fuse=fuse, node_options=options)
    gpu_a, gpu_b = _key_of(dask_graph, "gpu_a"), _key_of(dask_graph, "gpu_b")

    if fuse:
        assert _names(graph.chains(options)) == [["gpu_a", "gpu_b"], ["cpu_c"]]
        assert gpu_a == gpu_b == (f"add_one-{token}", "gpu_b")
        assert dask_graph.annotations == {gpu_a: gpu}
    else:
        assert dask_graph.annotations == {gpu_a: gpu, gpu_b: gpu}
    # What is submitted carries the annotations on those keys, on no other.
    submitted = dask_graph.submittable()
    assert isinstance(submitted, HighLevelGraph)
    annotated = {
        key: layer.annotations
        for layer in submitted.layers.values()
        if layer.annotations
        for key in layer
    }
    assert annotated == dask_graph.annotations
    assert submitted.to_dict().keys() == dask_graph.graph.keys()
    [c_out] = dask.get(submitted, [dask_graph.output_keys["c_out"]])
    pd.testing.assert_frame_equal(c_out, add_one(PREPARED))
    # Without options the graph is submitted as it is.
    plain, _ = _to_dask(graph, fuse=fuse)
    assert plain.annotations == {}
    assert plain.submittable() is plain.graph


# --------------------------------------------------------------------------- #
# Pickling
# --------------------------------------------------------------------------- #
def test_unpicklable_dataset_is_named_with_its_node(tmp_path):
    catalog = _catalog(tmp_path)
    catalog["locked"] = LockedDataset()
    pipeline = Pipeline(
        [
            node(add_one, "raw", "prepared", name="prepare"),
            node(identity, "locked", "unlocked", name="use_lock"),
        ]
    )

    with pytest.raises(UnpicklableError) as excinfo:
        PipelineGraph(pipeline, catalog)

    message = str(excinfo.value)
    assert "'locked'" in message
    assert "'use_lock'" in message
    assert "lock" in message.lower()


def test_unpicklable_dataset_the_pipeline_does_not_use_is_not_shipped(tmp_path):
    catalog = _catalog(tmp_path)
    catalog["locked"] = LockedDataset()

    graph = PipelineGraph(_pipeline(), catalog)
    dask_graph, _ = _to_dask(graph)

    assert _compute(dask_graph, dask_graph.output_keys["report_total"]) == 120


def test_unpicklable_node_function_is_named(tmp_path):
    lock = threading.Lock()

    def uses_lock(data):
        with lock:
            return data

    catalog = DataCatalog(datasets={"a": MemoryDataset(1)})
    pipeline = Pipeline([node(uses_lock, "a", "b", name="locking_node")])

    with pytest.raises(UnpicklableError, match="'locking_node'"):
        PipelineGraph(pipeline, catalog)


def _run_isolated(
    code: str,
    *args: str,
    cwd: Path,
    flags: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``code`` in a fresh interpreter in ``cwd``: the last line it prints
    (Kedro logs to stdout before it)."""
    result = subprocess.run(
        [sys.executable, *flags, "-c", code, *args],
        cwd=cwd,
        env={**os.environ, **env} if env else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_lambdas_and_closures_are_shipped_by_value(tmp_path):
    """The graph runs in a process that cannot import this test module: the
    lambda and the closure travel inside it."""
    offset = 10
    catalog = DataCatalog(datasets={"a": MemoryDataset()})
    pipeline = Pipeline(
        [
            node(lambda x: x + 1, "a", "b", name="lambda_node"),
            node(lambda x: x + offset, "b", "c", name="closure_node"),
        ]
    )
    graph = PipelineGraph(pipeline, catalog)
    dask_graph, _ = _to_dask(graph, inputs={"a": 1})
    graph_file = tmp_path / "graph.pkl"
    graph_file.write_bytes(pickle.dumps((dask_graph.graph, dask_graph.output_keys)))

    code = textwrap.dedent(
        """
        import pickle, sys
        import dask
        graph, output_keys = pickle.loads(open(sys.argv[1], "rb").read())
        [c] = dask.get(graph, [output_keys["c"]])
        roots = {m.split(".")[0] for m in sys.modules}
        leaked = {"tests", "test_graph", "conftest"} & roots
        assert not leaked, leaked
        print(c)
        """
    )
    # Only the project's package is importable, not the tests next to it.
    package_root = Path({{ cookiecutter.python_package }}.__file__).parent.parent
    output = _run_isolated(
        code, str(graph_file), cwd=tmp_path, env={"PYTHONPATH": str(package_root)}
    )

    assert output == "12"  # 1 + 1, + 10


def test_graph_needs_no_project_code_to_unpickle(tmp_path):
    """A plain ``dask scheduler`` (no project, no Kedro on its path) can read the
    graph: everything project-specific is inside the pickled bytes."""
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, token = _to_dask(graph)
    graph_file = tmp_path / "graph.pkl"
    graph_file.write_bytes(pickle.dumps(dask_graph.graph))

    code = textwrap.dedent(
        """
        import pickle, sys
        graph = pickle.loads(open(sys.argv[1], "rb").read())
        assert len(graph) == int(sys.argv[2]), graph.keys()
        assert all(key[0].endswith(sys.argv[3]) for key in graph), graph.keys()
        roots = sorted({m.split(".")[0] for m in sys.modules})
        forbidden = {"kedro", "kedro_datasets", "pandas", "tests"}
        forbidden.add(sys.argv[4])
        leaked = forbidden.intersection(roots)
        assert not leaked, leaked
        print("ok")
        """
    )
    output = _run_isolated(
        code,
        str(graph_file),
        str(len(dask_graph.graph)),
        token,
        "{{ cookiecutter.python_package }}",
        cwd=tmp_path,
        flags=("-I",),  # isolated: no PYTHONPATH, no cwd, no user site-packages
    )

    assert output == "ok"
