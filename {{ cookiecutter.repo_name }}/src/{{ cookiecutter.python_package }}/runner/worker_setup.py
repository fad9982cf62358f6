"""Set-up of the worker processes of a LocalCluster that the runner starts.

Dask imports this file in each worker process as a preload, by its path (see
``cluster.py``), and calls ``dask_setup`` when the worker starts. It imports
nothing but the standard library: imported as part of the project package it
would import Kedro first, and Kedro's import is what the set-up must precede.

The worker processes share the driver's console and process group. The driver
shows what a user needs of them: each node's log lines (``node_logs.py``), a
failing node's error, the workers lost. So in a worker process:

- Ctrl-C is left to the driver, which cancels the run and stops the workers;
  each worker dying of its own ``KeyboardInterrupt`` printed tracebacks and
  heartbeat errors, racing the driver;
- Kedro's "Using 'conf/logging.yml' as logging configuration" is not repeated
  (the driver said it), while the configuration itself applies as in the driver;
- Dask's "Compute Failed" report of a task of a Kedro run is not printed: the
  driver raises the node's exception, with its remote traceback;
- the messages Dask logs when a worker is stopped while a node runs (expected
  after Ctrl-C) are dropped.

Dask's own INFO messages are kept out by the worker processes' Dask config
(``distributed.logging``); its warnings and errors, e.g. a worker short of
memory, still show.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from typing import Any

CLOSING_NOISE = (
    "ended with CancelledError",  # the worker's in-flight task
    "Worker process still alive after",  # the nanny then kills the worker process
)
"""What Dask logs whenever a worker is closed while a node runs."""
CLOSING_LOGGERS = ("distributed.worker.state_machine", "distributed.nanny")

# The key of every task of a Kedro run: ("<group>-<run token>", "<node or dataset>"),
# the token a uuid4 hex (see ``graph.py``). Tasks a node submits itself have
# Dask's keys and keep Dask's report.
_RUN_KEY_GROUP = re.compile(r".+-[0-9a-f]{32}")
_PROJECT_LOGGING = re.compile(r"Using '.*' as logging configuration\.")


class DropMessages(logging.Filter):
    """Drops records whose message contains one of ``fragments``."""

    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


class _DropHeartbeatToGoneScheduler(logging.Filter):
    """Drops the failed heartbeat of a worker whose scheduler has gone: busy with
    a node when the run is interrupted, it outlives the scheduler, which lives in
    the driver, until it is killed. The driver has said what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            isinstance(record.msg, str)
            and record.msg.startswith("Failed to communicate with scheduler")
        )


class _DropProjectLoggingNote(logging.Filter):
    """Drops Kedro's note of which logging configuration it applied."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and _PROJECT_LOGGING.match(record.msg))


class _DropRunTaskFailures(logging.Filter):
    """Drops Dask's "Compute Failed" report of a task of a Kedro run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            isinstance(record.msg, str)
            and record.msg.startswith("Compute Failed")
            and isinstance(record.args, tuple)
            and bool(record.args)
            and is_run_key(record.args[0])
        )


def is_run_key(key: Any) -> bool:
    """Whether ``key`` is the key of a task of a Kedro run."""
    return (
        isinstance(key, tuple)
        and len(key) == 2  # noqa: PLR2004
        and all(isinstance(part, str) for part in key)
        and _RUN_KEY_GROUP.fullmatch(key[0]) is not None
    )


def _add_once(logger_name: str, log_filter: logging.Filter) -> None:
    """Add ``log_filter`` to a logger, unless one of its class is there already.

    Logging's ``dictConfig``, which Kedro applies in the worker when first
    imported, resets the loggers below the ones it configures but keeps their
    filters.
    """
    logger = logging.getLogger(logger_name)
    kind = type(log_filter).__name__
    if not any(type(f).__name__ == kind for f in logger.filters):
        logger.addFilter(log_filter)


def set_up_logging() -> None:
    """The worker process's log filters (see the module's docstring)."""
    _add_once("kedro.framework.project", _DropProjectLoggingNote())
    _add_once("distributed.worker", _DropRunTaskFailures())
    _add_once(CLOSING_LOGGERS[0], DropMessages(CLOSING_NOISE))
    _add_once("distributed.worker", _DropHeartbeatToGoneScheduler())


def dask_setup(worker: Any) -> None:
    """Called by Dask in each worker process as the worker starts."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's
    set_up_logging()
