"""Scheduler addresses: parsed once, and plaintext refused beyond loopback.

A Dask scheduler runs whatever code its clients send, and a run sends every
dataset to the workers pickled, credentials included. Over ``tcp://`` (or
``ws://``) anyone who can reach the scheduler's port can run code on the workers,
and anyone on the path can read what travels. On loopback only this machine can;
beyond it the user must choose: ``tls://`` with ``dask_client.security``, or
``dask_client.allow_insecure: true`` for a network they trust.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

from .errors import DaskClusterError

logger = logging.getLogger(__name__)

ENCRYPTED = frozenset({"tls", "wss"})
"""Dask protocols that encrypt and authenticate with ``distributed.Security``."""
PLAINTEXT = frozenset({"tcp", "ws"})
"""Dask protocols that carry code and data in the clear."""


@dataclass(frozen=True)
class SchedulerAddress:
    """A Dask address such as ``tls://10.0.0.5:8786``, split into its parts."""

    address: str
    protocol: str
    host: str
    port: int | None

    @classmethod
    def parse(
        cls, address: object, default_port: int | None = None
    ) -> SchedulerAddress:
        """Split ``address`` as Dask does (no protocol means ``tcp``).

        Raises:
            DaskClusterError: ``address`` is not a Dask address (or has no port
                and there is no ``default_port``), naming it.
        """
        from distributed.comm import parse_address, parse_host_port

        text = str(address)
        try:
            protocol, location = parse_address(text)
            if protocol not in ENCRYPTED | PLAINTEXT:  # inproc://, ucx://: Dask's
                return cls(text, protocol, location, None)
            host, port = parse_host_port(location, default_port)
        except (TypeError, ValueError) as exc:
            raise DaskClusterError(
                f"dask_client.address '{address}' is not a Dask address with a "
                f"port, e.g. tcp://127.0.0.1:8786: {exc}"
            ) from None
        return cls(text, protocol, host, port)

    @property
    def encrypted(self) -> bool:
        return self.protocol in ENCRYPTED

    def is_loopback(self) -> bool:
        """Whether only this machine can reach the host: every address the host
        name resolves to is a loopback address. An empty host or 0.0.0.0 listens
        on every interface: not loopback.

        Raises:
            DaskClusterError: The host name does not resolve: nothing could
                connect to it, whatever the protocol.
        """
        host = self.host.strip("[]")
        if not host:
            return False
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            raise DaskClusterError(
                f"Cannot connect to the Dask scheduler at {self.address}: its host "
                f"'{host}' does not resolve ({exc})."
            ) from None
        resolved = {info[4][0].split("%")[0] for info in infos}
        return bool(resolved) and all(
            ipaddress.ip_address(ip).is_loopback for ip in resolved
        )


def refuse_plaintext(
    address: SchedulerAddress, *, allow_insecure: bool, role: str = "to the scheduler"
) -> None:
    """Refuse ``address`` if it is plaintext beyond loopback and not allowed.

    With ``allow_insecure`` it is allowed, with a warning that code and
    credentials travel in plaintext. Other protocols (``inproc``, ``ucx``) are
    left to Dask.

    Raises:
        DaskClusterError: One line naming the address, why, and both ways on.
    """
    if address.protocol not in PLAINTEXT or address.is_loopback():
        return
    if allow_insecure:
        logger.warning(
            "dask_client.allow_insecure: code and credentials travel in plaintext "
            "%s at %s.",
            role,
            address.address,
        )
        return
    raise DaskClusterError(
        f"Refusing plaintext {address.protocol}:// {role} at {address.address}, "
        f"which is not on loopback: whoever reaches it can run code on the workers "
        f"and read the credentials a run sends. Use tls:// with "
        f"dask_client.security, or set dask_client.allow_insecure: true for a "
        f"network you trust."
    )


def check_joinable(
    address: SchedulerAddress, security: Any, timeout: float, role: str = "worker"
) -> None:
    """Ask the scheduler at ``address`` who it is, as a ``role`` would connect.

    A ``dask worker`` that cannot join retries for ever, or prints tracebacks
    once its connect timeout is up; asked first, the reason is one line: nothing
    listens there, or one side talks TLS and the other does not, or the
    certificates do not match.

    Args:
        address: The scheduler's address.
        security: A ``distributed.Security`` with the ``role``'s TLS files.
        timeout: Seconds to connect and get the answer in.
        role: The connection's role, which picks the TLS files.

    Raises:
        DaskClusterError: No Dask scheduler answered at ``address`` in time.
    """
    import asyncio

    from distributed.comm import connect

    async def identity() -> Any:
        comm = await connect(
            address.address,
            timeout=timeout,
            **security.get_connection_args(role),
        )
        try:
            await comm.write({"op": "identity"})
            return await comm.read()
        finally:
            await comm.close()

    try:
        if address.protocol in ("tcp", "tls") and address.port:
            _wait_for_listener(address.host, address.port, timeout)
        answer = asyncio.run(asyncio.wait_for(identity(), timeout))
    except (OSError, TimeoutError, EOFError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DaskClusterError(
            f"A Dask {role} cannot join the scheduler at {address.address} within "
            f"{timeout:g} s: {reason}. {_join_hint(address, reason)}"
        ) from None
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        raise DaskClusterError(
            f"What answers at {address.address} is not a Dask scheduler "
            f"({str(answer)[:80]})."
        )


def _wait_for_listener(host: str, port: int, timeout: float) -> None:
    """Wait up to ``timeout`` s for something to listen at ``host:port``, as a
    worker started with (or just before) its scheduler would.

    Raises:
        OSError: Still refused (the last error) once ``timeout`` is up.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout).close()
            return
        except ConnectionRefusedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _join_hint(address: SchedulerAddress, reason: str) -> str:
    if "refused" in reason.lower():
        return (
            "Nothing listens there: start it (kedro dask scheduler) or fix "
            "dask_client.address."
        )
    if address.encrypted:
        return (
            "Is the scheduler plaintext (tcp://), or are its certificates signed "
            "by another CA than dask_client.security.tls_ca_file?"
        )
    return (
        "Does the scheduler talk TLS? Then use tls:// in dask_client.address, "
        "with dask_client.security."
    )
