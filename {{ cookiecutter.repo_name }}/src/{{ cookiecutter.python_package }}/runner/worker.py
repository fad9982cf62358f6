"""The code that runs on a Dask worker: a Kedro node, or a chain of them, per task.

``NodeTask`` is shipped to a worker (pickled, inside the task) and called there
with the node's in-memory inputs, which Dask hands over from whichever worker
produced them. It builds a small catalog holding only what the node touches and
lets Kedro's own ``Task`` run the node, so node and dataset hooks, generator nodes
and asynchronous loading behave exactly as they do with ``SequentialRunner``.
Persisted datasets are loaded and saved right here, on the worker.

``RunContext`` carries what every node of a run shares (run id, hooks, the project
to configure). Each task carries it, a few hundred bytes, rather than depending on
a shared key: Dask then places nodes freely, and the context is still unpickled,
and its hooks registered, once per worker process and run.
"""

from __future__ import annotations

import copy
import functools
import logging
import pickle
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dask.sizeof import sizeof
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner.task import Task

from .compat import (
    add_validator_specs,
    copy_mode_of,
    create_hook_manager,
    hold,
    scheduler_events,
    taken,
)
from .node_logs import LogSettings, collect, messages_of, send
from .recording import measured
from .run_record import RunMeter

if TYPE_CHECKING:
    from kedro.io import AbstractDataset
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

logger = logging.getLogger(__name__)

# Hook specs that Kedro calls while running a node: the only ones worth shipping.
NODE_HOOK_NAMES = frozenset(
    {
        "before_node_run",
        "after_node_run",
        "on_node_error",
        "before_dataset_loaded",
        "after_dataset_loaded",
        "before_dataset_saved",
        "after_dataset_saved",
    }
)


class TaskResult:
    """What the task of a node (or of a chain, its last node) returns to Dask.

    One in-memory output is the result itself; several are a dict by name, which
    the graph reads with ``getitem``; none is ``None``. ``NodeTask`` packs by this
    rule and ``PipelineGraph`` reads by it.
    """

    def __init__(self, names: Sequence[str]):
        self.names = tuple(names)

    def pack(self, values: Mapping[str, Any]) -> Any:
        if len(self.names) == 1:
            return values[self.names[0]]
        return {name: values[name] for name in self.names} or None

    @property
    def is_whole(self) -> bool:
        """Whether the task's result is its one output, with no dict around it."""
        return len(self.names) == 1


class NodeFailure:
    """The note a node task adds to the exception its node raised, naming the
    node and the worker; the driver reads back which node failed (for a chain:
    the ones before it finished) and whether the node raised at all (an import
    error while unpickling a task has no note)."""

    PREFIX = "Raised by Kedro node"

    @classmethod
    def note(cls, exc: BaseException, node_name: str) -> None:
        exc.add_note(f"{cls.PREFIX} '{node_name}' on Dask worker {_worker_address()}.")

    @classmethod
    def node_of(cls, exc: BaseException) -> str | None:
        """The name of the node that raised ``exc``, if a node task noted it."""
        for note in getattr(exc, "__notes__", ()):
            if isinstance(note, str) and note.startswith(cls.PREFIX):
                return note[len(cls.PREFIX) :].split("'")[1]
        return None


class RunContext:
    """What all nodes of one run share on a worker.

    Args:
        run_id: The Kedro run id, passed to node hooks.
        is_async: Load and save node inputs and outputs with threads.
        package_name: The Kedro project package to configure on the worker
            (``None`` when the pipeline runs outside a Kedro project).
        hook_plugins: Pickled node and dataset hook implementations of the driver.
        logs: Where node log records go: to the driver (see ``node_logs``), or,
            when ``None``, to the worker's own logging.
        record_topic: The Dask event topic nodes' measurements go to (see
            ``recording``), or ``None`` when the run records nothing.
        record_bytes: Whether measurements include the size of each in-memory
            output (the run record's bytes moved between workers).
        rerun_topic: The Dask event topic where a task that saves persisted
            data and hands on in-memory data notes that it finished (see
            ``Reruns``); ``None``: no task checks.
    """

    def __init__(
        self,
        run_id: str | None,
        is_async: bool,
        package_name: str | None,
        hook_plugins: bytes,
        logs: LogSettings | None = None,
        record_topic: str | None = None,
        rerun_topic: str | None = None,
        record_bytes: bool = False,
    ):
        self.run_id = run_id
        self.record_topic = record_topic
        self.record_bytes = record_bytes
        self.rerun_topic = rerun_topic
        self.is_async = is_async
        self.package_name = package_name
        self._hook_plugins = hook_plugins
        self.logs = logs
        self._hook_manager: tuple[PluginManager, RunMeter | None] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_hook_manager": None}

    @staticmethod
    def of(pickled: bytes) -> RunContext:
        """The context a task carries pickled, unpickled once per worker process
        and run: every task of a run carries the same bytes."""
        return _unpickled_context(pickled)

    @property
    def hook_manager(self) -> PluginManager:
        """The worker's hook manager for this run, built once per worker process."""
        return self._hooks()[0]

    @property
    def meter(self) -> RunMeter | None:
        """What measures this run's nodes on this worker (``None``: nothing)."""
        return self._hooks()[1]

    def _hooks(self) -> tuple[PluginManager, RunMeter | None]:
        if self._hook_manager is None:
            self._hook_manager = _run_hooks(
                self.run_id,
                self.package_name,
                self._hook_plugins,
                self.record_topic is not None,
            )
        return self._hook_manager


@functools.lru_cache(maxsize=8)
def _unpickled_context(pickled: bytes) -> RunContext:
    return pickle.loads(pickled)


@functools.lru_cache(maxsize=8)
def _run_hooks(
    run_id: str | None, package_name: str | None, hook_plugins: bytes, measure: bool
) -> tuple[PluginManager, RunMeter | None]:
    """Every task of a run carries the run's context; its hooks are loaded once."""
    if package_name:
        _configure_project(package_name)
    manager = create_hook_manager(traced=False)
    for plugin in pickle.loads(hook_plugins):
        manager.register(plugin)
    meter = RunMeter() if measure else None
    if meter is not None:
        manager.register(meter)
    return manager, meter


def warm_up(package_name: str | None) -> None:
    """Import what a node task needs on this worker (Kedro's runner, this
    module) and configure the project, as its first node task would."""
    if package_name:
        _configure_project(package_name)


@functools.cache
def _configure_project(package_name: str) -> None:
    """Configure the Kedro project once per worker process, as ParallelRunner does."""
    from kedro.framework.project import PACKAGE_NAME, configure_project

    if PACKAGE_NAME != package_name:
        configure_project(package_name)


def picklable_node_hooks(hook_manager: Any) -> list[Any]:
    """The driver's hook implementations that a worker must call, ready to pickle.

    Only plugins implementing node or dataset hooks are kept: the others (context,
    catalog, pipeline hooks, telemetry, ...) never fire on a worker.
    """
    from pluggy import PluginManager

    if not isinstance(hook_manager, PluginManager):  # e.g. Kedro's null manager
        return []
    plugins = []
    for plugin in hook_manager.get_plugins():
        names = {impl.name for impl in hook_manager.get_hookcallers(plugin) or ()}
        # Kedro-Viz's hooks write the driver's files; recording.py does that.
        from_kedro_viz = type(plugin).__module__.startswith("kedro_viz.")
        if names & NODE_HOOK_NAMES and not from_kedro_viz:
            plugins.append(plugin)
    return plugins


class _NodeCatalog(DataCatalog):
    """The catalog a node sees on a worker: just the datasets it touches.

    Confirmation (``node.confirms``) is left to the driver's catalog, which
    confirms once Dask reports the node finished, as ``SequentialRunner`` does.
    """

    def confirm(self, ds_name: str) -> None:
        """Deferred to the driver; see the class docstring."""


def received_dataset(data: Any, copy_mode: str | None) -> MemoryDataset:
    """A ``MemoryDataset`` holding an in-memory input Dask delivered to this worker.

    Dask already holds the object, so it is not copied when stored; it is copied
    on load according to the dataset's ``copy_mode``, as ``MemoryDataset`` does,
    so a node that mutates its input cannot change what other consumers see. The
    mode is settled here (see ``compat.copy_mode_of``) so loading skips Kedro's
    guess.
    """
    return hold(empty_memory_dataset(copy_mode or copy_mode_of(data)), data)


def empty_memory_dataset(copy_mode: str | None = None) -> MemoryDataset:
    """An empty ``MemoryDataset(copy_mode=copy_mode)``, copied from a prototype.

    Kedro wraps every dataset's ``__init__`` to record its arguments with
    ``inspect.getcallargs``, about a tenth of a millisecond per instance; a node
    task needs one per in-memory input and output. A shallow copy of an empty
    instance is the same dataset, built without that.
    """
    return copy.copy(_prototype(copy_mode))


@functools.cache
def _prototype(copy_mode: str | None) -> MemoryDataset:
    return MemoryDataset(copy_mode=copy_mode)  # type: ignore[arg-type]


class Reruns:
    """Keeps a task Dask runs a second time from saving its persisted data again.

    Dask runs a finished task again when the worker holding its in-memory result
    dies before every consumer took it. A node that also saved persisted data
    then saves it a second time: a second version of a versioned dataset, or
    (with Kedro's fixed save version of a run) an error. Such a task notes in a
    Dask event topic of the run that it finished; run again, it finds the note
    and leaves its persisted outputs as its first run saved them. Only these
    tasks ask (one call to the scheduler); the others never run twice
    (``submit.TaskFeeder``) or save nothing.
    """

    @staticmethod
    def ran_before(context: RunContext, name: str) -> bool:
        """Whether the task named ``name`` (its last node) finished in this run."""
        if context.rerun_topic is None:
            return False
        try:
            events = scheduler_events(context.rerun_topic)
        except ValueError:  # not on a worker, e.g. in a unit test
            return False
        return any(
            message.get("node") == name
            for event in events
            for message in messages_of(event)
        )

    @staticmethod
    def note_finished(context: RunContext, name: str) -> None:
        """Note that the task named ``name`` finished; the scheduler has the note
        before the task's result (``node_logs.send``)."""
        if context.rerun_topic is None:
            return
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError:  # not on a worker
            return
        send(worker, context.rerun_topic, {"node": name})

    @staticmethod
    def warn(name: str, outputs: Sequence[str]) -> None:
        logger.warning(
            "Node '%s' runs again on Dask worker %s for its in-memory outputs, "
            "lost with a worker; its persisted outputs (%s), saved by its first "
            "run, are kept as they are.",
            name,
            _worker_address(),
            ", ".join(outputs),
        )


class NodeTask:
    """Runs one node on a worker and returns its in-memory outputs.

    Args:
        node: The Kedro node.
        datasets: The persisted datasets the node loads or saves, as configured
            in the driver's catalog (resolved versions included).
        memory_inputs: Names of in-memory inputs, in the order Dask passes them,
            with the ``copy_mode`` of each.
        memory_outputs: Names of the in-memory outputs to hand back to Dask.
        validator_specs: The catalog's validator specs for ``datasets``.
    """

    def __init__(  # noqa: PLR0913
        self,
        node: Node,
        datasets: Mapping[str, AbstractDataset],
        memory_inputs: Sequence[tuple[str, str | None]],
        memory_outputs: Sequence[str],
        validator_specs: Mapping[str, Any] | None = None,
    ):
        self.node = node
        self.datasets = dict(datasets)
        self.memory_inputs = tuple(memory_inputs)
        self.memory_outputs = tuple(memory_outputs)
        self.result = TaskResult(self.memory_outputs)
        self.validator_specs = dict(validator_specs or {})
        self.persisted_outputs = tuple(
            name for name in node.outputs if name not in self.memory_outputs
        )

    def __call__(self, context: bytes, *inputs: Any) -> Any:
        """Run the node as a Dask task.

        Args:
            context: The run's ``RunContext``, pickled.
            inputs: Values of ``memory_inputs``, in order.

        Returns:
            The in-memory outputs, packed as ``TaskResult`` says.
        """
        return self.run(RunContext.of(context), inputs)

    def run(
        self, context: RunContext, inputs: Sequence[Any], rerun: bool | None = None
    ) -> Any:
        """Run the node.

        Args:
            context: The run's shared context.
            inputs: Values of ``memory_inputs``, in order.
            rerun: Whether the task already finished once in this run (then the
                persisted outputs are not saved again); ``None``: find out, for
                a node that saves persisted data and hands on in-memory data.

        Returns:
            The in-memory outputs, packed as ``TaskResult`` says.
        """
        name = self.node.name
        checks = rerun is None and bool(self.memory_outputs and self.persisted_outputs)
        if checks:
            rerun = Reruns.ran_before(context, name)
        if rerun and self.persisted_outputs:
            Reruns.warn(name, self.persisted_outputs)
        catalog = self._catalog(inputs, keep_persisted=bool(rerun))
        try:
            with (
                collect(context.logs, name),
                measured(
                    context.meter,
                    context.record_topic,
                    self.node,
                    catalog,
                    self.datasets,
                ) as measure,
            ):
                Task(
                    node=self.node,
                    catalog=catalog,
                    hook_manager=context.hook_manager,
                    is_async=context.is_async,
                    run_id=context.run_id,
                ).execute()
                outputs = {n: taken(catalog[n]) for n in self.memory_outputs}
                if measure is not None and context.record_bytes:
                    measure.output_nbytes = {n: sizeof(v) for n, v in outputs.items()}
        except Exception as exc:
            NodeFailure.note(exc, name)
            raise
        if checks and not rerun:
            Reruns.note_finished(context, name)
        return self.result.pack(outputs)

    def _catalog(
        self, inputs: Sequence[Any], keep_persisted: bool = False
    ) -> _NodeCatalog:
        """The node's catalog; with ``keep_persisted``, its persisted outputs go
        to throw-away ``MemoryDataset`` s instead of their datasets."""
        datasets: dict[str, AbstractDataset] = dict(self.datasets)
        for (name, copy_mode), value in zip(self.memory_inputs, inputs, strict=True):
            datasets[name] = received_dataset(value, copy_mode)
        discarded = self.persisted_outputs if keep_persisted else ()
        for name in (*self.memory_outputs, *discarded):
            datasets[name] = empty_memory_dataset("assign")
        catalog = _NodeCatalog(datasets=datasets)
        if self.validator_specs:
            add_validator_specs(catalog, self.validator_specs)
        return catalog


class NodeChain:
    """Runs a linear chain of nodes in one Dask task, each handing the next its
    in-memory output on the spot.

    Args:
        steps: Each node's pickled ``NodeTask``, in running order.
        links: For each step, the position among its ``memory_inputs`` of the
            value the previous step returns, or ``None`` when it takes none.
        name: The chain's last node, which names it (see ``Reruns``).
        checks_reruns: Whether the chain saves persisted data and hands on
            in-memory data, so must not save again if Dask runs it twice.
    """

    def __init__(
        self,
        steps: Sequence[bytes],
        links: Sequence[int | None],
        name: str = "",
        checks_reruns: bool = False,
    ):
        self.steps = tuple(steps)
        self.links = tuple(links)
        self.name = name
        self.checks_reruns = checks_reruns

    def __call__(self, context: bytes, *inputs: Sequence[Any]) -> Any:
        """Run the chain as a Dask task.

        Args:
            context: The run's ``RunContext``, pickled.
            inputs: For each step, the values of its other in-memory inputs.

        Returns:
            What the last node's ``NodeTask`` returns.
        """
        return self.run(RunContext.of(context), inputs)

    def run(self, context: RunContext, inputs: Sequence[Sequence[Any]]) -> Any:
        """Run the chain.

        Args:
            context: The run's shared context.
            inputs: For each step, the values of its other in-memory inputs.

        Returns:
            What the last node's ``NodeTask`` returns.
        """
        rerun = self.checks_reruns and Reruns.ran_before(context, self.name)
        handed = None
        for step, link, values in zip(self.steps, self.links, inputs, strict=True):
            arguments = list(values)
            if link is not None:
                arguments.insert(link, handed)
            handed = None  # only ``arguments`` holds it: freed after the step
            # A failing node's exception names it (``NodeFailure``): the driver
            # confirms and reports the nodes before it.
            handed = pickle.loads(step).run(context, arguments, rerun)
        if self.checks_reruns and not rerun:
            Reruns.note_finished(context, self.name)
        return handed


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:  # called outside a worker, e.g. in a unit test
        return "<not on a worker>"
