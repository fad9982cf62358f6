"""What a run leaves behind to look at: Kedro-Viz's Workflow view, a run record
and a timeline.

The workers measure each node (``run_record.RunMeter``: start, end, run time,
status, error, datasets) and send the measurement to the driver in Dask events,
many measurements an event (``measured``, through ``node_logs.send``). The driver
collects them as they arrive (``RunRecorder``) and, when the run ends, successful
or not, has the workers send the rest, then writes:

- the events file Kedro-Viz's Workflow view reads, as Kedro-Viz's own hook writes
  it for ``SequentialRunner`` runs, when kedro-viz is installed and the run is
  one Kedro-Viz records (not a partial run: ``RunParamsHook`` tells);
- on request (``dask_runner.run_record: <path>.json``), the JSON run record and
  its timeline (``<path>.html``, a page that opens without a server).

The files are written by the driver: workers may not share its disk. They are
written in a thread of their own while the runner unships its code and closes
its connection or its LocalCluster, and the run returns once they are there
(``RunRecorder.wait_written``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import logging
import queue
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.utils import find_kedro_project

from .compat import start_on_workers
from .node_logs import drain, drained_by, messages_of, send
from .run_record import (
    NodeMeasure,
    NodeMessage,
    NodeRun,
    RunMeter,
    moved_input_bytes,
    node_runs,
    prepare_timeline,
    run_record_json,
    viz_events_path,
    viz_events_wanted,
    write_file,
    write_timeline,
    write_viz_events,
)

if TYPE_CHECKING:
    from distributed import Client
    from kedro.pipeline import Node, Pipeline

logger = logging.getLogger(__name__)

# Seconds the driver waits, when a run ends, for the measurements workers hold.
_DRAIN_TIMEOUT = 10.0


def measured(
    meter: RunMeter | None,
    topic: str | None,
    node: Node,
    catalog: Any,
    files: Collection[str] | None = None,
) -> AbstractContextManager[NodeMeasure | None]:
    """On a worker: measure a node run and send the measurement on ``topic``,
    also when the node fails; nothing when the run records nothing.

    ``files``: the datasets of ``catalog`` that may have a file to measure (the
    node's persisted datasets; ``None``: any).

    Returns:
        A context manager giving the node's measure, to which the caller may add
        ``output_nbytes``; or ``None`` when nothing is measured.
    """
    if meter is None or topic is None:
        return contextlib.nullcontext()
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # not on a worker (a unit test): nothing to send it to
        return contextlib.nullcontext()

    def sent(measure: NodeMeasure) -> None:
        send(worker, topic, measure.message(), later=True)

    return meter.measure(node, catalog, worker.address, files, then=sent)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the run's files are written.

    Writing builds a few objects per node, most freed as soon as they are used;
    with the collector on, they trigger collections of the driver's whole heap
    (Kedro, Dask, the project's libraries), a full one often enough: more than
    the writing itself after a large run.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class RunRecorder:
    """The driver's side: collects the nodes' measurements as they arrive and,
    when the run ends, writes the run's files.

    A subscription to the run's topic, not the scheduler's event log at the end:
    the log keeps only the last ``distributed.admin.low-level-log-length`` (1000)
    events of a topic. Workers hold measurements back to send many in one event;
    when the run ends, each is asked to send what it holds, then a mark
    (``node_logs.drain``), on the stream its earlier events took: once every
    mark is in, the driver holds every measurement of the run.

    Args:
        client: The run's client.
        topic: The Dask event topic the workers send measurements on, or ``None``
            when the run records nothing (``wanted`` is false).
        pipeline: The pipeline being run.
        run_params: The run's ``run_params`` (``run_params_of``).
        record_path: Where to write the JSON run record (the timeline goes next
            to it, ``.html``), or ``None``.
    """

    def __init__(
        self,
        client: Client,
        topic: str | None,
        pipeline: Pipeline,
        run_params: Mapping[str, Any] | None,
        record_path: str | None,
    ):
        self._client = client
        self._topic = topic
        self._pipeline = pipeline
        self._run_params = run_params
        self._record_path = record_path
        self._start = time.time()
        self._arrived: queue.SimpleQueue[tuple[float, dict[str, Any]]] = (
            queue.SimpleQueue()
        )
        self._received: list[tuple[float, dict[str, Any]]] = []
        self._drain_answers: concurrent.futures.Future[dict[str, Any]] | None = None
        self._writer: threading.Thread | None = None
        # What to log, and at which level, once the files are written.
        self._written: list[tuple[int, str]] = []
        # The timeline's page, made while the run goes on (with ``record_path``).
        self._timeline_page: concurrent.futures.Future[str] | None = None

    @staticmethod
    def wanted(run_params: Mapping[str, Any] | None, record_path: str | None) -> bool:
        """Whether a run measures its nodes: for Kedro-Viz or for a record."""
        return bool(record_path) or viz_events_wanted(run_params)

    def __enter__(self) -> RunRecorder:
        if self._topic is not None:
            self._client.subscribe_topic(self._topic, self._arrived.put)
        if self._record_path:
            self._timeline_page = prepare_timeline()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._topic is None:
            return
        if not isinstance(exc, KeyboardInterrupt):
            self._drain()
        with contextlib.suppress(Exception):  # e.g. the scheduler is gone
            self._client.unsubscribe_topic(self._topic)
        if isinstance(exc, KeyboardInterrupt):
            return
        # Everything is collected: the files are written while the runner
        # unships its code and closes its connection or cluster (round trips,
        # a LocalCluster's shutdown), not before (``wait_written``).
        self._writer = threading.Thread(
            target=self._write_safely,
            args=(exc, time.time()),
            name="kedro-dask-run-files",
        )
        self._writer.start()

    def wait_written(self) -> None:
        """Return once the run's files are written, and say what was written;
        the runner calls it once its connection or cluster has closed."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        for level, message in self._written:
            logger.log(level, message)
        self._written.clear()

    def _write_safely(self, error: BaseException | None, end: float) -> None:
        try:
            with _collector_paused():
                self._write(error, end)
        except Exception as write_exc:  # noqa: BLE001 - never hide the run's result
            self._written.append(
                (logging.WARNING, f"Could not write the run's record: {write_exc}")
            )

    def _write(self, error: BaseException | None, end: float) -> None:
        records = self._records()
        project = find_kedro_project(Path.cwd())
        if project is not None:
            write_viz_events(
                records,
                self._pipeline,
                viz_events_path(project),
                start=self._start,
                end=end,
                error=error,
                run_params=self._run_params,
            )
        if self._record_path:
            path = Path(self._record_path)
            record = run_record_json(records, start=self._start, end=end, error=error)
            write_file(path, record)
            timeline = path.with_suffix(".html")
            page = self._timeline_page.result() if self._timeline_page else None
            write_timeline(records, timeline, page=page, record_json=record)
            self._written.append(
                (logging.INFO, f"Run record: {path}, timeline: {timeline}")
            )

    def all_tasks_finished(self) -> None:
        """Ask the workers for what they hold as soon as the run's last task has
        finished, not after the run's end: by then Dask is releasing the run's
        results, and the request waited behind ~0.1 ms of the scheduler's and
        the workers' work per task: 60 ms after a 500-node fan-out, against 6 ms
        for the same request at the last task's end."""
        if self._topic is not None:
            self._ask_workers()

    def _ask_workers(self) -> concurrent.futures.Future[dict[str, Any]]:
        """Have every worker send the measurements it holds, then a mark; once."""
        if self._drain_answers is None:
            self._drain_answers = start_on_workers(
                self._client, drain, self._topic, timeout=_DRAIN_TIMEOUT
            )
        return self._drain_answers

    def _drain(self) -> None:
        """Have every worker send the measurements it still holds (asked now
        unless ``all_tasks_finished`` asked); wait for the marks that say they
        all arrived (at most ``_DRAIN_TIMEOUT`` seconds)."""
        if self._client.status != "running":  # the scheduler is gone: the run
            return  # fails saying so; the record keeps what arrived
        deadline = time.monotonic() + _DRAIN_TIMEOUT
        try:
            answers = self._ask_workers().result(timeout=_DRAIN_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - write what came
            logger.warning("The run's record may miss nodes: %s", exc or repr(exc))
            return
        waiting = {a for a in answers.values() if isinstance(a, str)}
        while waiting and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(queue.Empty):
                event = self._arrived.get(timeout=left)
                self._received.append(event)
                waiting.discard(drained_by(event))
        missed = {
            address: f"{type(answer).__name__}: {answer}"
            for address, answer in answers.items()
            if not isinstance(answer, str)
        }
        missed.update(dict.fromkeys(waiting, f"no answer within {_DRAIN_TIMEOUT} s"))
        if missed:
            logger.warning(
                "The run's record may miss nodes of Dask worker(s) %s",
                "; ".join(f"{address} ({why})" for address, why in missed.items()),
            )

    def _records(self) -> list[NodeRun]:
        while True:
            try:
                self._received.append(self._arrived.get_nowait())
            except queue.Empty:
                break
        messages = [
            NodeMessage._make(message)
            for event in self._received
            for message in messages_of(event)
        ]
        if not self._record_path:  # only the run record counts moved bytes
            return node_runs(messages)
        return node_runs(messages, moved_bytes=moved_input_bytes(messages))
