"""Translation of a Kedro pipeline into one Dask task graph.

Every node becomes one task, except that a linear chain of nodes (each the only
child of the one before, see ``PipelineGraph.chains``) becomes one task running
them in turn. An in-memory dataset (a ``MemoryDataset`` or a name
the catalog does not declare) is the result of the task that produces it, so Dask
moves it from worker to worker and frees it once its last consumer has run. A
persisted dataset produced in the run is written by its producer on a worker and
read by its consumers on theirs: the graph only orders them.

Each task's callable and arguments are pickled here into bytes that only the
worker unpickles. The scheduler, which deserialises every graph it receives,
therefore never imports the project, Kedro or a dataset library: a plain
``dask scheduler`` runs any project.
"""

from __future__ import annotations

import functools
import operator
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cloudpickle
from dask.utils import apply
from kedro.io import MemoryDataset

from .errors import DaskRunnerError
from .worker import NodeChain, NodeTask

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node


Key = tuple[str, str]
"""A task key: ``(<group>-<run token>, <node or dataset name>)``.

Dask names a task's group and prefix after the first element, as it does for the
chunks of one array (``("add-<token>", 0)``, ...): the nodes running one function
form one group on the dashboard, and the scheduler's per-group bookkeeping stays
small however many nodes share it. The second element says which node or dataset
it is.
"""


class UnpicklableError(DaskRunnerError):
    """A node or dataset cannot be shipped to a Dask worker."""


@dataclass(frozen=True)
class DaskGraph:
    """A Dask graph ready to submit, and the keys the driver follows.

    Attributes:
        graph: The task graph (a dict in Dask's graph format).
        node_keys: The task key of each node; the nodes of a chain share the key
            of its last node.
        output_keys: The key of each free in-memory output of the pipeline.
        annotations: The Dask options of the tasks that have some.
        token: The run's token, unique per run, in every task key.
    """

    graph: dict[Key, Any]
    node_keys: dict[Node, Key]
    output_keys: dict[str, Key]
    annotations: dict[Key, dict[str, Any]] = field(default_factory=dict)
    token: str = ""

    def submittable(self) -> Mapping[str, Any]:
        """The graph in the form ``Client.get`` takes, with per-node Dask options.

        Nodes sharing the same options (``resources``, ``retries``, ...) form one
        layer of a ``HighLevelGraph`` annotated with them; without options the
        plain dict is returned.
        """
        if not self.annotations:
            return self.graph
        from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

        groups: dict[str, tuple[dict[Key, Any], dict[str, Any]]] = {}
        plain = dict(self.graph)
        for key, options in self.annotations.items():
            group = repr(sorted(options.items()))
            groups.setdefault(group, ({}, options))[0][key] = plain.pop(key)
        layers = {"kedro": MaterializedLayer(plain)}
        for index, (tasks, options) in enumerate(groups.values()):
            layers[f"kedro-options-{index}"] = MaterializedLayer(
                tasks, annotations=options
            )
        return HighLevelGraph(layers, dict.fromkeys(layers, set()))


class PipelineGraph:
    """Classifies a pipeline's datasets and pickles each node for the workers.

    Building it needs no cluster and fails early, naming the node or dataset that
    cannot be pickled, before anything is submitted.

    Args:
        pipeline: The pipeline to run.
        catalog: The driver's catalog, already holding every dataset the
            pipeline uses (``AbstractRunner.run`` materialises them).
    """

    def __init__(self, pipeline: Pipeline, catalog: CatalogProtocol):
        self.pipeline = pipeline
        self._memory = {
            name
            for name in pipeline.datasets()
            if isinstance(
                catalog.get(name, fallback_to_runtime_pattern=True), MemoryDataset
            )
        }
        self.memory_inputs = sorted(pipeline.inputs() & self._memory)
        """In-memory pipeline inputs, which the driver loads and ships to workers."""
        self.free_outputs = sorted(pipeline.outputs() & self._memory)
        """In-memory pipeline outputs, which come back into the driver's catalog."""
        self._payloads = {
            node: _pickle_node(self._node_task(node, catalog))
            for node in pipeline.nodes
        }

    def is_memory(self, name: str) -> bool:
        """Whether ``name`` travels between tasks as a Dask result."""
        return name in self._memory

    def _node_task(self, node: Node, catalog: CatalogProtocol) -> NodeTask:
        names = [*node.inputs, *node.outputs]
        persisted = [name for name in names if name not in self._memory]
        specs = getattr(catalog, "validator_specs", {}) or {}
        return NodeTask(
            node=node,
            datasets={name: catalog.get(name) for name in persisted},
            memory_inputs=[
                (name, getattr(catalog.get(name), "_copy_mode", None))
                for name in self._memory_inputs(node)
            ],
            memory_outputs=self._memory_outputs(node),
            validator_specs={n: specs[n] for n in persisted if n in specs},
        )

    def to_dask(
        self,
        token: str,
        context: bytes,
        inputs: Mapping[str, bytes],
        node_options: Callable[[Node], dict[str, Any]] | None = None,
        fuse: bool = True,
    ) -> DaskGraph:
        """Assemble the Dask graph of one run.

        Args:
            token: Unique per run; keeps task keys of concurrent runs apart.
            context: The run's pickled ``RunContext``, unpickled inside every node
                task: a shared key would tie the first tasks to the worker that
                holds it, and its thousands of dependents cost the scheduler.
            inputs: Each in-memory pipeline input, pickled by the driver. Each is a
                task: Dask recomputes it on any worker should the one holding it
                die, which scattered data cannot do.
            node_options: Dask options (``resources``, ``retries``, ...) of a node.
            fuse: Run each of ``chains()`` as one task; else one task per node.
        """
        options_of = node_options or _no_options
        chains = self.chains(options_of) if fuse else [[n] for n in self.pipeline.nodes]
        # Node groups are named after functions, which cannot contain a hyphen:
        # no node key can clash with a "kedro-input/output/done" key.
        graph: dict[Key, Any] = {}
        context_task = (pickle.loads, context)
        node_keys: dict[Node, Key] = {}
        for chain in chains:
            tail = chain[-1]
            node_keys.update(
                dict.fromkeys(chain, (f"{task_prefix(tail)}-{token}", tail.name))
            )
        data_keys: dict[str, Key] = {}
        for name, payload in inputs.items():
            data_keys[name] = (f"kedro-input-{token}", name)
            graph[data_keys[name]] = (pickle.loads, payload)
        producer: dict[str, Node] = {}
        for chain in chains:
            for node in chain:
                producer.update(dict.fromkeys(self._memory_outputs(node), node))
            # Only the last node's outputs leave the chain's task.
            tail = chain[-1]
            memory_outputs = self._memory_outputs(tail)
            if len(memory_outputs) == 1:
                data_keys[memory_outputs[0]] = node_keys[tail]
                continue
            for name in memory_outputs:
                data_keys[name] = (f"kedro-output-{token}", name)
                graph[data_keys[name]] = (operator.getitem, node_keys[tail], name)

        def finished(parent: Node) -> Key:
            """A key ready once ``parent`` (a chain's last node) has run, without
            its in-memory outputs: a consumer of its persisted data only must not
            have its other data moved to it."""
            if not self._memory_outputs(parent):
                return node_keys[parent]  # its task returns None
            done = (f"kedro-done-{token}", parent.name)
            graph[done] = (operator.is_, node_keys[parent], None)  # a bool, not data
            return done

        dependencies = self.pipeline.node_dependencies
        for chain in chains:
            steps: list[list[Key]] = []
            links: list[int | None] = []
            for previous, node in zip([None, *chain], chain, strict=False):
                memory_inputs = self._memory_inputs(node)
                handed = self._memory_outputs(previous) if previous else []
                links.append(memory_inputs.index(handed[0]) if handed else None)
                steps.append([data_keys[n] for n in memory_inputs if n not in handed])
            head = chain[0]
            # Parents that hand over only persisted data: wait for them, take nothing.
            data_parents = {producer.get(name) for name in self._memory_inputs(head)}
            after = sorted(
                finished(parent)
                for parent in dependencies[head]
                if parent not in data_parents
            )
            if len(chain) == 1:
                payload, arguments = self._payloads[head], steps[0]
            else:
                payload = cloudpickle.dumps(
                    NodeChain([self._payloads[node] for node in chain], links)
                )
                arguments = steps
            graph[node_keys[head]] = (
                apply,
                (pickle.loads, payload),
                [context_task, arguments, after],
            )
        annotations = {}
        for chain in chains:
            if options := options_of(chain[0]):
                annotations[node_keys[chain[0]]] = options
        return DaskGraph(
            graph=graph,
            node_keys=node_keys,
            output_keys={name: data_keys[name] for name in self.free_outputs},
            annotations=annotations,
            token=token,
        )

    def chains(
        self, node_options: Callable[[Node], dict[str, Any]] | None = None
    ) -> list[list[Node]]:
        """The pipeline's nodes cut into linear chains, each run as one Dask task.

        A node joins the chain of its parent when it is that parent's only child,
        the parent is its only parent, both have the same Dask options, and the
        parent hands it at most one in-memory dataset. On the cluster such a pair
        would run one after the other anyway, on the worker holding the data;
        as one task they skip a scheduler round trip (a few ms) per node. A node
        fed by several parents, or feeding several children, ends a chain, so
        fusing never takes away parallelism.

        Returns:
            Chains in topological order, each in running order.
        """
        options_of = node_options or _no_options
        nodes = self.pipeline.nodes
        parents = self.pipeline.node_dependencies
        children: dict[Node, list[Node]] = {node: [] for node in nodes}
        for child, node_parents in parents.items():
            for parent in node_parents:
                children[parent].append(child)

        def successor(parent: Node) -> Node | None:
            if len(children[parent]) != 1:
                return None
            [child] = children[parent]
            handed = self._memory_outputs(parent)
            if (
                len(parents[child]) != 1
                or len(handed) > 1
                or (handed and handed[0] not in child.inputs)  # a free output
                or options_of(parent) != options_of(child)
            ):
                return None
            return child

        following = {node: child for node in nodes if (child := successor(node))}
        joined = set(following.values())
        chains = []
        for node in nodes:
            if node in joined:
                continue
            chain = [node]
            while chain[-1] in following:
                chain.append(following[chain[-1]])
            chains.append(chain)
        return chains

    def _memory_inputs(self, node: Node) -> list[str]:
        return [name for name in _unique(node.inputs) if name in self._memory]

    def _memory_outputs(self, node: Node) -> list[str]:
        return [name for name in node.outputs if name in self._memory]


def _no_options(_node: Node) -> dict[str, Any]:
    return {}


def task_prefix(node: Node) -> str:
    """The name Dask shows for a node's task: its function's name."""
    func = node.func
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__name__", type(func).__name__)
    return re.sub(r"\W+", "_", name).strip("_") or "node"


def _unique(names: list[str]) -> list[str]:
    """Names in order, each once (a node may take one dataset twice)."""
    return list(dict.fromkeys(names))


def _pickle_node(task: NodeTask) -> bytes:
    try:
        return cloudpickle.dumps(task)
    except Exception as exc:
        raise UnpicklableError(_explain_unpicklable(task, exc)) from exc


def _explain_unpicklable(task: NodeTask, exc: Exception) -> str:
    """Name the part of a node that cannot be pickled, and why."""
    for name, dataset in task.datasets.items():
        try:
            cloudpickle.dumps(dataset)
        except Exception as dataset_exc:  # noqa: BLE001
            return (
                f"Dataset '{name}' of node '{task.node.name}' cannot be pickled for "
                f"a Dask worker: {dataset_exc}"
            )
    return f"Node '{task.node.name}' cannot be pickled for a Dask worker: {exc}"
