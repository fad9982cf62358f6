"""``addresses``: a scheduler address parsed once, and plaintext refused beyond
loopback unless the user allows it. No test here opens a connection: the
decision is made from the address alone."""

from __future__ import annotations

import logging

import pytest
from distributed import Security

from {{ cookiecutter.python_package }}.runner.addresses import (
    SchedulerAddress,
    check_joinable,
    refuse_plaintext,
)
from {{ cookiecutter.python_package }}.runner.errors import DaskClusterError

from .conftest import free_port


@pytest.mark.parametrize(
    ("address", "parts"),
    [
        ("tcp://127.0.0.1:8786", ("tcp", "127.0.0.1", 8786)),
        ("127.0.0.1:8786", ("tcp", "127.0.0.1", 8786)),  # Dask's default protocol
        ("tls://[::1]:9000", ("tls", "::1", 9000)),
        ("ws://scheduler.example:80", ("ws", "scheduler.example", 80)),
    ],
)
def test_an_address_is_split_as_dask_splits_it(address, parts):
    parsed = SchedulerAddress.parse(address)

    assert (parsed.protocol, parsed.host, parsed.port) == parts
    assert parsed.address == address


@pytest.mark.parametrize("address", ["tcp://127.0.0.1", "not an address", None])
def test_an_address_without_a_port_is_one_error_naming_it(address):
    with pytest.raises(DaskClusterError, match=f"'{address}'"):
        SchedulerAddress.parse(address)


def test_a_default_port_completes_an_address():
    assert SchedulerAddress.parse("tcp://127.0.0.1", default_port=8786).port == 8786


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("tcp://127.0.0.1:8786", True),
        ("tcp://127.0.0.2:8786", True),
        ("tcp://[::1]:8786", True),
        ("tcp://localhost:8786", True),  # resolved first
        ("tcp://0.0.0.0:8786", False),  # every interface
        ("tcp://10.0.0.5:8786", False),
        ("tcp://[fe80::1]:8786", False),
    ],
)
def test_loopback_is_decided_from_what_the_host_resolves_to(address, loopback):
    assert SchedulerAddress.parse(address).is_loopback() is loopback


@pytest.mark.parametrize(
    "address", ["tcp://10.0.0.5:8786", "ws://10.0.0.5:8786", "tcp://0.0.0.0:8786"]
)
def test_plaintext_beyond_loopback_is_refused(address):
    with pytest.raises(DaskClusterError) as excinfo:
        refuse_plaintext(SchedulerAddress.parse(address), allow_insecure=False)

    message = str(excinfo.value)
    assert message.startswith("Refusing plaintext")
    assert address in message
    assert "dask_client.security" in message
    assert "allow_insecure: true" in message


@pytest.mark.parametrize(
    "address",
    ["tcp://127.0.0.1:8786", "tls://10.0.0.5:8786", "wss://10.0.0.5:443", "inproc://x"],
)
def test_loopback_encrypted_and_other_protocols_pass(address, caplog):
    with caplog.at_level(logging.WARNING):
        refuse_plaintext(SchedulerAddress.parse(address), allow_insecure=False)

    assert not caplog.records


def test_allow_insecure_passes_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING):
        refuse_plaintext(
            SchedulerAddress.parse("tcp://10.0.0.5:8786"), allow_insecure=True
        )

    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "plaintext to the scheduler at tcp://10.0.0.5:8786" in record.getMessage()


def test_a_scheduler_a_worker_can_join_answers(dask_cluster):
    address = SchedulerAddress.parse(dask_cluster.scheduler_address)
    check_joinable(address, Security(), timeout=10)


def test_nothing_listening_within_the_timeout_is_named(dask_cluster):
    address = SchedulerAddress.parse(f"tcp://127.0.0.1:{free_port()}")
    with pytest.raises(DaskClusterError, match="Nothing listens there") as raised:
        check_joinable(address, Security(), timeout=1)
    assert address.address in str(raised.value)
