"""``node_logs``: what nodes log on the workers is collected there and shown by
the driver, node by node, as ``SequentialRunner`` shows it."""

from __future__ import annotations

import logging
import re
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kedro.framework.project
import msgpack
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner

from {{ cookiecutter.python_package }}.runner import DaskRunner
from {{ cookiecutter.python_package }}.runner.node_logs import (
    LogSettings,
    _pack,
    collect,
    drain,
    drained_by,
    messages_of,
)

from .conftest import wait_until

PACKAGE = "{{ cookiecutter.python_package }}"
NODE_LOGGER = f"{PACKAGE}.pipelines.logging_test"  # a node module's logger


def shout(value: int) -> int:
    logging.getLogger(NODE_LOGGER).info("node got %d", value)
    return value * 2


def whisper(value: int) -> int:
    logging.getLogger(NODE_LOGGER).debug("below the driver's level: %d", value)
    logging.getLogger(NODE_LOGGER).warning("node warns about %s", {"v": value})
    # Beyond what msgpack, which carries the records, holds as an integer.
    logging.getLogger(NODE_LOGGER).warning("node counts %d", 2**70 + value)
    return value + 1


def _pipeline() -> Pipeline:
    return Pipeline(
        [
            node(shout, "start", "middle", name="shout_node"),
            node(whisper, "middle", "end", name="whisper_node"),
            node(shout, "end", "last", name="shout_again_node"),
        ]
    )


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


@pytest.fixture(autouse=True)
def restored_loggers():
    """``collect`` installs its collector in this process when it runs off a
    worker: leave the loggers as they were for the tests that follow."""
    loggers = [logging.getLogger(name) for name in ("kedro", PACKAGE)]
    saved = [(lg, list(lg.handlers), lg.propagate, lg.level) for lg in loggers]
    yield
    for logger, handlers, propagate, level in saved:
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(level)


@pytest.fixture
def in_project(monkeypatch):
    """The run belongs to this project, as under ``kedro run``: its package's
    loggers are the nodes' loggers."""
    monkeypatch.setattr(kedro.framework.project, "PACKAGE_NAME", PACKAGE)


def test_driver_shows_node_lines_as_sequential_runner(
    client_args, worker_addresses, caplog, in_project
):
    with caplog.at_level(logging.INFO):
        SequentialRunner().run(_pipeline(), DataCatalog({"start": MemoryDataset(1)}))
    node_lines = re.compile(r"^(Loading data|Running node|Saving data|node )")
    expected = [m for m in _messages(caplog) if node_lines.match(m)]
    caplog.clear()

    with caplog.at_level(logging.INFO):
        DaskRunner(client_args=client_args, fuse_chains=False).run(
            _pipeline(), DataCatalog({"start": MemoryDataset(1)})
        )
    shown = [m for m in _messages(caplog) if node_lines.match(m)]
    assert shown == expected  # same lines, same order: the pipeline is a chain
    assert "node warns about {'v': 2}" in shown
    assert f"node counts {2**70 + 2}" in shown
    assert not any("below the driver's level" in m for m in _messages(caplog))

    # Each node's lines come before the runner reports it completed, and carry
    # the worker that ran it.
    messages = _messages(caplog)
    for name, line in (("shout_node", "node got 1"), ("whisper_node", "node warns")):
        at = next(i for i, m in enumerate(messages) if m.startswith(line))
        done = messages.index(f"Completed node: {name}")
        assert at < done
    from_workers = [r for r in caplog.records if r.name == NODE_LOGGER]
    assert {r.worker for r in from_workers} <= worker_addresses
    assert all(r.name == NODE_LOGGER for r in from_workers)


def test_forward_logs_off_leaves_records_to_the_workers(
    client_args, caplog, in_project
):
    with caplog.at_level(logging.INFO):
        DaskRunner(client_args=client_args, forward_logs=False).run(
            _pipeline(), DataCatalog({"start": MemoryDataset(1)})
        )
    assert "Completed node: shout_node" in _messages(caplog)
    assert not any(m.startswith("node got") for m in _messages(caplog))


def test_collect_off_a_worker_hands_records_to_local_logging(caplog):
    """Outside a Dask worker (here, a unit test) collected records are handled by
    this process's loggers when the node ends, with their arguments and the
    attributes Kedro's rich handler reads."""
    settings = LogSettings.of_driver("unused-topic", PACKAGE)
    logger = logging.getLogger(NODE_LOGGER)
    with caplog.at_level(logging.INFO), collect(settings, "a_node"):
        logger.info(
            "loading %s (%s)", "ds", "MemoryDataset", extra={"rich_format": ["red"]}
        )
        assert not caplog.records  # held until the node ends
    [record] = caplog.records
    assert record.getMessage() == "loading ds (MemoryDataset)"
    assert record.args == ("ds", "MemoryDataset")
    assert record.rich_format == ["red"]


def test_a_reimported_module_reuses_the_installed_collector(monkeypatch):
    """With ``ship_code`` a worker imports the project package afresh for each
    run: a second copy of this module must not add a second collector, or the
    first would pass every record on to the worker's console."""
    import importlib.util

    from {{ cookiecutter.python_package }}.runner import node_logs

    spec = importlib.util.spec_from_file_location("node_logs_again", node_logs.__file__)
    again = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, again)
    spec.loader.exec_module(again)
    assert again._Collector is not node_logs._Collector

    handled: list[str] = []  # what reaches the root logger, as on a worker's console
    counter = logging.Handler()
    counter.emit = lambda record: handled.append(record.getMessage())
    logging.getLogger().addHandler(counter)
    logger = logging.getLogger(NODE_LOGGER)
    monkeypatch.setattr(logger, "level", logging.INFO)
    try:
        for module in (node_logs, again, node_logs):
            settings = module.LogSettings.of_driver("unused-topic", PACKAGE)
            with module.collect(settings, "a_node"):
                logger.info("one record per run")
                assert handled == []  # held until the node ends
            assert handled == ["one record per run"]  # once, not once per copy
            handled.clear()
    finally:
        logging.getLogger().removeHandler(counter)

    installed = {
        name: [
            h
            for h in logging.getLogger(name).handlers
            if type(h).__name__ == "_Collector"
        ]
        for name in ("kedro", PACKAGE)
    }
    assert [len(handlers) for handlers in installed.values()] == [1, 1]
    assert installed["kedro"][0] is installed[PACKAGE][0]


# --------------------------------------------------------------------------- #
# The outbox: node messages reach the scheduler before the task's result
# --------------------------------------------------------------------------- #
def _send_messages(topic: str, count: int, first: int, fail: bool = False) -> int:
    """A task that sends ``count`` messages, as a chain of ``count`` nodes would."""
    from distributed import get_worker

    from {{ cookiecutter.python_package }}.runner.node_logs import send

    for number in range(first, first + count):
        send(get_worker(), topic, {"number": number})
    if fail:
        raise ValueError("failed after sending")
    return count


def _received(client, topic: str) -> set[int]:
    return {
        message["number"]
        for event in client.get_events(topic)
        for message in messages_of(event)
    }


def _has_outbox(dask_worker) -> bool:
    return "kedro-dask-node-messages" in dask_worker.plugins


def test_node_messages_arrive_before_the_task_result(inspector):
    """What a node task sends is at the scheduler when its result or error is
    known, whether it left at once (a worker's first message) or waited in the
    worker's outbox; a task that sends several sends them all (in one event)."""
    topic = f"outbox-test-{uuid.uuid4().hex}"
    numbers: set[int] = set()
    for round_ in range(3):  # the first round installs the outboxes
        futures = [
            inspector.submit(_send_messages, topic, 1, 100 * round_ + i, pure=False)
            for i in range(20)
        ]
        futures.append(
            inspector.submit(_send_messages, topic, 30, 100 * round_ + 50, pure=False)
        )
        inspector.gather(futures)
        numbers |= {100 * round_ + i for i in [*range(20), *range(50, 80)]}
        received = _received(inspector, topic)
        assert received == numbers  # no wait: all there with the results
    assert all(inspector.run(_has_outbox).values())

    failing = inspector.submit(_send_messages, topic, 5, 1000, True, pure=False)
    with pytest.raises(ValueError, match="failed after sending"):
        failing.result()
    assert set(range(1000, 1005)) <= _received(inspector, topic)


def _send_later(topic: str, first: int, count: int) -> int:
    """A task that sends ``count`` messages the driver needs only at the end."""
    from distributed import get_worker

    from {{ cookiecutter.python_package }}.runner.node_logs import send

    for number in range(first, first + count):
        send(get_worker(), topic, {"number": number}, later=True)
    return count


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for this object")


def test_messages_packed_on_many_threads_at_once_arrive_intact():
    """Each thread packs with a packer of its own: messages packed on several
    threads at once (a worker with several threads, each running a node) read
    back as sent, also when packing calls back into Python mid-message (an
    object sent as its text); a message that cannot be packed spoils nothing."""

    def message(thread: int, number: int) -> dict:
        return {"thread": thread, "number": number, "path": Path(f"d/{number}")}

    def pack_many(thread: int) -> list[tuple[int, int, bytes]]:
        return [(thread, n, _pack(message(thread, n))) for n in range(3000)]

    with ThreadPoolExecutor(4) as pool:
        packed = [item for batch in pool.map(pack_many, range(4)) for item in batch]

    assert len(packed) == 12000
    for thread, number, data in packed:
        expected = {**message(thread, number), "path": f"d/{number}"}
        assert msgpack.unpackb(data) == expected
    with pytest.raises(RuntimeError, match="no text"):
        _pack({"node": "n", "bad": [1, _Unprintable()]})
    assert msgpack.unpackb(_pack({"node": "n"})) == {"node": "n"}


def test_messages_sent_later_all_arrive_before_the_drain_mark(inspector):
    """Messages sent ``later`` wait on the worker to go many in one event; once
    ``drain`` ran on every worker and its mark arrived, every message is in, and
    in fewer events than tasks."""
    topic = f"later-test-{uuid.uuid4().hex}"
    inspector.gather(
        [
            inspector.submit(_send_later, topic, 10 * i, 10, pure=False)
            for i in range(30)
        ]
    )

    drained = inspector.run(drain, topic)

    def marks_in(events) -> list[int]:
        return [i for i, event in enumerate(events) if drained_by(event)]

    # The marks travel on each worker's stream: the driver waits for them too.
    assert wait_until(
        lambda: len(marks_in(inspector.get_events(topic))) == len(drained), 10
    )
    events = inspector.get_events(topic)
    marks = marks_in(events)
    assert sorted(drained_by(events[i]) for i in marks) == sorted(drained.values())
    messages = [
        m["number"] for event in events[: marks[-1]] for m in messages_of(event)
    ]
    assert sorted(messages) == list(range(300))
    assert len(events) - len(marks) < 30


def test_messages_sent_later_leave_the_worker_without_a_drain(inspector):
    """A worker that runs nothing more still sends what it holds, soon after the
    first message waiting (a timer, not the next task): a driver that loses its
    scheduler before draining still has the measurements of what finished."""
    topic = f"later-test-{uuid.uuid4().hex}"
    inspector.gather(
        [inspector.submit(_send_later, topic, 10 * i, 10, pure=False) for i in range(4)]
    )

    assert wait_until(lambda: _received(inspector, topic) == set(range(40)), 10)
