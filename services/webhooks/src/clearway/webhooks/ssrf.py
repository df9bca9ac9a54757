"""SSRF guard: refuse URLs that resolve to private, loopback, link-local or other
non-public addresses, at creation and again at connect time.

The connect-time check lives in the HTTP client's network backend: the name is
resolved once, every address is checked, and the connection goes to a checked
address, so a DNS answer that changes between the two checks (rebinding) gains
nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_URL_LENGTH = 2048


class UnsafeUrl(ValueError):
    """A URL the dispatcher must not call; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class SsrfGuard:
    def __init__(self, allow: Iterable[str] = (), resolver: Resolver = system_resolver) -> None:
        self.allow: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in allow)
        self.resolver = resolver

    def address_allowed(self, address: IPAddress) -> bool:
        if any(address in net for net in self.allow):
            return True
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            return self.address_allowed(mapped)
        return address.is_global and not address.is_multicast

    async def resolve_checked(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``; :class:`UnsafeUrl` if any of them is not allowed."""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
            addresses = [str(literal)]
        except ValueError:
            try:
                addresses = await self.resolver(host, port)
            except OSError as e:
                raise UnsafeUrl(f"host {host!r} does not resolve: {e}") from None
        if not addresses:
            raise UnsafeUrl(f"host {host!r} does not resolve")
        for a in addresses:
            if not self.address_allowed(ipaddress.ip_address(a.split("%")[0])):
                raise UnsafeUrl(f"host {host!r} resolves to a non-public address ({a})")
        return addresses

    async def check_url(self, url: str) -> str:
        """Validate an endpoint URL (scheme, host, no credentials) and its addresses."""
        if len(url) > MAX_URL_LENGTH:
            raise UnsafeUrl(f"url is longer than {MAX_URL_LENGTH} characters")
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as e:
            raise UnsafeUrl(f"url is malformed: {e}") from None
        if parts.scheme not in ("http", "https"):
            raise UnsafeUrl("url must be http or https")
        if not parts.hostname:
            raise UnsafeUrl("url has no host")
        if parts.username or parts.password:
            raise UnsafeUrl("url must not carry credentials")
        await self.resolve_checked(parts.hostname, port)
        return url


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's default backend, connecting only to addresses the guard allows."""

    def __init__(self, guard: SsrfGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._guard.resolve_checked(host, port)
        except UnsafeUrl as e:
            raise httpcore.ConnectError(f"ssrf guard: {e.reason}") from None
        # TLS SNI and Host still use the name; only the TCP connect uses the address.
        return await self._inner.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("ssrf guard: unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_client(
    guard: SsrfGuard, *, timeout_s: float, max_connections: int = 256
) -> httpx.AsyncClient:
    """A pooled client that re-checks every address when it opens a connection."""
    transport = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    )
    # httpx does not expose httpcore's network_backend; the pool is rebuilt with it.
    pool = transport._pool
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=pool._ssl_context,
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=5.0,
        http1=True,
        http2=False,
        network_backend=_GuardedBackend(guard),
    )
    return httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(timeout_s), follow_redirects=False
    )


def is_refusal(error: BaseException) -> bool:
    return "ssrf guard:" in str(error)


def refused_networks() -> Sequence[str]:
    """What is refused, for documentation."""
    return ("private", "loopback", "link-local", "reserved", "multicast", "CGNAT", "unspecified")
