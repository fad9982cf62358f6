"""``NodeTask``, ``NodeChain`` and ``RunContext``: what runs on a worker, called
directly here."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd
import pytest
from kedro.framework.hooks import hook_impl
from kedro.framework.hooks.manager import _NullPluginManager
from kedro.io import AbstractDataset, MemoryDataset
from kedro.pipeline import node
from kedro_datasets.pandas import CSVDataset

from {{ cookiecutter.python_package }}.runner.compat import create_hook_manager
from {{ cookiecutter.python_package }}.runner.worker import (
    NodeChain,
    NodeFailure,
    NodeTask,
    RunContext,
    picklable_node_hooks,
    received_dataset,
)


# --------------------------------------------------------------------------- #
# Node functions, datasets and hooks (module level: importable by name)
# --------------------------------------------------------------------------- #
def double_values(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(value=df["value"] * 2)


def add(a: int, b: int) -> int:
    return a + b


def divmod_dict(a: int, b: int) -> dict[str, int]:
    return {"quotient": a // b, "remainder": a % b}


def consume(_data: Any) -> None:
    return None


def append_marker(items: list) -> list:
    items.append("marker")
    return items


def fail_with_boom(_data: Any) -> int:
    raise ValueError("boom")


class ConfirmableDataset(AbstractDataset):
    """A dataset counting ``confirm`` calls."""

    def __init__(self) -> None:
        self.confirmed = 0
        self._data: Any = None

    def _load(self) -> Any:
        return self._data

    def _save(self, data: Any) -> None:
        self._data = data

    def _describe(self) -> dict[str, Any]:
        return {}

    def confirm(self) -> None:
        self.confirmed += 1


class RecordingHooks:
    """Node and dataset hooks recording what they saw."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @hook_impl
    def before_node_run(self, node, inputs, run_id):
        self.calls.append(("before_node_run", node.name, sorted(inputs), run_id))

    @hook_impl
    def after_node_run(self, node, outputs, run_id):
        self.calls.append(("after_node_run", node.name, sorted(outputs), run_id))

    @hook_impl
    def on_node_error(self, error, node):
        self.calls.append(("on_node_error", node.name, str(error)))

    @hook_impl
    def before_dataset_loaded(self, dataset_name, node):
        self.calls.append(("before_dataset_loaded", dataset_name, node.name))

    @hook_impl
    def after_dataset_saved(self, dataset_name, node):
        self.calls.append(("after_dataset_saved", dataset_name, node.name))


class ContextOnlyHooks:
    """A plugin with no node or dataset hook: never shipped to workers."""

    @hook_impl
    def after_context_created(self, context):
        pass


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def _context(*hooks: Any, run_id: str = "run-1", is_async: bool = False) -> RunContext:
    return RunContext(
        run_id=run_id,
        is_async=is_async,
        package_name=None,
        hook_plugins=cloudpickle.dumps(list(hooks)),
    )


def _csv(path: Path) -> CSVDataset:
    return CSVDataset(filepath=str(path), save_args={"index": False})


# --------------------------------------------------------------------------- #
# Datasets and outputs
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("is_async", [False, True])
def test_persisted_input_is_loaded_and_output_saved_on_the_worker(tmp_path, is_async):
    raw = pd.DataFrame({"value": [1, 2, 3]})
    _csv(tmp_path / "in.csv").save(raw)
    task = NodeTask(
        node=node(double_values, "in_csv", "out_csv", name="double"),
        datasets={
            "in_csv": _csv(tmp_path / "in.csv"),
            "out_csv": _csv(tmp_path / "out.csv"),
        },
        memory_inputs=[],
        memory_outputs=[],
    )

    result = task.run(_context(is_async=is_async), [])

    assert result is None  # nothing in memory to hand back
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "out.csv"), pd.DataFrame({"value": [2, 4, 6]})
    )


def test_one_memory_output_is_returned_as_is():
    task = NodeTask(
        node=node(add, ["a", "b"], "total", name="add"),
        datasets={},
        memory_inputs=[("a", None), ("b", None)],
        memory_outputs=["total"],
    )

    assert task.run(_context(), [2, 3]) == 5


def test_several_memory_outputs_are_returned_as_a_dict(tmp_path):
    task = NodeTask(
        node=node(
            divmod_dict,
            ["a", "b"],
            {"quotient": "q", "remainder": "r"},
            name="divmod",
        ),
        datasets={},
        memory_inputs=[("a", None), ("b", None)],
        memory_outputs=["q", "r"],
    )

    assert task.run(_context(), [7, 3]) == {"q": 2, "r": 1}


def test_memory_and_persisted_outputs_mixed(tmp_path):
    task = NodeTask(
        node=node(
            divmod_dict,
            ["a", "b"],
            {"quotient": "q_csv", "remainder": "r"},
            name="divmod",
        ),
        datasets={"q_csv": _csv(tmp_path / "q.csv")},
        memory_inputs=[("a", None), ("b", None)],
        memory_outputs=["r"],
    )

    assert task.run(_context(), [pd.DataFrame({"v": [7]}), 3]).equals(
        pd.DataFrame({"v": [1]})
    )
    assert pd.read_csv(tmp_path / "q.csv")["v"].tolist() == [2]


def test_no_memory_output_returns_none():
    task = NodeTask(
        node=node(consume, "a", None, name="consume"),
        datasets={},
        memory_inputs=[("a", None)],
        memory_outputs=[],
    )

    assert task.run(_context(), [1]) is None


def test_upstream_results_are_ignored():
    task = NodeTask(
        node=node(add, ["a", "b"], "total", name="add"),
        datasets={},
        memory_inputs=[("a", None), ("b", None)],
        memory_outputs=["total"],
    )

    assert task.run(_context(), [1, 2], [{"unrelated": 1}, None]) == 3


def test_memory_input_is_copied_so_a_mutating_node_leaves_it_alone():
    original = ["a", "b"]
    task = NodeTask(
        node=node(append_marker, "items", "marked", name="mutate"),
        datasets={},
        memory_inputs=[("items", None)],  # default: deep copy for a list
        memory_outputs=["marked"],
    )

    result = task.run(_context(), [original])

    assert result == ["a", "b", "marker"]
    assert original == ["a", "b"]  # what other consumers on this worker see


def test_memory_input_copy_mode_of_the_catalog_is_honoured():
    original = ["a", "b"]
    task = NodeTask(
        node=node(append_marker, "items", "marked", name="mutate"),
        datasets={},
        memory_inputs=[("items", "assign")],  # MemoryDataset(copy_mode="assign")
        memory_outputs=["marked"],
    )

    result = task.run(_context(), [original])

    assert result is original
    assert original == ["a", "b", "marker"]


@pytest.mark.parametrize("copy_mode", ["assign", "copy", "deepcopy", None])
def test_received_datasets_are_memory_datasets_of_their_own(copy_mode):
    """Built from a prototype (Kedro's per-instance argument capture skipped),
    each is a separate ``MemoryDataset`` that behaves as a new one would."""
    first, second = received_dataset([1], copy_mode), received_dataset([2], copy_mode)
    expected = MemoryDataset(copy_mode=copy_mode or "deepcopy")

    assert type(first) is MemoryDataset
    assert first is not second
    assert (first.load(), second.load()) == ([1], [2])
    assert first._copy_mode == expected._copy_mode
    assert first._init_args == expected._init_args
    assert first.metadata is None
    first.save([3])
    assert (first.load(), second.load()) == ([3], [2])
    first.release()
    assert not first.exists()
    assert second.exists()


def test_memory_inputs_must_match_the_declared_names():
    task = NodeTask(
        node=node(add, ["a", "b"], "total", name="add"),
        datasets={},
        memory_inputs=[("a", None), ("b", None)],
        memory_outputs=["total"],
    )

    with pytest.raises(ValueError):
        task.run(_context(), [1])


def test_confirm_is_deferred_to_the_driver():
    confirmable = ConfirmableDataset()
    task = NodeTask(
        node=node(add, ["a", "b"], "total", name="add", confirms="checkpoint"),
        datasets={"checkpoint": confirmable},
        memory_inputs=[("a", None), ("b", None)],
        memory_outputs=["total"],
    )

    assert task.run(_context(), [1, 2]) == 3
    assert confirmable.confirmed == 0


# --------------------------------------------------------------------------- #
# Chains
# --------------------------------------------------------------------------- #
def test_a_chain_hands_each_output_to_the_next_step():
    first = NodeTask(
        node=node(add, ["a", "b"], "s", name="first"),
        datasets={},
        memory_inputs=[("a", None), ("b", None)],
        memory_outputs=["s"],
    )
    second = NodeTask(
        node=node(add, ["c", "s"], "t", name="second"),
        datasets={},
        memory_inputs=[("c", None), ("s", None)],
        memory_outputs=["t"],
    )
    # ``s`` is second's memory input number 1; ``c`` comes from outside.
    chain = NodeChain([cloudpickle.dumps(first), cloudpickle.dumps(second)], [None, 1])

    assert chain.run(_context(), [[2, 3], [10]]) == 15


def test_a_failing_step_names_its_node(tmp_path):
    write = NodeTask(
        node=node(double_values, "in_csv", "out_csv", name="write"),
        datasets={
            "in_csv": _csv(tmp_path / "in.csv"),
            "out_csv": _csv(tmp_path / "out.csv"),
        },
        memory_inputs=[],
        memory_outputs=[],
    )
    explode = NodeTask(
        node=node(fail_with_boom, "out_csv", "never", name="explode"),
        datasets={"out_csv": _csv(tmp_path / "out.csv")},
        memory_inputs=[],
        memory_outputs=["never"],
    )
    _csv(tmp_path / "in.csv").save(pd.DataFrame({"value": [1]}))
    chain = NodeChain(
        [cloudpickle.dumps(write), cloudpickle.dumps(explode)], [None, None]
    )

    with pytest.raises(ValueError, match="boom") as excinfo:
        chain.run(_context(), [[], []])

    assert NodeFailure.node_of(excinfo.value) == "explode"  # "write" finished
    # What the first step saved is there; the name survives pickling to the driver.
    assert pd.read_csv(tmp_path / "out.csv")["value"].tolist() == [2]
    assert NodeFailure.node_of(pickle.loads(pickle.dumps(excinfo.value))) == "explode"
    assert NodeFailure.node_of(ValueError("not raised by a node")) is None


# --------------------------------------------------------------------------- #
# As Dask calls them: the run's context pickled, then the data
# --------------------------------------------------------------------------- #
def test_a_task_takes_the_pickled_context_and_its_inputs_as_dask_passes_them():
    task = NodeTask(
        node=node(add, ["a", "b"], "total", name="add"),
        datasets={},
        memory_inputs=[("a", None), ("b", None)],
        memory_outputs=["total"],
    )
    first = NodeTask(
        node=node(add, ["a", "b"], "s", name="first"),
        datasets={},
        memory_inputs=[("a", None), ("b", None)],
        memory_outputs=["s"],
    )
    chain = NodeChain([cloudpickle.dumps(first), cloudpickle.dumps(task)], [None, 0])
    context = pickle.dumps(_context(RecordingHooks(), run_id="run-bytes"))

    assert task(context, 2, 3) == 5
    assert chain(context, [2, 3], [10]) == 15  # (2 + 3) + 10
    # Every task of a run carries the same bytes: one context, one set of hooks.
    assert RunContext.of(bytes(context)) is RunContext.of(context)
    calls = _hooks_of(RunContext.of(context)).calls
    assert [c[1] for c in calls if c[0] == "before_node_run"] == [
        "add",
        "first",
        "add",
    ]


# --------------------------------------------------------------------------- #
# Hooks
# --------------------------------------------------------------------------- #
def _hooks_of(context: RunContext) -> RecordingHooks:
    [hooks] = [
        p for p in context.hook_manager.get_plugins() if isinstance(p, RecordingHooks)
    ]
    return hooks


def test_node_and_dataset_hooks_of_the_run_context_fire(tmp_path):
    _csv(tmp_path / "in.csv").save(pd.DataFrame({"value": [1]}))
    context = _context(RecordingHooks(), run_id="run-42")
    task = NodeTask(
        node=node(add, ["in_csv", "b"], "out", name="add"),
        datasets={"in_csv": _csv(tmp_path / "in.csv")},
        memory_inputs=[("b", None)],
        memory_outputs=["out"],
    )

    result = task.run(context, [10])

    pd.testing.assert_frame_equal(result, pd.DataFrame({"value": [11]}))
    assert _hooks_of(context).calls == [
        ("before_dataset_loaded", "in_csv", "add"),
        ("before_dataset_loaded", "b", "add"),
        ("before_node_run", "add", ["b", "in_csv"], "run-42"),
        ("after_node_run", "add", ["out"], "run-42"),
        ("after_dataset_saved", "out", "add"),
    ]


def test_hooks_are_registered_once_per_context():
    context = _context(RecordingHooks())
    task = NodeTask(
        node=node(add, ["a", "b"], "total", name="add"),
        datasets={},
        memory_inputs=[("a", None), ("b", None)],
        memory_outputs=["total"],
    )

    task.run(context, [1, 2])
    task.run(context, [3, 4])

    assert context.hook_manager is context.hook_manager
    calls = _hooks_of(context).calls
    assert [c[0] for c in calls].count("before_node_run") == 2


def test_run_context_pickles_without_its_hook_manager():
    context = _context(RecordingHooks(), run_id="run-pickled")
    _hooks_of(context).calls.append(("driver-side",))

    copy = pickle.loads(pickle.dumps(context))

    assert copy._hook_manager is None
    assert copy.run_id == context.run_id


def test_hooks_are_loaded_once_per_process_and_run():
    """Every task carries the run's context; its hooks must not be rebuilt per task."""
    first = _context(RecordingHooks(), run_id="run-shared")
    same_run = pickle.loads(pickle.dumps(first))
    other_run = _context(RecordingHooks(), run_id="run-other")

    assert same_run.hook_manager is first.hook_manager
    assert other_run.hook_manager is not first.hook_manager
    _hooks_of(first).calls.append(("seen",))
    assert _hooks_of(same_run).calls == [("seen",)]
    assert _hooks_of(other_run).calls == []


def test_picklable_node_hooks_keeps_only_node_and_dataset_hooks():
    manager = create_hook_manager()
    node_hooks, context_hooks = RecordingHooks(), ContextOnlyHooks()
    manager.register(node_hooks)
    manager.register(context_hooks)

    assert picklable_node_hooks(manager) == [node_hooks]
    assert picklable_node_hooks(_NullPluginManager()) == []
    assert picklable_node_hooks(None) == []


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
def test_exception_keeps_its_type_and_message_and_names_the_node():
    context = _context(RecordingHooks())
    task = NodeTask(
        node=node(fail_with_boom, "a", "b", name="exploding_node"),
        datasets={},
        memory_inputs=[("a", None)],
        memory_outputs=["b"],
    )

    with pytest.raises(ValueError) as excinfo:
        task.run(context, [1])

    assert type(excinfo.value) is ValueError
    assert str(excinfo.value) == "boom"

    notes = getattr(excinfo.value, "__notes__", [])
    assert any("exploding_node" in note for note in notes), notes
    assert ("on_node_error", "exploding_node", "boom") in _hooks_of(context).calls


def test_exception_note_survives_pickling():
    """Dask pickles a task's exception back to the driver."""
    task = NodeTask(
        node=node(fail_with_boom, "a", "b", name="exploding_node"),
        datasets={},
        memory_inputs=[("a", None)],
        memory_outputs=["b"],
    )
    with pytest.raises(ValueError) as excinfo:
        task.run(_context(), [1])

    copy = pickle.loads(pickle.dumps(excinfo.value))

    assert type(copy) is ValueError
    assert str(copy) == "boom"
    assert copy.__notes__ == excinfo.value.__notes__


def _prepared_for_nodes() -> bool:
    """On a worker: whether node tasks will find the runner imported and the
    project configured."""
    import sys

    project = sys.modules.get("kedro.framework.project")
    return (
        "{{ cookiecutter.python_package }}.runner.worker" in sys.modules
        and getattr(project, "PACKAGE_NAME", None) == "{{ cookiecutter.python_package }}"
    )


def test_warm_up_prepares_every_worker_of_a_local_cluster():
    """``services._warm_up``: each worker of a LocalCluster the runner starts
    imports the runner and configures the project as the run starts, not when
    its first node arrives."""
    import time

    from distributed import Client, LocalCluster

    from {{ cookiecutter.python_package }}.runner.services import _warm_up

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        assert not any(client.run(_prepared_for_nodes).values())  # fresh workers
        with _warm_up(client, "{{ cookiecutter.python_package }}", "t0k3n"):
            deadline = time.monotonic() + 60
            while not all(client.run(_prepared_for_nodes).values()):
                assert time.monotonic() < deadline, client.run(_prepared_for_nodes)
                time.sleep(0.1)
        assert len(client.run(_prepared_for_nodes)) == 2
