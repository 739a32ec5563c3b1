"""The webhook client's transport: every connection goes only to an address it checked.

httpx normally hands a host *name* to the socket layer, which resolves it again: a check
made before (at registration, or by a resolver call of our own) says nothing about where
the connection then goes (DNS rebinding). Here the network backend resolves the name
itself, judges **every** address it resolves to by the ``AddressPolicy`` (one forbidden
address refuses the host), and connects to the checked addresses only. The request
keeps its URL, so the ``Host`` header, TLS SNI and certificate verification stay those
of the original name.

Every new connection is checked; a kept-alive connection was checked when it was made.
A refused connection raises ``AddressRefused`` (an ``httpcore.ConnectError``, which httpx
turns into ``httpx.ConnectError`` raised from it): nothing was sent to that address and
nothing was read from it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence

import httpcore
import httpx

from pageholder.service.webhooks.addresses import AddressPolicy, IPAddress

__all__ = ["AddressRefused", "CheckedBackend", "CheckedTransport", "Resolver", "system_resolver"]

#: ``(host, port) -> addresses`` (as text, in the order to try them).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer (``getaddrinfo``), duplicates dropped, order kept."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressRefused(httpcore.ConnectError):
    """A host resolved to an address the policy forbids; no connection was made."""

    def __init__(self, host: str, why: str) -> None:
        named = "" if why.startswith(host) else f" (host {host})"
        super().__init__(f"address not allowed: {why}{named}")
        self.host = host
        self.why = why


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every address, then connects to a checked address (the first
    that answers). ``inner`` does the connecting (httpcore's anyio backend)."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.checked_addresses(host, port, timeout)
        failure: Exception | None = None
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(ip), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # checked_addresses never returns an empty list
        raise failure

    async def checked_addresses(
        self, host: str, port: int, timeout: float | None = None
    ) -> list[IPAddress]:
        """Every address ``host`` resolves to, each allowed by the policy; raises
        ``AddressRefused`` if any is not, ``httpcore.ConnectError`` if there are none."""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        try:
            if literal is not None:  # an IP literal needs no lookup (one thread hop less)
                answers: Sequence[str] = [host]
            else:
                async with asyncio.timeout(timeout):
                    answers = await self._resolver(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"cannot resolve {host}: no answer in time") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        if not answers:
            raise httpcore.ConnectError(f"cannot resolve {host}: no address")
        addresses: list[IPAddress] = []
        for answer in answers:
            try:
                ip = ipaddress.ip_address(answer)
            except ValueError:
                raise AddressRefused(host, f"{answer!r}, which is not an IP address") from None
            why = self._policy.refusal(ip)
            if why is not None:
                raise AddressRefused(host, why)
            addresses.append(ip)
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused(path, "a unix socket, which release calls never use")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (its request and error mapping), with a connection pool
    whose every connection is made by a ``CheckedBackend``. No proxy, no environment;
    ``verify`` as httpx's (certificates are checked against the URL's host name)."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver = system_resolver,
        limits: httpx.Limits | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(trust_env=False, limits=limits)
        # httpx offers no way to give its pool a network backend: replace the pool it
        # built (nothing was opened yet) by the same pool with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=CheckedBackend(policy, resolver=resolver),
        )
