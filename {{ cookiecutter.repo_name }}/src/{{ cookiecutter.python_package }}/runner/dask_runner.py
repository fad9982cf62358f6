"""``DaskRunner`` is an ``AbstractRunner`` implementation. It runs a ``Pipeline``
on a Dask distributed cluster, a Dask task per node.

Each piece has one job:

- ``DaskCluster`` (``cluster.py``): where the cluster comes from, and closing
  what the runner opened;
- ``PipelineGraph`` (``graph.py``): the pipeline translated into one Dask graph,
  a task per node or per linear chain of nodes;
- ``TaskFeeder`` (``submit.py``): submits each task once the nodes whose
  persisted outputs it loads have finished;
- ``NodeTask``/``NodeChain`` (``worker.py``): what runs on a worker;
- ``RunFollower``/``WorkerWatch`` (``follow.py``): the driver's side while the
  cluster runs the graph;
- ``RunOptions``/``run_services`` (``services.py``): the ``dask_runner`` options
  and what they install around a run.

The runner ties them together and keeps Kedro's runner contract on the driver:
the same logging, ``release`` and ``confirm`` calls on the catalog, the same
resume hint on failure and the same return value as ``SequentialRunner``.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from contextlib import ExitStack, contextmanager, suppress
from typing import TYPE_CHECKING, Any

import cloudpickle
from distributed import KilledWorker, as_completed
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import AbstractRunner

from .cluster import DaskCluster
from .compat import store
from .errors import DaskClusterError, DaskRunnerError
from .follow import RESOURCES_ADVICE, RunFollower, WorkerWatch, workers_offer
from .graph import DaskGraph, Key, PipelineGraph, UnpicklableError
from .interrupts import ctrl_c_never_lost
from .node_logs import LogSettings, NodeLogs
from .plugins import by_value, erred_on
from .recording import RunRecorder
from .run_params import run_params_of
from .run_record import quiet_kedro_viz_runner_warning
from .services import NodeProgress, RunOptions, run_services
from .submit import TaskFeeder
from .versions import check_versions
from .worker import (
    NodeFailure,
    RunContext,
    empty_memory_dataset,
    picklable_node_hooks,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from distributed import Client, Future
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

logger = logging.getLogger(__name__)


class DaskRunner(AbstractRunner):
    """``DaskRunner`` is an ``AbstractRunner`` implementation that runs the nodes
    of a pipeline as tasks on a Dask distributed cluster.

    In-memory datasets travel between nodes as Dask results, worker to worker,
    and are freed once their last consumer has run; persisted datasets are loaded
    and saved on the worker that runs the node. Node and dataset hooks run on the
    worker; pipeline hooks run in the driver as usual.

    Example:
    ``` python
    from my_project.runner import DaskRunner

    DaskRunner().run(pipeline, catalog)  # an embedded LocalCluster
    DaskRunner(client_args={"address": "tcp://127.0.0.1:8786"}).run(pipeline, catalog)
    DaskRunner(node_options=[{"tags": ["gpu"], "resources": {"GPU": 1}}])
    ```
    """

    def __init__(
        self,
        client_args: Mapping[str, Any] | None = None,
        is_async: bool = False,
        **options: Any,
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
            **options: The ``dask_runner`` options (``progress``,
                ``forward_logs``, ``ship_code``, ``performance_report``,
                ``node_options``, ``fuse_chains``), described by
                ``services.RunOptions``.

        Raises:
            DaskRunnerError: ``client_args`` or an option is invalid.
        """
        super().__init__(is_async=is_async)
        self._cluster = DaskCluster(client_args)
        # Workers of a cluster class the runner starts (adaptive, job queues) may
        # still arrive; a cluster someone else runs has the workers it has.
        self._workers_may_arrive = bool((client_args or {}).get("cluster"))
        self._options = RunOptions.from_mapping(options)
        # This runner's runs reach Kedro-Viz's Workflow view (``recording``).
        quiet_kedro_viz_runner_warning()
        # An embedded LocalCluster starts now, while Kedro loads the project.
        self._cluster.start_early()

    def run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
        only_missing_outputs: bool = False,
    ) -> dict[str, Any]:
        """Run ``pipeline`` as ``AbstractRunner.run`` does, its in-memory
        datasets added to ``catalog`` first (``add_default_memory_datasets``).

        Args:
            pipeline: The ``Pipeline`` to run.
            catalog: The catalog from which to fetch data.
            hook_manager: The ``PluginManager`` to activate hooks.
            run_id: The id of the run.
            only_missing_outputs: Run only nodes with missing outputs.

        Returns:
            The pipeline's free outputs, by name, as ``SequentialRunner`` returns
            them.
        """
        if not only_missing_outputs:  # that filter looks at the catalog as given
            add_default_memory_datasets(pipeline, catalog)
        return super().run(
            pipeline, catalog, hook_manager, run_id, only_missing_outputs
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
        # Following the run allocates objects per node (futures, log records,
        # messages), which set off full garbage collections (``heap_frozen``).
        with heap_frozen():
            if not self._is_async:  # as SequentialRunner says it
                self._logger.info(
                    "Using synchronous mode for loading and saving data. Use the "
                    "--async flag for potential performance gains. "
                    "https://docs.kedro.org/en/stable/build/run_a_pipeline/"
                    "#load-and-save-asynchronously"
                )
            # Everything that can fail on bad input fails here, before submitting.
            token = uuid.uuid4().hex
            logs = (
                None
                if self._options.forward_logs is False
                else LogSettings.of_driver(f"kedro-logs-{token}", _package_name())
            )
            run_params = run_params_of(hook_manager)
            recorded = RunRecorder.wanted(run_params, self._options.run_record)
            record_topic = f"kedro-runs-{token}" if recorded else None
            graph = PipelineGraph(pipeline, catalog)
            dask_graph = graph.to_dask(
                token,
                _pickled_run_context(
                    hook_manager,
                    run_id,
                    self._is_async,
                    logs,
                    record_topic,
                    token,
                    record_bytes=bool(self._options.run_record),
                ),
                _pickled_inputs(catalog, graph.memory_inputs),
                node_options=self._options.annotations,
                fuse=self._options.fuse_chains,
            )
            outputs = self._run_on_cluster(
                pipeline, catalog, dask_graph, logs, (record_topic, run_params)
            )
            # The node that produced them logged "Saving data to ..." on its worker.
            for name, value in outputs.items():
                _save(catalog[name], value)

    def _run_on_cluster(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        dask_graph: DaskGraph,
        logs: LogSettings | None,
        recording: tuple[str | None, dict[str, Any] | None],
    ) -> dict[str, Any]:
        """Connect, set up what the options ask for, and follow the run.

        Returns:
            The free in-memory outputs of the pipeline.
        """
        recorder: RunRecorder | None = None
        with ExitStack() as stack:
            stack.enter_context(ctrl_c_never_lost)
            # Once the connection or the cluster has closed: the run's files,
            # written meanwhile (``RunRecorder.__exit__`` started them).
            stack.callback(lambda: recorder and recorder.wait_written())
            client, workers_are_local = stack.enter_context(self._cluster.connect())
            _wait_for_workers(client, self._cluster.worker_wait)
            if not workers_are_local:  # a LocalCluster started here runs this
                check_versions(client)  # interpreter: one round trip less
            _check_resources(
                client,
                dask_graph,
                self._cluster.worker_wait if self._workers_may_arrive else 0,
            )
            stack.enter_context(
                run_services(
                    client,
                    self._options,
                    workers_are_local=workers_are_local,
                    package_name=_package_name(),
                    token=dask_graph.token,
                )
            )
            # Ends before the services: its workers still have the shipped code
            # when it collects their measurements.
            record_topic, run_params = recording
            recorder = stack.enter_context(
                RunRecorder(
                    client,
                    record_topic,
                    pipeline,
                    run_params,
                    self._options.run_record,
                )
            )
            progress = stack.enter_context(
                NodeProgress(len(pipeline.nodes), self._options.progress)
            )
            follower = RunFollower(
                pipeline,
                catalog,
                stack.enter_context(NodeLogs(client, logs)),
                progress,
                self._logger,
                lambda done: self._suggest_resume_scenario(pipeline, done, catalog),
            )
            watch = stack.enter_context(
                WorkerWatch(
                    client,
                    self._cluster.worker_wait,
                    dask_graph.token,
                    progress,
                    dask_graph.nodes_by_key,
                )
            )
            return _follow(
                client,
                dask_graph,
                (follower, watch),
                closes_with_run=workers_are_local,
                all_finished=recorder.all_tasks_finished,
            )


def _follow(
    client: Client,
    dask_graph: DaskGraph,
    followers: tuple[RunFollower, WorkerWatch],
    closes_with_run: bool,
    all_finished: Callable[[], None],
) -> dict[str, Any]:
    """Feed the graph to the cluster, and hand each finished task's nodes to
    ``follower``.

    ``closes_with_run``: the cluster is the runner's own LocalCluster, closed
    when the run ends; on Ctrl-C its tasks are not cancelled one by one first.
    ``all_finished`` is called once every task has finished, before the outputs
    are gathered.

    Returns:
        The free in-memory outputs of the pipeline.
    """
    nodes_of = dask_graph.nodes_by_key
    follower, watch = followers
    feeder = TaskFeeder(client, dask_graph)
    pending = as_completed(feeder.start(), loop=client.loop)
    watch.on_lost(lambda: client.cancel(list(pending.futures), force=True))
    succeeded = interrupted = False
    try:
        for batch in pending.batches():
            # Finished, or finished and lost since with its worker: it ran.
            ran = [f.key for f in batch if f.status in {"finished", "lost"}]
            for key in ran:
                for node in nodes_of[key]:
                    follower.node_done(node)
            if failed := next((f for f in batch if f.key not in ran), None):
                exc = failed.exception() if failed.status == "error" else None
                task_nodes = nodes_of[failed.key]
                follower.task_failed(task_nodes, exc and NodeFailure.node_of(exc))
                raise _failure(client, failed, task_nodes, watch, follower)
            del batch  # a finished task's result is released unless data
            pending.update(feeder.finished(ran))
        all_finished()
        output_keys = dask_graph.output_keys
        values = client.gather([feeder.kept[key] for key in output_keys.values()])
        succeeded = True
        return dict(zip(output_keys, values, strict=True))
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        # On failure or Ctrl-C, leave nothing of this run on the cluster. On
        # success every task has finished: the outputs' futures are released as
        # they go out of scope (a forced cancel of hundreds of finished keys
        # costs the scheduler ~0.4 ms each). A cluster closing with the run
        # needs no cancel on Ctrl-C: it is stopped at once.
        cancel = not (interrupted and closes_with_run)
        if not succeeded and cancel and client.status == "running":
            with suppress(OSError):  # the scheduler may go while we cancel
                client.cancel([*pending.futures, *feeder.held()], force=True)


def _failure(
    client: Client,
    future: Future,
    nodes: list[Node],
    watch: WorkerWatch,
    follower: RunFollower,
) -> BaseException:
    """The exception that stops the run when ``future`` did not finish."""
    names = ", ".join(repr(n.name) for n in nodes)
    if future.status == "error":
        exc = future.exception()
        if isinstance(exc, ImportError) and NodeFailure.node_of(exc) is None:
            return _missing_module(client, future.key, nodes[0], exc)
        if isinstance(exc, KilledWorker):
            return _killed_workers(exc, names)
        return exc.with_traceback(future.traceback())
    if watch.lost:
        return DaskClusterError(watch.lost)
    if client.status != "running":
        finished = sorted(node.name for node in follower.done)
        return DaskClusterError(
            f"The Dask scheduler at {_scheduler_address(client)} was lost during "
            f"the run. {len(finished)} node(s) had finished, their persisted "
            f"outputs are saved: {', '.join(finished) or 'none'}; resume with the "
            f"--from-nodes hint above once the scheduler is back."
        )
    return DaskClusterError(
        f"Dask cancelled the task of node(s) {names} ({future.status}): the "
        f"scheduler was lost or another client cancelled it."
    )


def _killed_workers(exc: KilledWorker, names: str) -> DaskClusterError:
    """Name the node that kept killing its workers, and what to change."""
    died = exc.allowed_failures + 1
    limit = getattr(exc.last_worker, "memory_limit", None)
    memory = f"a {limit / 2**30:.2f} GiB memory limit" if limit else "no memory limit"
    return DaskClusterError(
        f"Node(s) {names} killed {died} Dask workers in turn (out of memory or a "
        f"crash; the last, {getattr(exc.last_worker, 'address', '?')}, had "
        f"{memory}): give workers more memory (dask_client.memory_limit, dask "
        f"worker --memory-limit) or the node a worker of its own with "
        f"dask_runner.node_options resources."
    )


def _scheduler_address(client: Client) -> str:
    return str(getattr(client.scheduler, "address", None) or "?")


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


def _save(dataset: Any, value: Any) -> None:
    """Save a free output the cluster returned into the driver's catalog; a
    ``MemoryDataset`` without Kedro's copy-mode guess (``compat.copy_mode_of``)."""
    if type(dataset) is MemoryDataset:
        store(dataset, value)
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


_DEFAULT_RUNTIME_CONFIG = DataCatalog.default_runtime_patterns["{default}"]
"""What a ``DataCatalog`` makes of a dataset nothing in it names: a
``MemoryDataset``."""


def add_default_memory_datasets(pipeline: Pipeline, catalog: CatalogProtocol) -> None:
    """Add a ``MemoryDataset`` for each dataset the pipeline produces that the
    catalog neither has nor matches a pattern of, where the catalog's runtime
    pattern would make exactly that.

    ``AbstractRunner.run`` materialises every dataset of the pipeline before the
    run; for these, Kedro parses ``kedro.io.MemoryDataset`` as configuration and
    tries a failing import under each package prefix first: ~0.6 ms a dataset,
    0.3 s before a 500-node fan-out starts, longer than Dask takes to schedule
    it. The catalog ends up with the same datasets. Pipeline inputs are left to
    Kedro, which reports those missing; other runtime patterns (a shared-memory
    catalog's) too.
    """
    resolver = getattr(catalog, "config_resolver", None)
    if resolver is None:
        return
    names = [
        n for n in sorted(pipeline.datasets() - pipeline.inputs()) if n not in catalog
    ]

    def memory(name: str) -> bool:
        return resolver.resolve_pattern(name) == _DEFAULT_RUNTIME_CONFIG

    if names and resolver.list_patterns() == ["{default}"]:
        # Only the runtime pattern: every name resolves as the first one does
        # (each resolution parses the pattern against the name: 0.1 ms).
        chosen = names if memory(names[0]) else []
    else:
        chosen = [name for name in names if memory(name)]
    for name in chosen:
        catalog[name] = empty_memory_dataset()


@contextmanager
def heap_frozen() -> Iterator[None]:
    """The objects that exist now left out of garbage collection until the block
    ends (``gc.freeze``); left as they are when someone else froze objects.

    Following a run allocates objects per node (futures, log records, messages);
    every so often they set off a full collection, which also walks everything
    Kedro, Dask and the project imported: 40-60 ms of the driver's time, in a
    third of 500-node runs. Frozen, those objects are not walked; what the run
    allocates is collected as usual, and everything is collectable again after.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _package_name() -> str | None:
    from kedro.framework.project import PACKAGE_NAME

    return PACKAGE_NAME


def _pickled_run_context(
    hook_manager: PluginManager | None,
    run_id: str | None,
    is_async: bool,
    logs: LogSettings | None,
    record_topic: str | None,
    token: str,
    record_bytes: bool = False,
) -> bytes:
    """Pack what every node of the run needs, leaving out hooks that can't travel.

    ``record_topic``: the topic of the nodes' measurements (``None``: none);
    ``record_bytes``: whether they count output bytes (for a run record).
    """
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
        record_topic=record_topic,
        rerun_topic=f"kedro-reruns-{token}",
        record_bytes=record_bytes,
    )
    return cloudpickle.dumps(context)


def _check_resources(client: Client, dask_graph: DaskGraph, wait: float) -> None:
    """Fail before submitting, rather than wait for ever, when a node asks for
    resources (``node_options``) that no worker offers; wait up to ``wait``
    seconds for such a worker first.

    Raises:
        DaskClusterError: One line naming the nodes, the resources and what the
            connected workers offer.
    """
    needs = {
        key: dict(options["resources"])
        for key, options in dask_graph.annotations.items()
        if options.get("resources")
    }
    deadline = time.monotonic() + wait
    while True:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        offers = [dict(worker.get("resources") or {}) for worker in workers.values()]
        unmet = {
            key: resources
            for key, resources in needs.items()
            if not any(_fits(resources, offer) for offer in offers)
        }
        if not unmet or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if unmet:
        by_node = {
            node.name: unmet[key]
            for node, key in dask_graph.node_keys.items()
            if key in unmet
        }
        asked = "; ".join(f"'{name}' needs {res}" for name, res in by_node.items())
        raise DaskClusterError(
            f"No Dask worker offers the resources of dask_runner.node_options: "
            f"{asked}; {workers_offer(workers.values())}. {RESOURCES_ADVICE}"
        )


def _fits(needed: Mapping[str, float], offered: Mapping[str, float]) -> bool:
    return all(offered.get(name, 0) >= amount for name, amount in needed.items())


def _wait_for_workers(client: Client, timeout: float) -> None:
    """Fail clearly, rather than hang, when the cluster has no worker."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise DaskClusterError(
            f"No Dask worker joined the scheduler at {client.scheduler.address} "
            f"within {timeout:g} s (client_args.worker_wait)."
        ) from None
