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
from dataclasses import dataclass

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
