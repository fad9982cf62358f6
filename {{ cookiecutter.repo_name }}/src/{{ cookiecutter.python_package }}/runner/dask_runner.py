"""``DaskRunner`` is an ``AbstractRunner`` implementation. It runs a ``Pipeline``
on a Dask distributed cluster, one Dask task per node.

Three pieces do the work, each with one job:

- ``DaskCluster`` (``cluster.py``): where the cluster comes from, and closing
  what the runner opened;
- ``PipelineGraph`` (``graph.py``): the pipeline translated into one Dask graph,
  submitted at once;
- ``NodeTask`` (``worker.py``): what runs on a worker for each node.

The runner itself checks and submits the graph, follows it as nodes finish and
keeps Kedro's runner contract on the driver: the same logging, ``release`` and
``confirm`` calls on the catalog, the same resume hint on failure and the same
return value as ``SequentialRunner``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack, suppress
from itertools import chain
from typing import TYPE_CHECKING, Any

import cloudpickle
from distributed import as_completed
from kedro.io import MemoryDataset
from kedro.io.memory_dataset import _copy_with_mode
from kedro.runner import AbstractRunner

from .cluster import DaskCluster
from .errors import DaskClusterError, DaskRunnerError
from .graph import DaskGraph, Key, PipelineGraph, UnpicklableError
from .node_logs import LogSettings, NodeLogs
from .plugins import by_value, erred_on
from .services import NodeProgress, RunOptions, run_services
from .worker import (
    NODE_NOTE,
    RunContext,
    chain_nodes_done,
    copy_mode_of,
    picklable_node_hooks,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from distributed import Client, Future
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

logger = logging.getLogger(__name__)


class DaskRunner(AbstractRunner):
    """``DaskRunner`` is an ``AbstractRunner`` implementation that runs each node
    of a pipeline as a task on a Dask distributed cluster.

    In-memory datasets travel between nodes as Dask results, worker to worker,
    and are freed once their last consumer has run; persisted datasets are loaded
    and saved on the worker that runs the node. Node and dataset hooks run on the
    worker; pipeline hooks run in the driver as usual.

    Example:
    ``` python
    from my_project.runner import DaskRunner

    DaskRunner().run(pipeline, catalog)  # an embedded LocalCluster
    DaskRunner(client_args={"address": "tcp://127.0.0.1:8786"}).run(pipeline, catalog)
    ```
    """

    def __init__(
        self,
        client_args: Mapping[str, Any] | None = None,
        is_async: bool = False,
        *,
        progress: bool | None = None,
        forward_logs: bool | None = None,
        ship_code: bool | None = None,
        performance_report: str | None = None,
        node_options: Sequence[Mapping[str, Any]] | None = None,
        fuse_chains: bool = True,
    ):
        """Instantiates the runner.

        Args:
            client_args: Where the cluster comes from: ``address`` of a running
                scheduler, or LocalCluster options (``n_workers``,
                ``threads_per_worker``, ``processes``, ``memory_limit``, ...).
                Empty: the current ``distributed.Client``, else the Dask config's
                ``scheduler-address``, else an embedded LocalCluster on 127.0.0.1.
                ``timeout`` bounds connecting (default 10 s) and ``worker_wait``
                the wait for a first worker (default 60 s).
            is_async: If True, the node inputs and outputs are loaded and saved
                asynchronously with threads on the worker. Defaults to False.
            progress: Live progress display; default: on a terminal.
            forward_logs: Show in the driver's console what nodes log on the
                workers, as ``SequentialRunner`` shows it; default: on.
            ship_code: Send the project package to the workers at the start of
                the run; default: unless the workers are this runner's own
                LocalCluster.
            performance_report: Path of Dask's HTML performance report of the run.
            node_options: Rules giving Dask ``resources``, ``retries``,
                ``priority``, ... to the nodes selected by ``tags`` or ``nodes``.
            fuse_chains: Run each linear chain of nodes as one Dask task.
            The keyword options are the ``dask_runner`` parameters; see
            ``services.RunOptions``.

        Raises:
            DaskRunnerError: ``client_args`` or an option is invalid.
        """
        super().__init__(is_async=is_async)
        self._cluster = DaskCluster(client_args)
        self._options = RunOptions.from_mapping(
            {
                "progress": progress,
                "forward_logs": forward_logs,
                "ship_code": ship_code,
                "performance_report": performance_report,
                "node_options": node_options,
                "fuse_chains": fuse_chains,
            }
        )

    def _get_executor(self, max_workers: int) -> None:
        """Dask is the executor; there is no ``concurrent.futures`` pool."""
        return None

    def _run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        """Run ``pipeline`` on the cluster.

        Args:
            pipeline: The ``Pipeline`` to run.
            catalog: An implemented instance of ``CatalogProtocol`` from which to
                fetch data.
            hook_manager: The ``PluginManager`` to activate hooks.
            run_id: The id of the run.

        Raises:
            Exception: in case of any downstream node failure, the node's own
                exception with its remote traceback.
        """
        if not pipeline.nodes:  # e.g. --only-missing-outputs found nothing to do
            return
        if not self._is_async:  # as SequentialRunner says it
            self._logger.info(
                "Using synchronous mode for loading and saving data. Use the "
                "--async flag for potential performance gains. "
                "https://docs.kedro.org/en/stable/build/run_a_pipeline/"
                "#load-and-save-asynchronously"
            )
        # Everything that can fail on bad input fails here, before submitting.
        graph = PipelineGraph(pipeline, catalog)
        token = uuid.uuid4().hex
        logs = (
            None
            if self._options.forward_logs is False
            else LogSettings.of_driver(f"kedro-logs-{token}", _package_name())
        )
        context = _pickled_run_context(hook_manager, run_id, self._is_async, logs)
        dask_graph = graph.to_dask(
            token,
            context,
            _pickled_inputs(catalog, graph.memory_inputs),
            node_options=self._options.annotations,
            fuse=self._options.fuse_chains,
        )
        with ExitStack() as stack:
            client, workers_are_local = stack.enter_context(self._cluster.connect())
            worker_wait = self._cluster.worker_wait
            _wait_for_workers(client, worker_wait)
            stack.enter_context(
                run_services(
                    client,
                    self._options,
                    workers_are_local=workers_are_local,
                    package_name=_package_name(),
                    token=token,
                )
            )
            node_logs = stack.enter_context(NodeLogs(client, logs))
            progress = stack.enter_context(
                NodeProgress(len(pipeline.nodes), self._options.progress)
            )
            watch = stack.enter_context(
                _WorkerWatch(client, worker_wait, token, progress)
            )
            outputs = self._follow(
                client, pipeline, catalog, dask_graph, watch, node_logs
            )

        # The node that produced them logged "Saving data to ..." on its worker.
        for name, value in outputs.items():
            _store(catalog[name], value)

    def _follow(
        self,
        client: Client,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        dask_graph: DaskGraph,
        watch: _WorkerWatch,
        node_logs: NodeLogs,
    ) -> dict[str, Any]:
        """Submit the graph, then do the driver's part as each node finishes.

        Returns:
            The free in-memory outputs of the pipeline.
        """
        nodes = pipeline.nodes
        nodes_of: dict[Key, list[Node]] = {}  # a chain's nodes share one task
        for node in nodes:
            nodes_of.setdefault(dask_graph.node_keys[node], []).append(node)
        output_keys = dask_graph.output_keys
        wanted = set(output_keys.values())
        keys = [*nodes_of, *sorted(wanted - nodes_of.keys())]
        futures = client.get(
            _expression(dask_graph.submittable(), dask_graph.token), keys, sync=False
        )
        kept = {f.key: f for f in futures if f.key in wanted}
        pending = as_completed(futures[: len(nodes_of)], loop=client.loop)
        del futures  # so each result is freed as soon as Dask no longer needs it
        watch.on_lost(lambda: client.cancel(list(pending.futures), force=True))

        release = _Releaser(pipeline, catalog)
        done_nodes: set[Node] = set()

        def node_done(node: Node) -> None:
            done_nodes.add(node)
            watch.progress.node_done()
            node_logs.emit(node.name)
            self._logger.info("Completed node: %s", node.name)
            self._logger.info(
                "Completed %d out of %d tasks", len(done_nodes), len(nodes)
            )
            for name in node.confirms:
                catalog.confirm(name)
            release.after(node)

        succeeded = False
        try:
            for future in pending:
                if future.status == "lost":  # its worker died: Dask computes it again
                    pending.add(future)
                    continue
                task_nodes = nodes_of[future.key]
                if future.status != "finished":
                    if future.status == "error":
                        done = chain_nodes_done(future.exception())
                        for node in task_nodes[:done]:
                            node_done(node)
                    watch.progress.node_failed()
                    node_logs.emit_all()
                    self._suggest_resume_scenario(pipeline, done_nodes, catalog)
                    raise _failure(client, future, task_nodes, watch)
                for node in task_nodes:
                    node_done(node)
                del future
            values = client.gather([kept[key] for key in output_keys.values()])
            succeeded = True
            return dict(zip(output_keys, values, strict=True))
        finally:
            # On failure or Ctrl-C, leave nothing of this run on the cluster. On
            # success every task has finished: the outputs' futures are released
            # as they go out of scope, as ``client.get`` releases its own (a
            # forced cancel of hundreds of finished keys costs the scheduler
            # ~0.4 ms each).
            if not succeeded:
                client.cancel([*pending.futures, *kept.values()], force=True)


class _Releaser:
    """Releases datasets in the driver's catalog as ``SequentialRunner`` does.

    Same calls as ``AbstractRunner._release_datasets``, whose per-call
    ``pipeline.inputs()``/``outputs()`` cost grows with the pipeline: computed once
    here, following a run stays linear in its number of nodes.
    """

    def __init__(self, pipeline: Pipeline, catalog: CatalogProtocol):
        self._catalog = catalog
        self._load_counts = Counter(
            chain.from_iterable(n.inputs for n in pipeline.nodes)
        )
        self._inputs = pipeline.inputs()
        self._outputs = pipeline.outputs()

    def after(self, node: Node) -> None:
        """Release what ``node`` was the last to need."""
        for dataset in node.inputs:
            self._load_counts[dataset] -= 1
            if self._load_counts[dataset] < 1 and dataset not in self._inputs:
                self._catalog.release(dataset)
        for dataset in node.outputs:
            if self._load_counts[dataset] < 1 and dataset not in self._outputs:
                self._catalog.release(dataset)


def _failure(
    client: Client, future: Future, nodes: list[Node], watch: _WorkerWatch
) -> BaseException:
    """The exception that stops the run when ``future`` did not finish."""
    if future.status == "error":
        exc = future.exception()
        if isinstance(exc, ImportError) and not _raised_by_node(exc):
            return _missing_module(client, future.key, nodes[0], exc)
        return exc.with_traceback(future.traceback())
    if watch.lost:
        return DaskClusterError(watch.lost)
    return DaskClusterError(
        f"Dask cancelled the task of node(s) {', '.join(repr(n.name) for n in nodes)}"
        f" ({future.status}): the scheduler was lost or another client cancelled it."
    )


def _raised_by_node(exc: BaseException) -> bool:
    """Whether ``exc`` came from running the node, not from unpickling its task."""
    return any(note.startswith(NODE_NOTE) for note in getattr(exc, "__notes__", ()))


def _missing_module(
    client: Client, key: Key, node: Node, exc: ImportError
) -> DaskRunnerError:
    """Name the worker that cannot import what a node's task needs, and the fix."""
    workers: list[str] = []
    with by_value(), suppress(Exception):  # the scheduler may be gone by now
        workers = client.run_on_scheduler(erred_on, key=key)
    where = ", ".join(sorted(workers or ())) or "?"
    module = exc.name or str(exc)
    package = _package_name()
    if package and module.split(".")[0] == package:
        fix = (
            "start workers from the project root with PYTHONPATH=src (or "
            "'kedro dask worker'), pip install the project where they run, or set "
            "dask_runner.ship_code: true"
        )
    else:
        fix = f"install '{module.split('.')[0]}' where the workers run"
    return DaskRunnerError(
        f"Dask worker {where} cannot import '{module}' to run node '{node.name}': "
        f"{fix}."
    )


def _expression(graph: Any, token: str) -> Any:
    """``graph`` as the expression ``Client.get`` makes of it, named by the run.

    ``Client.get`` wraps a graph in an expression named by a deterministic
    token of the whole graph, which walks every task and its pickled bytes
    (~0.35 ms per node in the driver). The run's token is already unique.
    """
    if not token:
        return graph
    try:
        from dask._expr import HLGExpr, LLGExpr
        from dask.highlevelgraph import HighLevelGraph
    except ImportError:  # another dask layout: let Client.get tokenize
        return graph
    if isinstance(graph, HighLevelGraph):
        return HLGExpr(graph, _determ_token=token)
    if isinstance(graph, dict):
        return LLGExpr(graph, _determ_token=token)
    return graph


def _store(dataset: Any, value: Any) -> None:
    """Save a free output the cluster returned into the driver's catalog.

    What ``MemoryDataset.save`` does, without its copy-mode inference, whose
    failed ``import ibis`` searches ``sys.path`` again on every save (see
    ``worker.copy_mode_of``); other datasets are saved as they are.
    """
    if type(dataset) is MemoryDataset:
        copy_mode = dataset._copy_mode or copy_mode_of(value)
        dataset._data = _copy_with_mode(value, copy_mode=copy_mode)
    else:
        dataset.save(value)


def _pickled_inputs(catalog: CatalogProtocol, names: list[str]) -> dict[str, bytes]:
    """The in-memory pipeline inputs (parameters, fed data), loaded and pickled.

    Loaded from the datasets directly: the catalog's "Loading data from ..." line
    is logged by each node that loads them, as with ``SequentialRunner``.
    """
    pickled = {}
    for name in names:
        try:
            pickled[name] = cloudpickle.dumps(catalog[name].load())
        except Exception as exc:
            raise UnpicklableError(
                f"Pipeline input '{name}' cannot be pickled for a Dask worker: {exc}"
            ) from exc
    return pickled


class _WorkerWatch:
    """Fails the run, instead of letting it hang, once every worker is gone.

    A thread asks the scheduler what its workers are processing; when no worker
    has been there for ``worker_wait`` seconds, it records why and calls back to
    cancel the run. It also tells ``progress`` how many nodes are running.
    """

    def __init__(
        self,
        client: Client,
        worker_wait: float,
        token: str,
        progress: NodeProgress,
        interval: float = 1.0,
    ):
        self._client = client
        self._token = token
        self.progress = progress
        self._worker_wait = worker_wait
        self._interval = interval
        self._stop = threading.Event()
        self._cancel: Callable[[], Any] = lambda: None
        self._thread = threading.Thread(
            target=self._watch, name="kedro-dask-worker-watch", daemon=True
        )
        self.lost = ""

    def on_lost(self, cancel: Callable[[], Any]) -> None:
        self._cancel = cancel

    def __enter__(self) -> _WorkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        since = None
        while not self._stop.wait(self._interval):
            try:
                processing = self._client.processing()
            except Exception:  # noqa: BLE001 - the client is closing; the run ends
                return
            self.progress.running(
                sum(
                    isinstance(key, tuple) and key[0].endswith(self._token)
                    for keys in processing.values()
                    for key in keys
                )
            )
            if processing:
                since = None
                continue
            since = since or time.monotonic()
            if time.monotonic() - since >= self._worker_wait:
                self.lost = (
                    f"All Dask workers left the scheduler at "
                    f"{self._client.scheduler.address} and none came back within "
                    f"{self._worker_wait:g} s (client_args.worker_wait)."
                )
                self._cancel()
                return


def _package_name() -> str | None:
    from kedro.framework.project import PACKAGE_NAME

    return PACKAGE_NAME


def _pickled_run_context(
    hook_manager: PluginManager | None,
    run_id: str | None,
    is_async: bool,
    logs: LogSettings | None,
) -> bytes:
    """Pack what every node of the run needs, leaving out hooks that can't travel."""
    plugins = []
    for plugin in picklable_node_hooks(hook_manager):
        try:
            cloudpickle.dumps(plugin)
        except Exception as exc:  # noqa: BLE001
            logger.warning(
                "Hook %r cannot be pickled, so it will not run on Dask workers: %s",
                plugin,
                exc,
            )
        else:
            plugins.append(plugin)
    context = RunContext(
        run_id=run_id,
        is_async=is_async,
        package_name=_package_name(),
        hook_plugins=cloudpickle.dumps(plugins),
        logs=logs,
    )
    return cloudpickle.dumps(context)


def _wait_for_workers(client: Client, timeout: float) -> None:
    """Fail clearly, rather than hang, when the cluster has no worker."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise DaskClusterError(
            f"No Dask worker joined the scheduler at {client.scheduler.address} "
            f"within {timeout:g} s (client_args.worker_wait)."
        ) from None
