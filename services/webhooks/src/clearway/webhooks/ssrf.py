"""SSRF guard: refuse URLs that reach anything but the public internet, at creation and
again at connect time (docs/design.md §6).

An address passes only if it is a global unicast address: IPv4 ``is_global``;
IPv6 inside ``2000::/3`` and ``is_global``, and not a transition address that
tunnels or translates to IPv4 (NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48``
(RFC 6052, RFC 8215), 6to4 ``2002::/16`` (RFC 3056), Teredo ``2001::/32``
(RFC 4380)). Outside ``2000::/3`` fall IPv4-mapped ``::ffff:a.b.c.d``,
IPv4-translated ``::ffff:0:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, site-local
``fec0::/10``, ULA, link-local and the rest: all refused. The operator's
``allow`` networks (tests: ``127.0.0.0/8``) are the only exception.

What the guard found is never told to the tenant: :class:`UnsafeUrl` names the
host, not the address (a resolved internal address in a 422 or in an attempt
row is an internal-DNS oracle). Operators get the address in the log, masked
to its network (:func:`redact`).

The connect-time check lives in the dispatcher's client: its resolver checks
every address of a name, and its socket factory checks the address actually
connected to (literal hosts and cached answers included), so a DNS answer that
changes between the checks (rebinding) gains nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

log = logging.getLogger(__name__)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_URL_LENGTH = 2048
REFUSAL = "ssrf guard: "
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
#: Inside 2000::/3 but tunnelling or translating to IPv4: refused whatever they embed.
_TRANSITION = tuple(
    ipaddress.ip_network(n) for n in ("2002::/16", "2001::/32", "64:ff9b::/96", "64:ff9b:1::/48")
)


class UnsafeUrl(ValueError):
    """A URL the dispatcher must not call; ``reason`` says why (and names no address)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def redact(address: str) -> str:
    """An address masked to its network, for operators' logs: ``10.0.x.x``, ``fd00:1:x``."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return "<not an address>"
    if isinstance(ip, ipaddress.IPv4Address):
        return ".".join(str(ip).split(".")[:2]) + ".x.x"
    return ":".join(h.lstrip("0") or "0" for h in ip.exploded.split(":")[:2]) + ":x"


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a global unicast address (see the module docstring)."""
    if isinstance(address, ipaddress.IPv4Address):
        return address.is_global and not address.is_multicast
    if address not in _GLOBAL_UNICAST or any(address in net for net in _TRANSITION):
        return False
    return address.is_global and not address.is_multicast


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class SsrfGuard:
    def __init__(self, allow: Iterable[str] = (), resolver: Resolver = system_resolver) -> None:
        self.allow: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in allow)
        self.resolver = resolver

    def address_allowed(self, address: IPAddress) -> bool:
        return any(address in net for net in self.allow) or is_public(address)

    def check_address(self, host: str, address: str) -> None:
        """:class:`UnsafeUrl` unless ``address`` (of ``host``) may be connected to."""
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            raise UnsafeUrl(f"host {host!r} resolves to something that is not an address") from None
        if not self.address_allowed(ip):
            log.warning("ssrf guard refused host %r at %s", host, redact(address))
            raise UnsafeUrl(f"host {host!r} resolves to a non-public address")

    async def resolve_checked(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``; :class:`UnsafeUrl` if any of them is not allowed."""
        try:
            addresses = [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            try:
                addresses = await self.resolver(host, port)
            except OSError:
                raise UnsafeUrl(f"host {host!r} does not resolve") from None
        if not addresses:
            raise UnsafeUrl(f"host {host!r} does not resolve")
        for a in addresses:
            self.check_address(host, a)
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


class _GuardedResolver(AbstractResolver):
    """aiohttp's resolver hook: names resolve only to addresses the guard allows."""

    def __init__(self, guard: SsrfGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await self._guard.resolve_checked(host, port)
        except UnsafeUrl as e:
            raise OSError(REFUSAL + e.reason) from None
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        return None


def _guarded_socket(guard: SsrfGuard) -> Callable[[tuple[Any, ...]], socket.socket]:
    def make(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        try:
            guard.check_address("(connect)", str(sockaddr[0]))
        except UnsafeUrl as e:
            raise OSError(REFUSAL + e.reason) from None
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    return make


def guarded_session(
    guard: SsrfGuard, *, max_connections: int = 256, per_endpoint: int = 16
) -> aiohttp.ClientSession:
    """The dispatcher's pooled client: every connection re-checked, kept alive per
    endpoint (host and port), at most ``per_endpoint`` connections to one of them.

    No timeout here: the dispatcher bounds each whole attempt itself.
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=per_endpoint,
        resolver=_GuardedResolver(guard),
        socket_factory=_guarded_socket(guard),
        keepalive_timeout=5.0,
        ttl_dns_cache=10,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        # no skip_auto_headers: every attempt sets its own User-Agent and Content-Type,
        # which aiohttp then leaves alone, and a skip list costs a header dict per request
        # no cookies: one receiver's Set-Cookie must never ride along on another
        # tenant's delivery to the same host (and no jar is consulted per request)
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,  # a receiver's body is kept as sent, capped (no zip bombs)
        raise_for_status=False,
    )


def is_refusal(error: BaseException | None) -> bool:
    """Whether a client error is (or wraps) a refusal of the guard."""
    seen = 0
    while error is not None and seen < 5:
        if REFUSAL in str(error) or REFUSAL in str(getattr(error, "os_error", "")):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False
