"""``PipelineGraph``: a Kedro pipeline translated into one Dask graph.

No cluster is needed: the graph is inspected, pickled, and executed with Dask's
synchronous in-process scheduler.
"""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys
import textwrap
import threading
import uuid
from operator import getitem
from pathlib import Path
from typing import Any

import dask
import pandas as pd
import pytest
from dask.utils import key_split
from kedro.io import AbstractDataset, DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_datasets.pandas import CSVDataset

from {{ cookiecutter.python_package }}.runner.graph import (
    DaskGraph,
    PipelineGraph,
    UnpicklableError,
    task_prefix,
)
from {{ cookiecutter.python_package }}.runner.worker import (
    NodeChain,
    NodeTask,
    RunContext,
)


# --------------------------------------------------------------------------- #
# Node functions (module level: workers import them by name)
# --------------------------------------------------------------------------- #
def add_one(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(value=df["value"] + 1)


def total(df: pd.DataFrame, extra: int) -> int:
    return int(df["value"].sum()) + extra


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


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
RAW = pd.DataFrame({"value": [1, 2, 3, 4, 5]})


def _catalog(tmp_path: Path) -> DataCatalog:
    raw = CSVDataset(filepath=str(tmp_path / "raw.csv"), save_args={"index": False})
    raw.save(RAW)
    return DataCatalog(
        datasets={
            "raw": raw,
            "prepared": MemoryDataset(),
            "report": CSVDataset(
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


def _context(package_name: str | None = None) -> bytes:
    return pickle.dumps(
        RunContext(
            run_id="run",
            is_async=False,
            package_name=package_name,
            hook_plugins=pickle.dumps([]),
        )
    )


EXTRA = 100  # the value of the in-memory pipeline input ``extra``


def _to_dask(
    graph: PipelineGraph, token: str | None = None, *, fuse: bool = False
) -> tuple[DaskGraph, str]:
    """The graph of one run; one task per node unless ``fuse`` (chains below)."""
    token = token or uuid.uuid4().hex
    dask_graph = graph.to_dask(
        token,
        _context(),
        {name: pickle.dumps(EXTRA) for name in graph.memory_inputs},
        fuse=fuse,
    )
    return dask_graph, token


def _task_args(dask_graph: DaskGraph, node_name: str) -> tuple[list, list]:
    """The (memory input keys, upstream keys) of a node's task."""
    [task_node] = [n for n in dask_graph.node_keys if n.name == node_name]
    task = dask_graph.graph[dask_graph.node_keys[task_node]]
    _context, memory_args, after = task[2]
    return memory_args, after


def _key_of(dask_graph: DaskGraph, node_name: str) -> str:
    return next(k for n, k in dask_graph.node_keys.items() if n.name == node_name)


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

    assert graph.free_outputs == []
    assert _to_dask(graph)[0].output_keys == {}


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


def test_single_memory_output_is_the_node_result(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, _ = _to_dask(graph)
    prepare_key = _key_of(dask_graph, "prepare")

    # ``prepared`` has no key of its own: consumers take the node's result.
    assert _task_args(dask_graph, "split")[0] == [prepare_key]
    assert not any("prepared" in key for key in dask_graph.graph)
    # Same for a free output: the driver gathers the node's own key.
    assert dask_graph.output_keys["report_total"] == _key_of(dask_graph, "read_report")


def test_several_memory_outputs_get_their_own_keys(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, token = _to_dask(graph)
    split_key = _key_of(dask_graph, "split")
    count_key = _key_of(dask_graph, "count")

    even_key, odd_key = _task_args(dask_graph, "count")[0]
    assert len({even_key, odd_key, split_key}) == 3
    assert dask_graph.graph[even_key] == (getitem, split_key, "even")
    assert dask_graph.graph[odd_key] == (getitem, split_key, "odd")
    assert even_key == (f"kedro-output-{token}", "even")
    assert odd_key == (f"kedro-output-{token}", "odd")
    # Free outputs of a node with several memory outputs, likewise.
    for name in ("n_even", "n_odd"):
        output_key = dask_graph.output_keys[name]
        assert output_key != count_key
        assert dask_graph.graph[output_key] == (getitem, count_key, name)


def test_memory_pipeline_inputs_are_recomputable_tasks(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, token = _to_dask(graph)

    memory_args, _ = _task_args(dask_graph, "read_report")
    [input_key] = memory_args
    assert input_key == (f"kedro-input-{token}", "extra")
    assert input_key not in dask_graph.node_keys.values()
    # A task that unpickles the driver's value: any worker can compute it again.
    assert dask.get(dask_graph.graph, input_key) == EXTRA


def test_every_node_task_carries_the_run_context(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, _ = _to_dask(graph)

    context_tasks = [
        dask_graph.graph[key][2][0] for key in dask_graph.node_keys.values()
    ]
    # Inline in each task, not a shared key: no task waits for another worker.
    assert all(task[0] is pickle.loads for task in context_tasks)
    assert len({task[1] for task in context_tasks}) == 1  # the same bytes for all
    context = pickle.loads(context_tasks[0][1])
    assert isinstance(context, RunContext)
    assert context.run_id == "run"


def test_persisted_dataset_orders_consumer_after_producer(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, _ = _to_dask(graph)

    memory_args, after = _task_args(dask_graph, "read_report")
    # ``report`` is read from disk, so its value is not passed, only waited for.
    assert after == [_key_of(dask_graph, "write_report")]
    assert _key_of(dask_graph, "write_report") not in memory_args
    # ``raw`` is not produced in the run: nothing to wait for.
    assert _task_args(dask_graph, "prepare") == ([], [])


def test_persisted_only_consumer_does_not_receive_the_producers_memory_data(
    tmp_path,
):
    """``write`` saves ``report`` (CSV) and hands ``kept`` in memory to
    ``use_kept``; ``read`` needs only ``report``: it waits for a small task that
    follows ``write``, so ``kept`` is never moved to ``read``'s worker."""
    pipeline = Pipeline(
        [
            node(lambda df: (df, 7), "raw", ["report", "kept"], name="write"),
            node(identity, "report", "copy", name="read"),
            node(identity, "kept", "kept_copy", name="use_kept"),
        ]
    )
    graph = PipelineGraph(pipeline, _catalog(tmp_path))
    dask_graph, token = _to_dask(graph)
    write_key = _key_of(dask_graph, "write")

    assert _task_args(dask_graph, "use_kept")[0] == [write_key]
    memory_args, after = _task_args(dask_graph, "read")
    assert memory_args == []
    assert after == [(f"kedro-done-{token}", "write")]
    done_task = dask_graph.graph[after[0]]
    assert done_task[1] == write_key  # ready once write has run...
    assert dask.get(dask_graph.graph, after[0]) is False  # ...holding no data


def test_transcoded_persisted_dataset_orders_consumer_after_producer(tmp_path):
    """``df@write`` and ``df@read`` are one dataset for Kedro (transcoding): the
    reader must wait for the writer, as Kedro's own toposort makes it."""
    path = str(tmp_path / "df.csv")
    catalog = DataCatalog(
        datasets={
            "src": MemoryDataset(RAW),
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

    dask_graph, _ = _to_dask(PipelineGraph(pipeline, catalog))

    assert _task_args(dask_graph, "reader")[1] == [_key_of(dask_graph, "writer")]


@pytest.mark.parametrize("fuse", [False, True])
def test_graph_computes_with_the_synchronous_scheduler(tmp_path, fuse):
    """The graph is valid Dask: its results are those of the pipeline."""
    catalog = _catalog(tmp_path)
    graph = PipelineGraph(_pipeline(), catalog)
    dask_graph, token = _to_dask(graph, fuse=fuse)
    keys = [dask_graph.output_keys[name] for name in graph.free_outputs]
    n_even, n_odd, report_total = dask.get(dask_graph.graph, keys)

    # raw + 1 = 2..6: evens 2, 4, 6; odds 3, 5; sum 20 + extra 100.
    assert (n_even, n_odd, report_total) == (3, 2, 120)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "report.csv"), add_one(RAW))


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


def test_a_linear_chain_is_one_task_that_takes_pipeline_inputs(tmp_path):
    """a -> b -> c handing memory data along, with ``extra`` (a pipeline input)
    joining at b: one task, the input key its only dependency."""
    pipeline = Pipeline(
        [
            node(add_one, "raw", "a_out", name="a"),
            node(total, ["a_out", "extra"], "b_out", name="b"),
            node(lambda x: x * 2, "b_out", "c_out", name="c"),
        ]
    )
    graph = PipelineGraph(pipeline, _catalog(tmp_path))
    dask_graph, token = _to_dask(graph, fuse=True)

    chain_key = dask_graph.node_keys[pipeline.nodes[-1]]
    assert set(dask_graph.node_keys.values()) == {chain_key}
    assert chain_key == (f"lambda-{token}", "c")
    input_key = (f"kedro-input-{token}", "extra")
    assert set(dask_graph.graph) == {chain_key, input_key}
    _context_task, per_step_inputs, after = dask_graph.graph[chain_key][2]
    assert per_step_inputs == [[], [input_key], []]  # a's and b's outputs: inside
    assert after == []
    # raw 1..5 + 1 = 2..6, summed 20, + extra 100, doubled.
    assert dask.get(dask_graph.graph, dask_graph.output_keys["c_out"]) == 240


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
    """``report_total`` goes back to the driver: its node keeps its own key, even
    though its only child follows it through a persisted dataset."""
    pipeline = Pipeline(
        [
            node(lambda df: (df, 1), "raw", ["report", "count"], name="write"),
            node(identity, "report", "copy", name="read"),
        ]
    )
    graph = PipelineGraph(pipeline, _catalog(tmp_path))

    assert graph.free_outputs == ["copy", "count"]
    assert _names(graph.chains()) == [["write"], ["read"]]


def test_fused_graph_holds_the_nodes_own_tasks(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, _ = _to_dask(graph, fuse=True)
    key = _key_of(dask_graph, "read_report")

    assert _key_of(dask_graph, "write_report") == key
    chain = pickle.loads(dask_graph.graph[key][1][1])
    assert isinstance(chain, NodeChain)
    steps = [pickle.loads(step) for step in chain.steps]
    assert [step.node.name for step in steps] == ["write_report", "read_report"]
    # write_report hands nothing in memory: read_report reads ``report`` itself.
    assert chain.links == (None, None)
    # The chain waits for what write_report waits for: prepare's result.
    _context_task, per_step_inputs, after = dask_graph.graph[key][2]
    assert per_step_inputs[0] == [_key_of(dask_graph, "prepare")]
    assert after == []


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


def test_unpicklable_node_function_is_named(tmp_path):
    lock = threading.Lock()

    def uses_lock(data):
        with lock:
            return data

    catalog = DataCatalog(datasets={"a": MemoryDataset(1)})
    pipeline = Pipeline([node(uses_lock, "a", "b", name="locking_node")])

    with pytest.raises(UnpicklableError, match="'locking_node'"):
        PipelineGraph(pipeline, catalog)


def test_lambdas_and_closures_are_shipped_by_value(tmp_path):
    offset = 10
    catalog = DataCatalog(datasets={"a": MemoryDataset(1)})
    pipeline = Pipeline(
        [
            node(lambda x: x + 1, "a", "b", name="lambda_node"),
            node(lambda x: x + offset, "b", "c", name="closure_node"),
        ]
    )

    graph = PipelineGraph(pipeline, catalog)
    dask_graph, _ = _to_dask(graph)

    for key in dask_graph.node_keys.values():
        payload = dask_graph.graph[key][1][1]
        assert isinstance(payload, bytes)
        task = pickle.loads(payload)
        assert isinstance(task, NodeTask)
    loaded = {
        n.name: pickle.loads(dask_graph.graph[k][1][1])
        for n, k in dask_graph.node_keys.items()
    }
    assert loaded["lambda_node"].node.func(1) == 2
    assert loaded["closure_node"].node.func(1) == 11


def test_node_payload_holds_only_what_the_node_needs(tmp_path):
    graph = PipelineGraph(_pipeline(), _catalog(tmp_path))
    dask_graph, _ = _to_dask(graph)
    key = _key_of(dask_graph, "read_report")

    task = pickle.loads(dask_graph.graph[key][1][1])

    assert task.node.name == "read_report"
    assert set(task.datasets) == {"report"}  # persisted: loaded on the worker
    assert isinstance(task.datasets["report"], CSVDataset)
    assert [name for name, _ in task.memory_inputs] == ["extra"]
    assert task.memory_outputs == ("report_total",)


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
    result = subprocess.run(
        [
            sys.executable,
            "-I",  # isolated: no PYTHONPATH, no cwd, no user site-packages
            "-c",
            code,
            str(graph_file),
            str(len(dask_graph.graph)),
            token,
            "{{ cookiecutter.python_package }}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
