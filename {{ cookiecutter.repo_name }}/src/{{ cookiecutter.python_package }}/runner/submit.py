"""Submitting a run's Dask graph as its tasks become ready.

Kedro's runners run a node once the nodes it depends on have finished. Dask runs
a task once its dependencies' results exist, and keeps a result for as long as a
task that depends on it might still need it: should the worker holding it die,
Dask runs the task that produced it again. For in-memory data that is the point
(the data lived only there). For a node whose outputs are all persisted it is not:
its consumers load from the catalog, and running it again repeats expensive work
and may write a second version of a versioned dataset.

So ``TaskFeeder`` submits a consumer of persisted data only once its producer has
finished (``DaskGraph.after``), and the producer's empty result is released as
soon as the driver has seen it. In-memory data stays a Dask dependency, moved
worker to worker by Dask: the tasks it links are submitted together.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from dask.core import get_dependencies

from .compat import named_graph

if TYPE_CHECKING:
    from collections.abc import Iterable

    from distributed import Client, Future

    from .graph import DaskGraph, Key


class TaskFeeder:
    """Submits each task of ``dask_graph`` once what it waits for has finished.

    A task is ready when the node tasks in its ``after`` have finished and the
    tasks whose results it takes have been submitted; ready tasks go to the
    scheduler together, one ``Client.get`` per call. The feeder holds a task's
    future while a task taking its result has not finished, as the scheduler
    keeps the result itself, or while it is a free output of the pipeline
    (``kept``): every task of the run that a cancel may reach is wanted by this
    client (the scheduler's cancel fails on a dependent nobody wants).

    Args:
        client: The client to submit through.
        dask_graph: The run's graph.
    """

    def __init__(self, client: Client, dask_graph: DaskGraph):
        self._client = client
        self._dask_graph = dask_graph
        graph = dask_graph.graph
        self._takes = {key: get_dependencies(graph, key) for key in graph}
        self._blockers = {
            key: len(takes) + len(dask_graph.after.get(key, ()))
            for key, takes in self._takes.items()
        }
        self._takers: dict[Key, list[Key]] = defaultdict(list)
        for key, takes in self._takes.items():
            for taken in takes:
                self._takers[taken].append(key)
        self._waiters: dict[Key, list[Key]] = defaultdict(list)
        for key, after in dask_graph.after.items():
            for parent in after:
                self._waiters[parent].append(key)
        self._unfinished_takers = {
            key: len(takers) for key, takers in self._takers.items()
        }
        self._node_keys = set(dask_graph.node_keys.values())
        self._outputs = set(dask_graph.output_keys.values())
        self._held: dict[Key, Future] = {}
        self.kept: dict[Key, Future] = {}
        """The futures of the pipeline's free in-memory outputs."""
        self._batches = 0

    def start(self) -> list[Future]:
        """Submit the tasks that wait for nothing.

        Returns:
            The futures of the node tasks submitted.
        """
        return self._submit(key for key, count in self._blockers.items() if not count)

    def finished(self, keys: Iterable[Key]) -> list[Future]:
        """The node tasks ``keys`` finished: submit the tasks that waited for them.

        Returns:
            The futures of the node tasks submitted.
        """
        ready = []
        for key in keys:
            self._release_taken_by(key)
            for waiter in self._waiters.pop(key, ()):
                self._blockers[waiter] -= 1
                if not self._blockers[waiter]:
                    ready.append(waiter)
        return self._submit(ready)

    def _release_taken_by(self, key: Key) -> None:
        """``key`` finished: let go of what it took that nothing else will take;
        a result's part (``kedro-output``) goes once all its takers finished."""
        stack = [key]
        while stack:
            for taken in self._takes[stack.pop()]:
                self._unfinished_takers[taken] -= 1
                if not self._unfinished_takers[taken]:
                    self._held.pop(taken, None)
                    if taken not in self._node_keys:
                        stack.append(taken)

    def held(self) -> list[Future]:
        """Every future the feeder holds, to cancel on failure."""
        return list({**self._held, **self.kept}.values())

    def _submit(self, ready: Iterable[Key]) -> list[Future]:
        batch: dict[Key, Any] = {}
        stack = list(ready)
        while stack:  # a task taking a submitted task's result may be ready too
            key = stack.pop()
            batch[key] = self._dask_graph.graph[key]
            for taker in self._takers.get(key, ()):
                self._blockers[taker] -= 1
                if not self._blockers[taker]:
                    stack.append(taker)
        if not batch:
            return []
        tasks = {key: _refer(task, self._held) for key, task in batch.items()}
        self._batches += 1
        name = f"{self._dask_graph.token}-{self._batches}"
        futures = self._client.get(
            named_graph(self._dask_graph.submittable(tasks), name),
            list(batch),
            sync=False,
        )
        for future in futures:
            if future.key in self._outputs:
                self.kept[future.key] = future
            if self._unfinished_takers.get(future.key):
                self._held[future.key] = future
        return [future for future in futures if future.key in self._node_keys]


def _refer(task: Any, submitted: dict[Key, Future]) -> Any:
    """``task`` with each key submitted earlier replaced by its future, which
    ``Client.get`` turns into a dependency on that key."""
    if type(task) is tuple:
        if len(task) == 2 and type(task[0]) is str and task in submitted:
            return submitted[task]
        return tuple(_refer(part, submitted) for part in task)
    if type(task) is list:
        return [_refer(part, submitted) for part in task]
    return task
