"""What nodes log on the workers, shown by the driver as ``SequentialRunner`` would.

A node run writes a few log records: Kedro's "Loading data from ...", "Running
node: ...", "Saving data to ..." and whatever the node logs itself. Rendering one
with the project's rich console handler costs a millisecond or two, more than the
Dask task that runs a small node, and a worker's console is not where the user
looks. So on a worker the records of the loggers a node run writes to (``kedro``
and the project package) are only collected, not handled, and sent to the driver
in one event when the node ends (``collect``). The driver hands them to its own
loggers, configured by the project's ``conf/logging.yml``, right before it logs
the node as completed (``NodeLogs``): the console reads as ``SequentialRunner``'s.

A node task's messages to the driver (its log records here, its measurement in
``recording``) leave through ``send``: a worker's ``log_event`` called from a task
thread wakes the worker's event loop for each message, a quarter of a millisecond
a node (``benchmarks/record_cost.py``). ``send`` leaves them in the worker's
``_Outbox``, which hands them to the scheduler when the loop next handles a task
transition: the node task's own end at the latest, so they still arrive before
its result or error, on the same stream. Messages the driver needs only when the
run ends (``later``: measurements) wait up to a quarter of a second, for many to
go in one event, since each event costs the worker, the scheduler and the driver
more than the message does; when the run ends the driver has each worker send
what it still holds (``drain``) and waits for the worker's mark that nothing is
left.

A message travels packed (msgpack bytes, packed by ``send`` on the task's
thread, unpacked by ``messages_of``). Dask measures (``sizeof``, a walk through
every nested dict and list) and encodes each batch of messages on the worker's
event loop, on the scheduler, and again on the way to the driver; a node's log
records as nested dicts cost more there than the node task itself. Bytes cross
each hop at the cost of a copy.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
from distributed.diagnostics.plugin import WorkerPlugin

if TYPE_CHECKING:
    from distributed import Client, Worker

_SIMPLE = (str, int, float, bool, type(None))
# Attributes of a record that Kedro's RichHandler reads, beyond the standard ones.
_EXTRAS = ("rich_format", "markup")
logger = logging.getLogger(__name__)

# Marks the collector handler whichever copy of this module installed it.
_MARK = "kedro_dask_node_logs"
# The name of a worker's ``_Outbox`` among its plugins.
_OUTBOX = "kedro-dask-node-messages"
# The key of the list of messages in an event ``send`` sends.
_BATCH = "messages"
# The key of the worker's address in the event ``drain`` ends with.
_DRAINED = "drained"
# ``later`` messages leave at the next task transition once this many wait on a
# worker, and at the latest this many seconds after the first of them was sent.
_LATER_COUNT = 500
_LATER_AGE = 0.25


@dataclass(frozen=True)
class LogSettings:
    """How a run's workers treat node log records.

    Attributes:
        topic: The Dask event topic the records of the run are sent on.
        levels: The driver's level of each logger to collect, so that a worker
            creates no record the driver would drop.
    """

    topic: str
    levels: tuple[tuple[str, int], ...]

    @classmethod
    def of_driver(cls, topic: str, package_name: str | None) -> LogSettings:
        names = ["kedro", *([package_name] if package_name else [])]
        return cls(
            topic, tuple((n, logging.getLogger(n).getEffectiveLevel()) for n in names)
        )


class _Collector(logging.Handler):
    """Keeps the records a node task writes in its thread; passes others on.

    Installed once per worker process on each collected logger, which then no
    longer propagates: outside a node task (another thread of the worker, or
    Kedro's asynchronous loading threads) its records go to the root logger's
    handlers as before.
    """

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()
        setattr(self, _MARK, True)

    def emit(self, record: logging.LogRecord) -> None:
        records = getattr(self.local, "records", None)
        if records is None:
            logging.getLogger().handle(record)
        else:
            records.append(_as_dict(record))


_install_lock = threading.Lock()


def _install(levels: tuple[tuple[str, int], ...]) -> _Collector:
    """The worker process's collector, installed on each logger of ``levels``.

    With ``ship_code`` the project package is imported afresh for every run, so
    this module (and its ``_Collector`` class) may exist several times in one
    worker. The collector lives on the loggers, not in the module: a run reuses
    the one an earlier run installed, and a logger never gets a second one.
    """
    with _install_lock:
        loggers = [logging.getLogger(name) for name, _ in levels]
        collector = (
            next(
                (
                    handler
                    for logger in loggers
                    for handler in logger.handlers
                    if getattr(handler, _MARK, False)
                ),
                None,
            )
            or _Collector()
        )
        for logger, (_, level) in zip(loggers, levels, strict=True):
            if logger.level != level:  # setLevel clears every logger's cache
                logger.setLevel(level)
            logger.propagate = False
            if collector not in logger.handlers:
                logger.addHandler(collector)
        return collector


@contextmanager
def collect(settings: LogSettings | None, node_name: str) -> Iterator[None]:
    """Collect what the current thread logs while running ``node_name`` and send
    it to the driver at the end, whether the node succeeded or not."""
    if settings is None:
        yield
        return
    collector = _install(settings.levels)
    records: list[dict[str, Any]] = []
    collector.local.records = records
    try:
        yield
    finally:
        collector.local.records = None
        if records:
            _send(settings.topic, {"node": node_name, "records": records})


def _send(topic: str, event: dict[str, Any]) -> None:
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # not on a worker (e.g. a unit test): handle them here
        for attributes in event["records"]:
            emit(attributes)
        return
    for attributes in event["records"]:
        attributes["worker"] = worker.address
    send(worker, topic, event)


def send(
    worker: Worker, topic: str, message: dict[str, Any], *, later: bool = False
) -> None:
    """Send a node task's ``message`` to the driver on ``topic``, as a Dask event
    the scheduler receives before the task's result or error; with ``later``, by
    the time ``drain`` returns for ``topic`` on this worker.

    Called on the task's thread. The message waits in the worker's ``_Outbox``
    until the worker's event loop next handles a task transition (``later``:
    until many wait, or ``_LATER_AGE``); only the first messages on a worker,
    before its outbox is in place, go out at once. An event carries one or more
    messages: read them with ``messages_of``.
    """
    packed = _pack(message)
    outbox = worker.plugins.get(_OUTBOX)
    if outbox is not None:
        outbox.put(topic, packed, later)
        return
    worker.log_event(topic, {_BATCH: [packed]})  # wakes the loop, which
    worker.loop.add_callback(_install_outbox, worker)  # installs the outbox


_packers = threading.local()


def _pack(message: dict[str, Any]) -> bytes:
    """``msgpack.packb(message, default=str)`` with a ``Packer`` kept per thread.

    ``packb`` makes a ``Packer`` per call, and with it a 256 KiB buffer. Dask's
    nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``), under which glibc maps and unmaps
    a buffer that size at every call: 16 microseconds a message instead of 2.5.
    A ``Packer`` is not thread-safe, hence one per thread; it empties its buffer
    after each message, also when packing fails.
    """
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(default=str)
    return packer.pack(message)


def messages_of(event: tuple[float, dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages ``send`` sent in one Dask event, as the driver receives it.

    Sequences come back as tuples, as in Dask's own messages."""
    return [
        msgpack.unpackb(packed, use_list=False, strict_map_key=False)
        for packed in event[1][_BATCH]
    ]


def drain(topic: str, dask_worker: Worker) -> str:
    """On a worker's event loop (``Client.run``): send every message waiting for
    ``topic``, then an event marking that none is left (``drained_by``).

    Both go on the worker's stream to the scheduler, in this order, after any
    message sent before: a driver that has the mark has every message.

    Returns:
        The worker's address.
    """
    outbox = dask_worker.plugins.get(_OUTBOX)
    if outbox is not None:
        outbox.flush(everything=True)
    dask_worker.log_event(topic, {_BATCH: [], _DRAINED: dask_worker.address})
    return dask_worker.address


def drained_by(event: tuple[float, dict[str, Any]]) -> str | None:
    """The worker whose ``drain`` mark ``event`` is, or ``None``."""
    return event[1].get(_DRAINED)


def _install_outbox(worker: Worker) -> None:
    """On the worker's event loop: give the worker its outbox, once."""
    if _OUTBOX not in worker.plugins:
        worker.plugins[_OUTBOX] = _Outbox(worker)


class _Outbox(WorkerPlugin):
    """Node task messages waiting on a worker for its event loop.

    A plugin of the worker, so it hears of every task transition, on the event
    loop, before the worker tells the scheduler about it: a task ending
    (``executing`` to ``memory`` or ``error``) hands what its nodes sent to the
    scheduler first, one event per topic (a chain's nodes: one event); messages
    sent ``later`` wait for ``_LATER_COUNT`` of them, ``_LATER_AGE`` seconds (a
    timer on the loop, set by the first of them), or ``drain``. Lives in the
    worker's plugins, not in this module, so copies of the module
    (``ship_code``) share it.
    """

    def __init__(self, worker: Worker):
        self._worker = worker
        self._lock = threading.Lock()
        self._now: dict[str, list[bytes]] = {}
        self._later: dict[str, list[bytes]] = {}
        self._later_count = 0

    def put(self, topic: str, message: bytes, later: bool = False) -> None:
        """From a task thread: keep the packed ``message`` for the next transition
        (or, with ``later``, one of the next)."""
        with self._lock:
            if not later:
                self._now.setdefault(topic, []).append(message)
                return
            self._later.setdefault(topic, []).append(message)
            self._later_count += 1
            first = self._later_count == 1
        if first:  # wakes the loop: once per batch, not per message
            self._worker.loop.add_callback(self._set_timer)

    def _set_timer(self) -> None:
        """On the event loop: send the ``later`` messages in ``_LATER_AGE``."""
        self._worker.loop.call_later(_LATER_AGE, self.flush, True)

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if self._now or self._later_count >= _LATER_COUNT:
            self.flush()

    def teardown(self, worker: Worker) -> None:
        with suppress(Exception):  # the worker is closing: its stream may be gone
            self.flush(everything=True)

    def flush(self, everything: bool = False) -> None:
        """On the event loop: hand the waiting messages to the scheduler's stream
        (the ``later`` ones too when ``_LATER_COUNT`` wait, or with
        ``everything``)."""
        with self._lock:
            waiting, self._now = self._now, {}
            if everything or self._later_count >= _LATER_COUNT:
                for topic, messages in self._later.items():
                    waiting.setdefault(topic, []).extend(messages)
                self._later, self._later_count = {}, 0
        for topic, messages in waiting.items():
            try:
                self._worker.log_event(topic, {_BATCH: messages})
            except Exception:  # noqa: BLE001 - the other topics still go
                logger.warning("Could not send nodes' messages", exc_info=True)


def _as_dict(record: logging.LogRecord) -> dict[str, Any]:
    """A record as plain data that Dask's messages carry."""
    attributes = {
        key: getattr(record, key)
        for key in (
            "name",
            "levelno",
            "levelname",
            "pathname",
            "filename",
            "module",
            "lineno",
            "funcName",
            "created",
            "msecs",
            "threadName",
            "processName",
        )
    }
    args = record.args
    if isinstance(args, tuple) and all(_travels(a) for a in args):
        attributes["msg"], attributes["args"] = str(record.msg), list(args)
    else:  # objects the driver may not be able to rebuild: send the text
        attributes["msg"], attributes["args"] = record.getMessage(), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    attributes["exc_text"] = record.exc_text
    for key in _EXTRAS:
        if hasattr(record, key):
            attributes[key] = getattr(record, key)
    return attributes


def _travels(value: Any) -> bool:
    """Whether a log argument reaches the driver as it is: a plain value, an
    integer within what msgpack (which packs the messages) holds."""
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    return isinstance(value, _SIMPLE)


def emit(attributes: Mapping[str, Any]) -> None:
    """Handle a collected record with this process's loggers."""
    record = logging.makeLogRecord(dict(attributes))
    # Sequences arrive as tuples (``messages_of``): logging wants tuple args,
    # Kedro's RichHandler a list of styles.
    if record.args is not None:
        record.args = tuple(record.args)
    if hasattr(record, "rich_format"):
        record.rich_format = list(record.rich_format)
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


class NodeLogs:
    """The driver's side: receives the records of a run's nodes and emits each
    node's just before the runner reports that node done or failed.

    Events arrive on the client's event loop thread; they are emitted on the
    thread following the run, so a node's lines come out in order and never
    interleave with another node's.
    """

    def __init__(self, client: Client, settings: LogSettings | None):
        self._client = client
        self.settings = settings
        self._arrived: queue.SimpleQueue[tuple[float, dict[str, Any]]] = (
            queue.SimpleQueue()
        )
        self._pending: dict[str, list[dict[str, Any]]] = {}

    def __enter__(self) -> NodeLogs:
        if self.settings is not None:
            self._client.subscribe_topic(self.settings.topic, self._arrived.put)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.settings is None:
            return
        try:
            self._client.unsubscribe_topic(self.settings.topic)
        finally:
            self.emit_all()

    def emit(self, node_name: str) -> None:
        """Emit what ``node_name`` logged."""
        self._take_arrived()
        for attributes in self._pending.pop(node_name, ()):
            emit(attributes)

    def emit_all(self) -> None:
        """Emit whatever has arrived, e.g. the nodes of a run that failed."""
        self._take_arrived()
        for node_name in list(self._pending):
            self.emit(node_name)

    def _take_arrived(self) -> None:
        while True:
            try:
                event = self._arrived.get_nowait()
            except queue.Empty:
                return
            for message in messages_of(event):
                self._pending.setdefault(message["node"], []).extend(message["records"])
