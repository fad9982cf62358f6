"""What a Dask run did, node by node: for Kedro-Viz, as a JSON record, as a timeline.

Workers measure each node (``RunMeter``) and send the measurement to the driver as
plain data; the driver turns the messages into ``NodeRun`` records and writes them
out, since the workers may not share its disk:

* ``write_viz_events``: the events file Kedro-Viz's Workflow view reads, written as
  Kedro-Viz's own hook writes it after a ``SequentialRunner`` run;
* ``write_run_record``: a JSON run record (worker, start, end, duration, retries,
  bytes of in-memory inputs moved between workers, for every node);
* ``write_timeline``: a self-contained HTML page (bokeh) of the record, nodes as
  bars per worker, failed ones marked.

Nothing here imports bokeh or Kedro-Viz until it is used, so workers import this
module cheaply, and Kedro-Viz stays optional.

The Kedro-Viz 12.x contract
---------------------------
Kedro-Viz records a run with a Kedro hook of its own, ``PipelineRunStatusHook``
(``kedro_viz.integrations.kedro.run_hooks``, registered through the ``kedro.hooks``
entry point, so it is active in every ``kedro run`` once Kedro-Viz is installed).
At the end of the run (``after_pipeline_run``), and at once on ``on_node_error``
and ``on_pipeline_error``, it writes the whole list of events collected so far as
a JSON array to ``<project>/.viz/kedro_pipeline_events.json``, the project being
the first directory from the current one upwards whose ``pyproject.toml`` holds a
``[tool.kedro]`` table. The file holds the last run only; a run that Kedro-Viz
does not record leaves the previous file as it was.

The events, in the order they happen:

* ``{"event": "before_pipeline_run", "timestamp": ISO}``;
* for each input a node loads, ``{"event": "after_dataset_loaded", "dataset":
  name, "node_id": dataset id, "status": "Available", "size": bytes}``, and after
  the node, the same with ``"after_dataset_saved"`` for each output it saves. The
  size is that of the file at the dataset's ``filepath`` (or ``_filepath``)
  attribute, read with fsspec, and 0 for datasets without one (memory datasets,
  parameters); it is left out when the data is ``None``;
* after a node's function returns, ``{"event": "after_node_run", "node": name,
  "node_id": node id, "duration": seconds, "status": "success"}``, the duration
  being the node function's alone (from ``before_node_run`` to ``after_node_run``,
  loading and saving excluded);
* when the function raises, ``{"event": "on_node_error", "node", "node_id",
  "error": str(exception), "timestamp", "traceback"}``;
* last, ``{"event": "after_pipeline_run", "timestamp"}``, or ``{"event":
  "on_pipeline_error", "error", "timestamp", "traceback"}`` naming where the run
  was: ``"dataset"`` and ``"operation"`` (``"loading"`` or ``"saving"``) when a
  dataset failed to load or save, and ``"node"`` and ``"node_id"`` of the node
  that was running, or of the first node not started, with ``"status":
  "not_started"``, when none was.

Ids are those of Kedro-Viz's flowchart: a node's is the first 8 hex digits of the
SHA-1 of ``str(node)`` (``"name: func([inputs]) -> [outputs]"``), a dataset's the
same of its name without any transcoding suffix (``@...``).

The reader (``kedro_viz.api.rest.responses.run_events.get_run_status_response``,
behind ``/api/run-status``) reads ``.viz/kedro_pipeline_events.json`` relative to
the current directory of ``kedro viz`` and builds ``nodes`` (id: status, duration,
error with message and traceback), ``datasets`` (id: name, size, status; a save's
size replaces a load's) and ``pipeline`` (start and end from the first and the
last pipeline event, duration between them, status, error). A pipeline error
naming a dataset also marks that dataset failed, and the node failed if it has an
event of its own. Statuses other than ``success`` and ``failed`` read as success.

The hook records a run only when it is a full run: its ``before_pipeline_run``
skips any run whose ``run_params`` set one of ``pipeline_name``, ``tags``,
``from_nodes``, ``to_nodes``, ``node_names``, ``from_inputs``, ``to_outputs`` or
``namespace`` (``is_default_run``; note that Kedro 1.x passes ``pipeline_names``
and ``namespaces``, which Kedro-Viz 12.5 does not look at), and any run whose
runner is not ``SequentialRunner`` (kedro-viz#2443). ``write_viz_events`` asks
Kedro-Viz's own ``is_default_run``, so partial Dask runs follow whatever rule the
installed Kedro-Viz applies to ``SequentialRunner`` runs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from kedro.framework.hooks import hook_impl

VIZ_EVENTS_FILE = Path(".viz") / "kedro_pipeline_events.json"
"""Where Kedro-Viz reads the last run's events, relative to the project."""

RUN_RECORD_FORMAT = "kedro-dask-run-record"
RUN_RECORD_VERSION = 1

SUCCESS = "success"
FAILED = "failed"
LOADED = "loaded"
SAVED = "saved"
LOADING = "loading"
SAVING = "saving"


# --------------------------------------------------------------------- ids --- #


def _short_sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def node_id(node: Any) -> str:
    """The id Kedro-Viz gives a Kedro node (``kedro_viz.utils._hash(str(node))``)."""
    return _short_sha1(str(node))


@functools.lru_cache(maxsize=4096)
def dataset_id(name: str) -> str:
    """The id Kedro-Viz gives a dataset: its name, transcoding suffix stripped."""
    return _short_sha1(name.split("@", 1)[0])


# ----------------------------------------------------------------- records --- #


@dataclass
class DatasetEvent:
    """A dataset a node loaded or saved.

    Args:
        dataset: The dataset's name in the catalog.
        operation: ``"loaded"`` or ``"saved"``.
        size: Bytes of its file (Kedro-Viz's rule: 0 when it has no file), ``None``
            when not measured or when the data was ``None``.
    """

    dataset: str
    operation: str
    size: int | None = None


@dataclass
class NodeRun:
    """One node's run, as measured on the worker that ran it.

    Records are plain dataclasses, not frozen ones: the driver makes one for
    every node of a run, and a frozen dataclass's ``__init__`` took half again
    as long (``object.__setattr__`` for each field).

    Args:
        node: The node's name.
        worker: Address of the worker.
        start: When the task began on the worker, before loading inputs (seconds
            since the epoch, the worker's clock).
        end: When it ended, outputs saved or the error raised.
        run_time: Seconds spent in the node function alone (what Kedro-Viz shows
            as a node's duration); ``None`` when the function never returned.
        status: ``"success"`` or ``"failed"``.
        retries: How many times the task was retried before this run.
        error: ``str()`` of the exception, for a failed node.
        traceback: The exception's traceback, as text.
        failed_dataset: The dataset being loaded or saved when it failed, if any.
        failed_operation: ``"loading"`` or ``"saving"`` with ``failed_dataset``.
        moved_bytes: Bytes of the node's in-memory inputs that came from another
            worker.
        datasets: Datasets loaded and saved, in order.
    """

    node: str
    worker: str = ""
    start: float = 0.0
    end: float = 0.0
    run_time: float | None = None
    status: str = SUCCESS
    retries: int = 0
    error: str = ""
    traceback: str = ""
    failed_dataset: str = ""
    failed_operation: str = ""
    moved_bytes: int = 0
    datasets: tuple[DatasetEvent, ...] = field(default=())
    duration: float = field(init=False)
    """Seconds from start to end on the worker, loading and saving included."""

    def __post_init__(self) -> None:
        # A field, not a property: the run record holds it, and orjson writes a
        # dataclass's fields in C (``run_record_json``).
        self.duration = max(self.end - self.start, 0.0)

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @classmethod
    def from_message(
        cls, message: NodeMessage, retries: int = 0, moved_bytes: int = 0
    ) -> NodeRun:
        """A record from a worker's measurement, and what the driver counted."""
        return cls(
            node=message.node,
            worker=message.worker,
            start=message.start,
            end=message.end,
            run_time=message.run_time,
            status=message.status,
            retries=retries,
            error=message.error,
            traceback=message.traceback,
            failed_dataset=message.failed_dataset,
            failed_operation=message.failed_operation,
            moved_bytes=moved_bytes,
            datasets=tuple([DatasetEvent(*each) for each in message.datasets]),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeRun:
        """A record from a run record's node (``read_run_record``).

        Keys it does not know, and ``duration`` (worked out), are ignored.
        """
        known = _field_names(cls)
        values = {key: value for key, value in data.items() if key in known}
        values["datasets"] = tuple(
            DatasetEvent(d["dataset"], d["operation"], d.get("size"))
            for d in values.get("datasets", ())
        )
        return cls(**values)


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    """A dataclass's ``__init__`` arguments (``fields`` is slow for every record)."""
    return frozenset(f.name for f in fields(cls) if f.init)


# ------------------------------------------------------------- worker side --- #


def dataset_size(catalog: Any, name: str) -> int:
    """Bytes of a dataset's file, as Kedro-Viz measures them (0 without a file).

    Kedro-Viz looks at the dataset's ``filepath`` then ``_filepath`` attribute and
    asks fsspec for the size of the first that exists.
    """
    try:
        dataset = catalog.get(name)
    except Exception:  # noqa: BLE001 - a size is never worth failing a run
        return 0
    if not dataset:
        return 0
    for attr in ("filepath", "_filepath"):
        path = getattr(dataset, attr, None)
        if not path:
            continue
        try:
            import fsspec

            filesystem, fs_path = fsspec.core.url_to_fs(str(path))
            if filesystem.exists(fs_path):
                return int(filesystem.size(fs_path))
        except Exception:  # noqa: BLE001, S112
            continue
    return 0


class NodeMessage(NamedTuple):
    """A node's measurement as it travels from its worker to the driver
    (``NodeMeasure.message``, ``NodeRun.from_message``).

    A tuple, not a dict: a run sends one for every node, and msgpack packs a
    tuple as an array, without the names. A third of the bytes to send, and a
    fifth of the driver's time to unpack. The driver gets plain tuples back:
    ``NodeMessage._make`` names their items again.
    """

    node: str
    worker: str
    start: float
    end: float
    run_time: float | None
    status: str
    error: str
    traceback: str
    failed_dataset: str
    failed_operation: str
    datasets: Sequence[tuple[str, str, int | None]]
    """``DatasetEvent`` s' fields: dataset, operation, size."""
    output_nbytes: Mapping[str, int] | None = None
    """Bytes of each in-memory output (for a run record's moved bytes)."""


class NodeMeasure:
    """What ``RunMeter`` measures of one node run, inside a ``with`` block
    (``RunMeter.measure``); ``message()`` gives it as plain data.

    A class rather than a generator-based context manager: workers make one for
    every node they run.

    ``output_nbytes``: the worker's count of bytes of each in-memory output, for
    a run record's moved bytes; ``None`` when not counted.
    """

    def __init__(  # noqa: PLR0913
        self,
        node: Any,
        worker: str,
        catalog: Any,
        sizes: bool,
        files: Collection[str] | None = None,
        *,
        running: dict[int, NodeMeasure] | None = None,
        then: Callable[[NodeMeasure], None] | None = None,
    ):
        self._node = node
        self.node: str = getattr(node, "name", node)
        self.worker = worker
        self.catalog = catalog
        self.sizes = sizes and catalog is not None
        self.files = files
        self.start = time.time()
        self.end = self.start
        self.run_time: float | None = None
        self.status = SUCCESS
        self.error = ""
        self.traceback = ""
        self.datasets: list[tuple[str, str, int | None]] = []
        self.output_nbytes: dict[str, int] | None = None
        self._run_started: float | None = None
        self._io: tuple[str, str] | None = None  # (dataset, "loading"/"saving")
        self._io_failed: tuple[str, str] | None = None
        self._running = running if running is not None else {}
        self._then = then

    def __enter__(self) -> NodeMeasure:
        self._running[id(self._node)] = self
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._running.pop(id(self._node), None)
        if exc is not None:
            self._failed(exc)
        self.end = time.time()
        if self._then is not None:
            self._then(self)

    def _dataset(self, name: str, operation: str, data: Any) -> None:
        size = None
        if self.sizes and data is not None:
            # A dataset known to have no file (in memory) measures 0, as in
            # ``dataset_size``, without looking it up.
            has_file = self.files is None or name in self.files
            size = dataset_size(self.catalog, name) if has_file else 0
        self.datasets.append((name, operation, size))
        self._io = None

    def _failed(self, exc: BaseException, text: str | None = None) -> None:
        self.status = FAILED
        if not self.error:
            self.error = str(exc)
            self.traceback = text or "".join(traceback.format_exception(exc))
        if self._io_failed is None and self._io is not None:
            self._io_failed = self._io

    def message(self) -> NodeMessage:
        """The measurement as plain data: str, float, int, tuples and a dict."""
        failed_dataset, failed_operation = self._io_failed or ("", "")
        return NodeMessage(
            node=self.node,
            worker=self.worker,
            start=self.start,
            end=self.end,
            run_time=self.run_time,
            status=self.status,
            error=self.error,
            traceback=self.traceback,
            failed_dataset=failed_dataset,
            failed_operation=failed_operation,
            datasets=tuple(self.datasets),
            output_nbytes=self.output_nbytes,
        )


class RunMeter:
    """Measures the nodes a worker runs: a Kedro hook plugin for the worker's hook
    manager, registered once per run, whatever the number of threads.

    Usage on the worker, around Kedro's ``Task``::

        with meter.measure(node, catalog, worker=address) as measure:
            Task(node=node, catalog=catalog, hook_manager=manager, ...).execute()
        message = measure.message()  # also after a failure: use try/finally

    The node and dataset hooks find the measure by the node they are given, the
    very object ``Task`` was given, so several nodes may run at once in threads.
    ``measure`` records an exception and lets it go on.

    Args:
        sizes: Measure the file size of each dataset loaded and saved, as Kedro-Viz
            does (one ``stat`` per persisted dataset event).
    """

    def __init__(self, sizes: bool = True):
        self.sizes = sizes
        # The measures of the nodes running, by ``id`` of the node: a node's
        # ``name`` is a property Kedro works out at each call.
        self._running: dict[int, NodeMeasure] = {}

    def measure(
        self,
        node: Any,
        catalog: Any = None,
        worker: str = "",
        files: Collection[str] | None = None,
        then: Callable[[NodeMeasure], None] | None = None,
    ) -> NodeMeasure:
        """Measure the run of ``node`` (a Kedro node) inside a ``with`` block.

        ``files``: the only datasets of ``catalog`` that may have a file to
        measure (``None``: any). ``then``: called with the measure once the block
        has ended, also when it raised.
        """
        return NodeMeasure(
            node, worker, catalog, self.sizes, files, running=self._running, then=then
        )

    def _of(self, node: Any) -> NodeMeasure | None:
        return self._running.get(id(node))

    @hook_impl
    def before_dataset_loaded(self, dataset_name: str, node: Any) -> None:
        if measure := self._of(node):
            measure._io = (dataset_name, LOADING)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Any) -> None:
        if measure := self._of(node):
            measure._dataset(dataset_name, LOADED, data)

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, node: Any) -> None:
        if measure := self._of(node):
            measure._io = (dataset_name, SAVING)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if measure := self._of(node):
            measure._dataset(dataset_name, SAVED, data)

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        if measure := self._of(node):
            measure._run_started = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        measure = self._of(node)
        if measure and measure._run_started is not None:
            measure.run_time = time.perf_counter() - measure._run_started

    @hook_impl
    def on_node_error(self, error: Exception, node: Any) -> None:
        # The traceback as Kedro-Viz's hook takes it: from inside Kedro's handler.
        if measure := self._of(node):
            measure._failed(error, traceback.format_exc())


# ------------------------------------------------------------- driver side --- #


def node_runs(
    messages: Iterable[NodeMessage], moved_bytes: Mapping[str, int] | None = None
) -> list[NodeRun]:
    """Records from the workers' messages, in the order the nodes started.

    Args:
        messages: ``NodeMeasure.message()`` of each node run, in the order they
            arrived. A node run more than once (Dask's ``retries``, or a worker
            lost) has one message a run: its last run counts, the ones before
            are its retries.
        moved_bytes: Bytes of in-memory inputs moved to each node's worker (see
            ``moved_input_bytes``).
    """
    last: dict[str, NodeMessage] = {}
    runs: dict[str, int] = {}
    for message in messages:
        last[message.node] = message
        runs[message.node] = runs.get(message.node, 0) + 1
    moved_bytes = moved_bytes or {}
    records = [
        NodeRun.from_message(message, runs[name] - 1, moved_bytes.get(name, 0))
        for name, message in last.items()
    ]
    return sorted(records, key=lambda record: record.start)


def moved_input_bytes(messages: Iterable[NodeMessage]) -> dict[str, int]:
    """Bytes of in-memory inputs each node received from another worker.

    An input counts when it is another node's in-memory output (its message's
    ``output_nbytes``, the size of what it returned) made on another worker. For
    a node run more than once (retries), its last run counts, as in ``node_runs``.
    """
    last = {message.node: message for message in messages}
    made = {
        name: (message.worker, size)
        for message in last.values()
        for name, size in (message.output_nbytes or {}).items()
    }
    moved = dict.fromkeys(last, 0)
    for message in last.values():
        for name, operation, _ in message.datasets:
            worker, size = made.get(name, (message.worker, 0))
            if operation == LOADED and worker != message.worker:
                moved[message.node] += size
    return moved


def _iso(moment: float | datetime) -> str:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.astimezone()
        return moment.astimezone(UTC).isoformat()
    return datetime.fromtimestamp(moment, tz=UTC).isoformat()


def _error_text(error: BaseException | str | None) -> tuple[str, str]:
    if error is None:
        return "", ""
    if isinstance(error, BaseException):
        return str(error), "".join(traceback.format_exception(error))
    return str(error), ""


def _dataset_event(event: DatasetEvent) -> dict[str, Any]:
    """Kedro-Viz's ``after_dataset_loaded`` or ``after_dataset_saved`` event."""
    entry = {
        "event": f"after_dataset_{event.operation}",
        "dataset": event.dataset,
        "node_id": dataset_id(event.dataset),
        "status": "Available",
    }
    if event.size is not None:
        entry["size"] = event.size
    return entry


def _node_run_event(record: NodeRun, ident: str) -> dict[str, Any] | None:
    """The ``after_node_run`` event, or ``None`` when the function never returned.

    A record measured without hooks (no ``run_time``) that did not fail counts the
    whole task as the node's duration.
    """
    if record.run_time is not None:
        duration = record.run_time
    elif not record.failed:
        duration = record.duration
    else:
        return None
    return {
        "event": "after_node_run",
        "node": record.node,
        "node_id": ident,
        "duration": duration,
        "status": SUCCESS,
    }


def _node_error_event(record: NodeRun, ident: str) -> dict[str, Any]:
    """The ``on_node_error`` event of a failed node."""
    return {
        "event": "on_node_error",
        "node": record.node,
        "node_id": ident,
        "error": record.error,
        "timestamp": _iso(record.end),
        "traceback": record.traceback,
    }


def _shows_node_error(record: NodeRun, first_failure: NodeRun | None) -> bool:
    """Whether Kedro-Viz would record a node error for this record.

    It does only when the function raised; a dataset that failed to load or save
    shows in the pipeline error instead. A run has only one pipeline error, so
    further such failures show as node errors.
    """
    if not record.failed:
        return False
    return not record.failed_dataset or record is not first_failure


def _node_events(
    record: NodeRun, ident: str, first_failure: NodeRun | None
) -> list[dict[str, Any]]:
    """One node's events, in order: loads, its run or error, saves."""
    events = [_dataset_event(d) for d in record.datasets if d.operation == LOADED]
    if (run := _node_run_event(record, ident)) is not None:
        events.append(run)
    if _shows_node_error(record, first_failure):
        events.append(_node_error_event(record, ident))
    events.extend(_dataset_event(d) for d in record.datasets if d.operation == SAVED)
    return events


def _first_failure(ordered: Sequence[NodeRun]) -> NodeRun | None:
    """The failed record that ended first (the first in ``ordered`` on a tie)."""
    return min((r for r in ordered if r.failed), key=lambda r: r.end, default=None)


def _where_it_failed(
    records: Sequence[NodeRun], pipeline: Any, first_failure: NodeRun | None
) -> dict[str, Any]:
    """What a pipeline error names: the failed node and dataset, or else the first
    node not started."""
    if first_failure is None:
        started = {record.node for record in records}
        waiting = [n for n in pipeline.nodes if n.name not in started]
        if not waiting:
            return {}
        return {
            "node": waiting[0].name,
            "node_id": node_id(waiting[0]),
            "status": "not_started",
        }
    where: dict[str, Any] = {}
    if first_failure.failed_dataset:
        where["dataset"] = first_failure.failed_dataset
        where["operation"] = first_failure.failed_operation
    nodes = {n.name: n for n in pipeline.nodes}
    if first_failure.node in nodes:
        where["node"] = first_failure.node
        where["node_id"] = node_id(nodes[first_failure.node])
    return where


def _pipeline_error_event(
    records: Sequence[NodeRun],
    pipeline: Any,
    first_failure: NodeRun | None,
    error: BaseException | str | None,
    end: float | datetime,
) -> dict[str, Any]:
    """The ``on_pipeline_error`` event: the run's error, else its first failure's."""
    message, text = _error_text(error)
    if first_failure is not None:
        message = message or first_failure.error
        text = text or first_failure.traceback
    return {
        "event": "on_pipeline_error",
        "error": message,
        "timestamp": _iso(end),
        "traceback": text,
        **_where_it_failed(records, pipeline, first_failure),
    }


def viz_events(
    records: Sequence[NodeRun],
    pipeline: Any,
    *,
    start: float | datetime,
    end: float | datetime,
    error: BaseException | str | None = None,
) -> list[dict[str, Any]]:
    """The events Kedro-Viz's hook would have recorded for this run.

    Args:
        records: The run's records.
        pipeline: The Kedro pipeline that ran (for node ids, and for the node not
            started that Kedro-Viz names when an error happened outside any node).
        start: When the run started (driver's clock).
        end: When it ended or failed.
        error: The exception the run raised, if it failed.
    """
    nodes = {n.name: n for n in pipeline.nodes}
    ordered = sorted(records, key=lambda r: (r.start, r.end))
    first_failure = _first_failure(ordered)
    events: list[dict[str, Any]] = [
        {"event": "before_pipeline_run", "timestamp": _iso(start)}
    ]
    for record in ordered:
        ident = node_id(nodes[record.node]) if record.node in nodes else record.node
        events.extend(_node_events(record, ident, first_failure))
    if error is None and first_failure is None:
        events.append({"event": "after_pipeline_run", "timestamp": _iso(end)})
    else:
        events.append(
            _pipeline_error_event(records, pipeline, first_failure, error, end)
        )
    return events


def _kedro_viz_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("kedro_viz") is not None


def viz_events_wanted(run_params: Mapping[str, Any] | None = None) -> bool:
    """Whether Kedro-Viz would record this run, were it a ``SequentialRunner`` one.

    False when Kedro-Viz is not installed, when the project disables its hooks
    (``DISABLE_HOOKS_FOR_PLUGINS``), and for the partial runs Kedro-Viz skips, by
    Kedro-Viz's own rule. ``run_params`` are those Kedro passes to pipeline hooks;
    without them the run counts as a full one.
    """
    if not _kedro_viz_installed():
        return False
    from kedro.framework.project import settings

    disabled = getattr(settings, "DISABLE_HOOKS_FOR_PLUGINS", ()) or ()
    if "kedro-viz" in disabled:
        return False
    if run_params is None:
        return True
    from kedro_viz.integrations.kedro.hooks_utils import is_default_run

    return bool(is_default_run(dict(run_params)))


class _NotAboutThisRunner(logging.Filter):
    """Drops Kedro-Viz's warning that it records only ``SequentialRunner`` runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(
            "Workflow tracking is disabled for non-sequential runners"
        )


def quiet_kedro_viz_runner_warning() -> None:
    """Keep Kedro-Viz from warning, on each run, that it does not record it.

    Kedro-Viz's hook warns in ``before_pipeline_run``, before the runner starts, so
    call this when the runner is created. Its warning about partial runs stays: those
    are not recorded either. Calling it again changes nothing.
    """
    logger = logging.getLogger("kedro_viz.integrations.kedro.run_hooks")
    if not any(isinstance(f, _NotAboutThisRunner) for f in logger.filters):
        logger.addFilter(_NotAboutThisRunner())


def viz_events_path(project_path: str | Path) -> Path:
    """The file Kedro-Viz reads for a project's last run."""
    return Path(project_path) / VIZ_EVENTS_FILE


def write_viz_events(
    records: Sequence[NodeRun],
    pipeline: Any,
    path: str | Path,
    *,
    start: float | datetime,
    end: float | datetime,
    error: BaseException | str | None = None,
    run_params: Mapping[str, Any] | None = None,
) -> Path | None:
    """Write the run for Kedro-Viz's Workflow view, as its hook would.

    Does nothing, and returns ``None``, when ``viz_events_wanted(run_params)`` is
    false (Kedro-Viz not installed, disabled, or a partial run): the previous
    run's file then stays, as it does after such a ``SequentialRunner`` run.

    Args:
        records: The run's records.
        pipeline: The Kedro pipeline that ran.
        path: The events file, ``viz_events_path(project_path)``.
        start: When the run started.
        end: When it ended or failed.
        error: The exception the run raised, if it failed.
        run_params: The run's parameters, as Kedro passes them to pipeline hooks.

    Returns:
        The file written, or ``None``.
    """
    if not viz_events_wanted(run_params):
        return None
    events = viz_events(records, pipeline, start=start, end=end, error=error)
    # No indent: only Kedro-Viz reads it.
    return write_file(Path(path), orjson.dumps(events))


def write_file(path: Path, *parts: bytes | memoryview) -> Path:
    """Write a file whole, from ``parts`` in order: readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per process and thread: two writers of the same file
    # (runs of two projects keeping the same timeline page) never share one.
    partial = path.with_name(
        f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial"
    )
    try:
        with partial.open("wb") as file:
            file.writelines(parts)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def run_record(
    records: Sequence[NodeRun],
    *,
    run_id: str | None = None,
    start: float | datetime | None = None,
    end: float | datetime | None = None,
    error: BaseException | str | None = None,
) -> dict[str, Any]:
    """The run record as plain data: what ``run_record_json`` writes, its nodes
    still ``NodeRun`` s, in the order they started."""
    message, _ = _error_text(error)
    failed = bool(message) or any(r.failed for r in records)
    return {
        "format": RUN_RECORD_FORMAT,
        "version": RUN_RECORD_VERSION,
        "run_id": run_id,
        "start": None if start is None else _iso(start),
        "end": None if end is None else _iso(end),
        "status": FAILED if failed else SUCCESS,
        "error": message,
        "workers": sorted({r.worker for r in records}),
        "nodes": sorted(records, key=lambda r: r.start),
    }


def run_record_json(
    records: Sequence[NodeRun],
    *,
    run_id: str | None = None,
    start: float | datetime | None = None,
    end: float | datetime | None = None,
    error: BaseException | str | None = None,
) -> bytes:
    """The JSON run record (``run_record``), indented.

    Written by orjson from the records' fields, in C, in one call: the run's end
    writes it while the user waits, and Python's json encoder took ~10 µs a node.
    """
    data = run_record(records, run_id=run_id, start=start, end=end, error=error)
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def write_run_record(
    records: Sequence[NodeRun],
    path: str | Path,
    *,
    run_id: str | None = None,
    start: float | datetime | None = None,
    end: float | datetime | None = None,
    error: BaseException | str | None = None,
) -> Path:
    """Write the JSON run record (``run_record_json``): for each node its worker,
    start and end (seconds since the epoch, worker's clock), duration, run time,
    retries, moved bytes, status, error and datasets. ``read_run_record`` reads
    it back."""
    record = run_record_json(records, run_id=run_id, start=start, end=end, error=error)
    return write_file(Path(path), record)


def read_run_record(path: str | Path) -> list[NodeRun]:
    """The node records of a file ``write_run_record`` wrote."""
    data = orjson.loads(Path(path).read_bytes())
    if data.get("format") != RUN_RECORD_FORMAT:
        raise ValueError(f"{path} is not a run record of a Dask run.")
    return [NodeRun.from_dict(node) for node in data["nodes"]]


_TIMELINE_TOOLTIPS = [
    ("node", "@node"),
    ("worker", "@worker"),
    ("status", "@status"),
    ("duration", "@duration"),
    ("node function", "@run_time"),
    ("retries", "@retries"),
    ("inputs moved (bytes)", "@moved"),
    ("error", "@error"),
]
"""What hovering over a node's bar shows: a column of ``_TIMELINE_COLUMNS`` each."""

_TIMELINE_COLUMNS = (
    *("node", "worker", "left", "right", "color", "hatch"),  # the bar
    *("duration", "run_time", "status", "retries", "moved", "error"),  # its tooltip
)
"""The timeline's data source: a row per node, worked out from the run record
when the page opens (``_FILL_TIMELINE``)."""


# A timeline's height in pixels: title and axis, and each worker's row.
_BASE_HEIGHT, _ROW_HEIGHT = 120, 60


def _timeline_figure(title: str) -> Any:
    """An empty bokeh figure, time along x; its rows (one per worker) and its
    height come with the run's data (``_FILL_TIMELINE``)."""
    from bokeh.plotting import figure

    return figure(
        title=title,
        y_range=[],
        height=_BASE_HEIGHT + _ROW_HEIGHT,
        sizing_mode="stretch_width",
        x_axis_label="seconds since the first node started",
        tools="xpan,xwheel_zoom,reset,save",
    )


def _draw_nodes(plot: Any, source: Any) -> None:
    """A bar per node, its name on it, its details on hover."""
    from bokeh.models import HoverTool, LabelSet

    plot.hbar(
        y="worker",
        left="left",
        right="right",
        height=0.6,
        fill_color="color",
        hatch_pattern="hatch",
        hatch_color="white",
        line_color="black",
        source=source,
    )
    labels = LabelSet(
        x="left",
        y="worker",
        text="node",
        source=source,
        x_offset=2,
        y_offset=-6,
        text_font_size="9pt",
    )
    plot.add_layout(labels)
    plot.add_tools(HoverTool(tooltips=_TIMELINE_TOOLTIPS))


_DATA_ID = "kedro-dask-timeline-data"
"""The id of the page's element that holds the run record."""
_DATA_MARK = b"KEDRO_DASK_TIMELINE_DATA"
"""Stands for the run record in the page ``timeline_page`` makes."""
_DATA_ELEMENT = f'<script type="application/json" id="{_DATA_ID}">'.encode()

# Runs in the page once bokeh has drawn the empty figure: the run record, from
# the page's own JSON element, into the figure (names: ``_make_page``'s args).
# Nodes in the order they started, a row per worker, failed ones red and hatched.
_FILL_TIMELINE = f"""
const nodes = JSON.parse(document.getElementById("{_DATA_ID}").textContent).nodes;
const origin = nodes.reduce((first, n) => Math.min(first, n.start), Infinity);
const failed = nodes.map(n => n.status === "{FAILED}");
const seconds = s => s === null || s === undefined ? "" : `${{s.toFixed(3)}} s`;
const data = {{
  node: nodes.map(n => n.node),
  worker: nodes.map(n => n.worker || "?"),
  left: nodes.map(n => n.start - origin),
  right: nodes.map(n => n.start - origin + Math.max(n.duration, 1e-6)),
  color: failed.map(f => f ? "#d62728" : "#1f77b4"),
  hatch: failed.map(f => f ? "x" : " "),
  duration: nodes.map(n => seconds(n.duration)),
  run_time: nodes.map(n => seconds(n.run_time)),
  status: nodes.map(n => n.status),
  retries: nodes.map(n => n.retries),
  moved: nodes.map(n => n.moved_bytes),
  error: nodes.map(n => (n.error || "").split(/\\r\\n|\\r|\\n/)[0]),
}};
const workers = [...new Set(data.worker)].sort().reverse();
plot.y_range.factors = workers;
plot.height = {_BASE_HEIGHT} + {_ROW_HEIGHT} * workers.length;
source.data = data;
"""


def timeline_page(title: str = "Dask run") -> bytes:
    """The timeline's page without a run record (``write_timeline`` adds one).

    Bokeh lays out and serialises a figure in tens of milliseconds whatever it
    shows, after a second of importing, and the data is only known once the run
    has ended. So the page holds bokeh's code, the figure with an empty data
    source, and a callback that fills the source from the run record, a JSON
    element of the page, when it opens: the same for every run. It is made once
    for a version of bokeh and of this module, and kept in the user's cache
    directory (``_cached_page``); the run's end only writes the element.
    """
    try:
        cached = _cached_page(title)
    except Exception:  # noqa: BLE001 - no cache directory (no home): make it
        return _make_page(title)
    page = _read_page(cached)
    if page is None:
        page = _make_page(title)
        with contextlib.suppress(OSError):  # no cache: the next run makes it again
            _keep_page(cached, page)
    return page


def _cached_page(title: str) -> Path:
    """Where the page for ``title`` is kept: a name that changes with bokeh's
    version and with this module, under ``$XDG_CACHE_HOME`` (``~/.cache``)."""
    from importlib.metadata import version

    made_by = f"{version('bokeh')}\0{title}\0".encode() + Path(__file__).read_bytes()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    name = f"timeline-{hashlib.sha1(made_by).hexdigest()[:16]}.html"
    return Path(cache) / "kedro-dask" / name


def _read_page(path: Path) -> bytes | None:
    """A kept page, or ``None`` (none kept, unreadable or not a page)."""
    try:
        page = path.read_bytes()
    except OSError:
        return None
    whole = _DATA_ELEMENT + _DATA_MARK in page and page.rstrip().endswith(b"</html>")
    return page if whole else None


def _keep_page(path: Path, page: bytes) -> None:
    """Keep ``page`` at ``path`` whole (``write_file``), in place of the pages
    kept for other versions."""
    write_file(path, page)
    for other in path.parent.glob("timeline-*.html"):
        if other != path:
            other.unlink(missing_ok=True)


def _make_page(title: str) -> bytes:
    """Bokeh's page of the empty figure, the run record's element in its head."""
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.events import DocumentReady
    from bokeh.models import ColumnDataSource, CustomJS
    from bokeh.resources import INLINE

    source = ColumnDataSource({column: [] for column in _TIMELINE_COLUMNS})
    plot = _timeline_figure(title)
    _draw_nodes(plot, source)
    document = Document()
    document.add_root(plot)
    document.js_on_event(
        DocumentReady,
        CustomJS(args={"plot": plot, "source": source}, code=_FILL_TIMELINE),
    )
    page = file_html(document, INLINE, title).encode()
    head_end = page.index(b"</head>")
    element = _DATA_ELEMENT + _DATA_MARK + b"</script>\n"
    return page[:head_end] + element + page[head_end:]


def prepare_timeline(title: str = "Dask run") -> concurrent.futures.Future[bytes]:
    """Have the timeline's page (``timeline_page``) in a background thread, while
    the run goes on: read from the cache, or made, bokeh's import included."""
    page: concurrent.futures.Future[bytes] = concurrent.futures.Future()

    def make() -> None:
        try:
            page.set_result(timeline_page(title))
        except BaseException as exc:  # noqa: BLE001 - handed to the writer
            page.set_exception(exc)

    threading.Thread(target=make, name="kedro-dask-timeline-page", daemon=True).start()
    return page


def write_timeline(
    records: Sequence[NodeRun],
    path: str | Path,
    *,
    title: str = "Dask run",
    page: bytes | None = None,
    record_json: bytes | None = None,
) -> Path:
    """Write the run as a timeline: one row per worker, a bar per node from its start
    to its end, failed nodes red and hatched, details on hover.

    The page is a single HTML file with bokeh's JavaScript inlined: it opens from
    disk, offline, without a server. It holds the run record, from which it draws
    the bars when it opens: ``record_json``, ``run_record_json(records)`` when the
    caller has made it already. ``page``: ``timeline_page(title)`` made
    beforehand (``prepare_timeline``), else made now.
    """
    if record_json is None:
        record_json = run_record_json(records)
    # Inside a script element, "<" only ever appears in JSON strings, escaped:
    # no node name or error can end the element.
    data = record_json.replace(b"<", b"\\u003c")
    page = timeline_page(title) if page is None else page
    at = page.index(_DATA_ELEMENT + _DATA_MARK) + len(_DATA_ELEMENT)
    whole = memoryview(page)
    return write_file(Path(path), whole[:at], data, whole[at + len(_DATA_MARK) :])
