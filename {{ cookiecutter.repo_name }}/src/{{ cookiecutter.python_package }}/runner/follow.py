"""The driver's side of a run while the cluster runs it.

``RunFollower`` keeps Kedro's runner contract as tasks finish: each node's log
lines and "Completed node" lines, ``confirm`` and ``release`` on the driver's
catalog, the progress display and, on failure, Kedro's resume hint.
``WorkerWatch`` is a separate job: it ends a run whose workers are all gone,
rather than let it wait for ever, and says which nodes Dask runs again because
a worker left holding their in-memory outputs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any

from .plugins import by_value, unrunnable

if TYPE_CHECKING:
    from distributed import Client
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node

    from .node_logs import NodeLogs
    from .services import NodeProgress

logger = logging.getLogger(__name__)

RESOURCES_ADVICE = (
    "Start workers with --resources (e.g. kedro dask worker --resources GPU=1) "
    "or change dask_runner.node_options."
)
"""What to do when no worker offers the resources a node asks for."""


def workers_offer(workers: Iterable[Mapping[str, Any]]) -> str:
    """What ``workers`` (the scheduler's worker infos) offer, for a message: "the
    2 worker(s) offer {}, {'GPU': 1}"."""
    workers = list(workers)
    offers = sorted({str(dict(w.get("resources") or {})) for w in workers})
    return f"the {len(workers)} worker(s) offer {', '.join(offers) or 'nothing'}"


class RunFollower:
    """Does, for each node the cluster finished, what ``SequentialRunner`` does
    after running it.

    Args:
        pipeline: The pipeline being run.
        catalog: The driver's catalog.
        node_logs: The nodes' log records, sent by the workers.
        progress: The progress display.
        logger: The runner's logger, which Kedro's lines come from.
        resume_hint: Logs Kedro's resume hint, given the nodes that finished.
    """

    def __init__(  # noqa: PLR0913
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        node_logs: NodeLogs,
        progress: NodeProgress,
        logger: logging.Logger,
        resume_hint: Callable[[set[Node]], None],
    ):
        self._catalog = catalog
        self._node_logs = node_logs
        self.progress = progress
        self._logger = logger
        self._resume_hint = resume_hint
        self._releaser = _Releaser(pipeline, catalog)
        self._total = len(pipeline.nodes)
        self.done: set[Node] = set()

    def node_done(self, node: Node) -> None:
        """``node`` ran: show its lines, confirm and release as Kedro does."""
        self.done.add(node)
        self.progress.node_done()
        self._node_logs.emit(node.name)
        self._logger.info("Completed node: %s", node.name)
        self._logger.info("Completed %d out of %d tasks", len(self.done), self._total)
        for name in node.confirms:
            self._catalog.confirm(name)
        self._releaser.after(node)

    def task_failed(self, nodes: list[Node], failed_node: str | None) -> None:
        """The task running ``nodes`` failed at ``failed_node`` (``None``: before
        any node ran): the nodes before it finished."""
        names = [node.name for node in nodes]
        finished = names.index(failed_node) if failed_node in names else 0
        for node in nodes[:finished]:
            self.node_done(node)
        self.progress.node_failed()
        self._node_logs.emit_all()
        self._resume_hint(self.done)


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


class WorkerWatch:
    """Fails the run, instead of letting it hang, once every worker is gone, or
    once no worker left can take a node (the resources it asks for went with
    the workers that left).

    A thread asks the scheduler what its workers are processing and which of
    the run's tasks no worker can take; when either lasts ``worker_wait``
    seconds, it records why and calls back to cancel the run. It also tells
    ``progress`` how many nodes are running, and logs the nodes whose in-memory
    outputs a leaving worker took with it: Dask runs those again where the
    outputs are still needed (the scheduler's ``remove-worker`` event on its
    ``all`` topic names the lost keys).

    Args:
        client: The run's client.
        worker_wait: Seconds without any worker before the run fails.
        token: The run's token, in its task keys.
        progress: The progress display.
        nodes_of: The nodes each task key runs.
        interval: Seconds between two looks at the scheduler.
    """

    def __init__(  # noqa: PLR0913
        self,
        client: Client,
        worker_wait: float,
        token: str,
        progress: NodeProgress,
        nodes_of: Mapping[Any, Sequence[Node]],
        interval: float = 1.0,
    ):
        self._client = client
        self._token = token
        self._nodes_of = nodes_of
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

    def __enter__(self) -> WorkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _no_worker_can_take(self, stuck: Mapping[Any, Mapping[str, float]]) -> str:
        workers = self._client.scheduler_info(n_workers=-1)["workers"]
        asked = "; ".join(
            f"{', '.join(repr(n.name) for n in self._nodes_of.get(key, ())) or key} "
            f"need {dict(resources) or 'a worker'}"
            for key, resources in stuck.items()
        )
        return (
            f"No Dask worker left on the scheduler at {self._client.scheduler.address} "
            f"can take node(s) {asked}: {workers_offer(workers.values())}, and none "
            f"that could came within {self._worker_wait:g} s "
            f"(client_args.worker_wait). {RESOURCES_ADVICE}"
        )

    def _say_what_left_with(self, workers: set[str]) -> None:
        """Log the nodes whose in-memory outputs ``workers`` held as they left.

        Read from the scheduler's ``all`` topic once workers are seen gone, not
        subscribed to: the scheduler would send this client its own departure
        as it closes, and log that it could not.
        """
        for _, message in self._client.get_events("all"):
            if (
                isinstance(message, dict)
                and message.get("action") == "remove-worker"
                and message.get("worker") in workers
            ):
                self._say_lost(message)

    def _say_lost(self, message: Mapping[str, Any]) -> None:
        lost = sorted(
            node.name
            for key in message.get("lost-computed-tasks") or ()
            for node in self._nodes_of.get(key, ())
        )
        if lost:
            logger.warning(
                "Dask worker %s left holding the in-memory outputs of node(s) %s: "
                "Dask runs them again where those outputs are still needed; "
                "their persisted outputs are kept.",
                message.get("worker", "?"),
                ", ".join(repr(name) for name in lost),
            )

    def _watch(self) -> None:
        since = stuck_since = None
        try:
            workers = set(self._client.processing())
        except Exception:  # noqa: BLE001 - the client is closing; the run ends
            return
        while not self._stop.wait(self._interval):
            try:
                processing = self._client.processing()
                if left := workers - processing.keys():
                    self._say_what_left_with(left)
                workers = set(processing)
                with by_value():
                    stuck = self._client.run_on_scheduler(unrunnable, token=self._token)
            except Exception:  # noqa: BLE001 - the client is closing; the run ends
                return
            stuck_since = (stuck_since or time.monotonic()) if stuck else None
            if stuck_since and time.monotonic() - stuck_since >= self._worker_wait:
                self.lost = self._no_worker_can_take(stuck)
                self._cancel()
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
