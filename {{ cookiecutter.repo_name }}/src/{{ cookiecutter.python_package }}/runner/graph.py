"""Translation of a Kedro pipeline into one Dask task graph.

Every node becomes one task, except that a linear chain of nodes (each the only
child of the one before, see ``PipelineGraph.chains``) becomes one task running
them in turn. An in-memory dataset (a ``MemoryDataset`` or a name
the catalog does not declare) is the result of the task that produces it, so Dask
moves it from worker to worker and frees it once its last consumer has run. A
persisted dataset produced in the run is written by its producer on a worker and
read by its consumers on theirs. That order is not a Dask dependency
(``DaskGraph.after``): the driver submits a consumer once its producer has
finished (``submit.TaskFeeder``), so no finished node's result is ever needed
again, and Dask never runs a node whose outputs are all persisted a second time
because the worker holding its (empty) result died.

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
from kedro.io import MemoryDataset

from .compat import memory_copy_mode
from .errors import DaskRunnerError
from .worker import NodeChain, NodeTask, TaskResult

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
        after: For each node task, the node tasks that save persisted data it
            loads, which must have finished before it is submitted.
    """

    graph: dict[Key, Any]
    node_keys: dict[Node, Key]
    output_keys: dict[str, Key]
    annotations: dict[Key, dict[str, Any]] = field(default_factory=dict)
    token: str = ""
    after: dict[Key, tuple[Key, ...]] = field(default_factory=dict)

    @functools.cached_property
    def nodes_by_key(self) -> dict[Key, list[Node]]:
        """The nodes each node task runs, in running order (a chain's nodes
        share its task)."""
        nodes: dict[Key, list[Node]] = {}
        for node, key in self.node_keys.items():
            nodes.setdefault(key, []).append(node)
        return nodes

    def submittable(self, tasks: Mapping[Key, Any] | None = None) -> Mapping[str, Any]:
        """``tasks`` (default: the whole graph) in the form ``Client.get`` takes,
        with per-node Dask options.

        Nodes sharing the same options (``resources``, ``retries``, ...) form one
        layer of a ``HighLevelGraph`` annotated with them; without options the
        plain dict is returned.
        """
        tasks = self.graph if tasks is None else tasks
        annotated = [key for key in tasks if key in self.annotations]
        if not annotated:
            return tasks
        from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

        groups: dict[str, tuple[dict[Key, Any], dict[str, Any]]] = {}
        plain = dict(tasks)
        for key in annotated:
            options = self.annotations[key]
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
                (name, memory_copy_mode(catalog.get(name)))
                for name in self.memory_inputs_of(node)
            ],
            memory_outputs=self.memory_outputs_of(node),
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
        builder = _GraphBuilder(self, token, chains)
        builder.add_inputs(inputs)
        builder.add_outputs()
        for chain in chains:
            builder.add_chain(chain, context)
        return DaskGraph(
            graph=builder.graph,
            node_keys=builder.node_keys,
            output_keys={name: builder.data_keys[name] for name in self.free_outputs},
            annotations={
                builder.node_keys[chain[0]]: options
                for chain in chains
                if (options := options_of(chain[0]))
            },
            token=token,
            after=builder.after,
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
            handed = self.memory_outputs_of(parent)
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

    def memory_inputs_of(self, node: Node) -> list[str]:
        """The in-memory datasets ``node`` takes, in order, each once."""
        return [name for name in _unique(node.inputs) if name in self._memory]

    def memory_outputs_of(self, node: Node) -> list[str]:
        """The in-memory datasets ``node`` returns, in order."""
        return [name for name in node.outputs if name in self._memory]

    def payload(self, node: Node) -> bytes:
        """``node``'s pickled ``NodeTask``."""
        return self._payloads[node]


class _GraphBuilder:
    """Writes the tasks of one run's graph, chain by chain.

    Keys come first: every node's task key (a chain's nodes share the key of its
    last node) and every in-memory dataset's data key. In-memory data is read
    from its producer's result as ``TaskResult`` lays it out. That a consumer of
    a producer's persisted data comes after it is kept in ``after``, out of the
    graph. Groups of node tasks are named after functions, which cannot contain
    a hyphen: no node key clashes with a ``kedro-input/output`` key.
    """

    def __init__(self, plan: PipelineGraph, token: str, chains: list[list[Node]]):
        self._plan = plan
        self._token = token
        self.graph: dict[Key, Any] = {}
        self.node_keys: dict[Node, Key] = {}
        self.data_keys: dict[str, Key] = {}
        self.after: dict[Key, tuple[Key, ...]] = {}
        self._producer: dict[str, Node] = {}  # in-memory dataset -> its chain's tail
        self._tails: list[Node] = []
        for chain in chains:
            tail = chain[-1]
            self._tails.append(tail)
            key = (f"{task_prefix(tail)}-{token}", tail.name)
            self.node_keys.update(dict.fromkeys(chain, key))

    def add_inputs(self, inputs: Mapping[str, bytes]) -> None:
        """One task per in-memory pipeline input, unpickling what the driver loaded."""
        for name, payload in inputs.items():
            self.data_keys[name] = (f"kedro-input-{self._token}", name)
            self.graph[self.data_keys[name]] = (pickle.loads, payload)

    def add_outputs(self) -> None:
        """The data key of every in-memory output that leaves a task: only the
        last node's outputs leave a chain."""
        for tail in self._tails:
            result = TaskResult(self._plan.memory_outputs_of(tail))
            for name in result.names:
                self._producer[name] = tail
                if result.is_whole:
                    self.data_keys[name] = self.node_keys[tail]
                else:
                    self.data_keys[name] = (f"kedro-output-{self._token}", name)
                    self.graph[self.data_keys[name]] = (
                        operator.getitem,
                        self.node_keys[tail],
                        name,
                    )

    def add_chain(self, chain: list[Node], context: bytes) -> None:
        """The task running ``chain`` (one node, or several handing on data)."""
        steps: list[list[Key]] = []
        links: list[int | None] = []
        for previous, node in zip([None, *chain], chain, strict=False):
            memory_inputs = self._plan.memory_inputs_of(node)
            handed = self._plan.memory_outputs_of(previous) if previous else []
            links.append(memory_inputs.index(handed[0]) if handed else None)
            steps.append([self.data_keys[n] for n in memory_inputs if n not in handed])
        if len(chain) == 1:
            payload, arguments = self._plan.payload(chain[0]), steps[0]
        else:
            payload = cloudpickle.dumps(
                NodeChain(
                    [self._plan.payload(node) for node in chain],
                    links,
                    name=chain[-1].name,
                    checks_reruns=self._checks_reruns(chain),
                )
            )
            arguments = steps
        key = self.node_keys[chain[0]]
        # As flat as a task can be that a scheduler without the project reads:
        # the node task unpickled, called with the run's context and the data.
        # Dask pickles each task again to send it to a worker: nested tasks cost
        # the scheduler and the worker ~40 microseconds a node more.
        self.graph[key] = (operator.call, (pickle.loads, payload), context, *arguments)
        if after := self._after(chain[0]):
            self.after[key] = after

    def _checks_reruns(self, chain: list[Node]) -> bool:
        """Whether the chain's task saves persisted data and returns in-memory
        data, which Dask may compute again (``worker.Reruns``)."""
        memory_outputs = self._plan.memory_outputs_of
        return bool(memory_outputs(chain[-1])) and any(
            set(node.outputs) - set(memory_outputs(node)) for node in chain
        )

    def _after(self, head: Node) -> tuple[Key, ...]:
        """Task keys of the parents that hand ``head`` only persisted data."""
        producers = {self._producer.get(n) for n in self._plan.memory_inputs_of(head)}
        parents = self._plan.pipeline.node_dependencies[head]
        return tuple(
            sorted(
                {self.node_keys[p] for p in parents if p not in producers}
                - {self.node_keys[head]}
            )
        )


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
