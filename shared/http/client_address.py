"""Who the client is: the TCP peer, unless the peer is a proxy named in ``TRUSTED_PROXIES``.

The rate limits key on ``request.client``, so a header the client writes itself must never
decide it. Only when the connection comes from a trusted proxy is ``X-Forwarded-For`` read,
from the right: the first address that is not itself a trusted proxy is the client (what a
proxy appends can be believed, what the client sent before it cannot). ``X-Forwarded-Proto``
is taken from a trusted proxy too.

The app decides this itself, from the raw peer: the ASGI server must not rewrite the peer
first (uvicorn does by default, trusting loopback), so every run command passes
``--no-proxy-headers``; ``tests/test_client_address.py`` runs uvicorn the way the justfile
does and checks it.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from litestar.enums import ScopeType
from litestar.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_trusted(host: str, proxies: Sequence[Network]) -> bool:
    return _trusted(host, tuple(proxies))


@functools.lru_cache(maxsize=4096)
def _trusted(host: str, proxies: tuple[Network, ...]) -> bool:
    """Remembered per address: parsing it was 4 % of a cached GET's CPU (BENCHMARKS.md)."""
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in proxies)


@functools.lru_cache(maxsize=4096)
def budget_subject(host: str, ipv6_prefix: int) -> str:
    """The client a rate budget counts: an IPv4 address itself, an IPv6 one by its network.

    One IPv6 host is commonly given a whole /64, so counting addresses would hand it 2**64
    budgets; ``ipv6_prefix`` (``RATE_LIMIT_IPV6_PREFIX``) says how much to group. An
    IPv4-mapped address (``::ffff:a.b.c.d``, what a dual-stack socket or a proxy may report
    for an IPv4 client) is that IPv4 client. Anything that is not an address (a Unix socket,
    the test client's ``testclient``) is its own subject. Remembered, as ``_trusted`` is: the
    limiter asks on every request.
    """
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return ipaddress.ip_network((address, ipv6_prefix), strict=False).with_prefixlen


def client_host(peer: str, forwarded_for: Sequence[str], proxies: Sequence[Network]) -> str:
    """The client's address given the peer and the X-Forwarded-For entries (left to right)."""
    if not _is_trusted(peer, proxies):
        return peer
    host = peer
    for entry in reversed(forwarded_for):
        candidate = entry.strip()
        if not candidate:
            continue
        try:
            ipaddress.ip_address(candidate.strip("[]"))
        except ValueError:
            return host  # garbage from further left: stop at the last address we believe
        host = candidate.strip("[]")
        if not _is_trusted(host, proxies):
            return host
    return host


def forwarded_proto(scope: Scope, proxies: Sequence[Network]) -> str | None:
    """``http`` or ``https`` as the last ``X-Forwarded-Proto`` of a trusted peer says; None
    from any other peer, or for another value."""
    client = scope.get("client")
    if not client or not _is_trusted(client[0], proxies):
        return None
    proto: str | None = None
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            proto = value.decode("latin-1").strip().lower()
    return proto if proto in ("http", "https") else None


def resolve_client(scope: Scope, proxies: tuple[Network, ...]) -> None:
    """Set ``scope["client"]`` (and ``scheme``) from the peer and ``TRUSTED_PROXIES``
    (``proxies``, not empty); ``shared.http.layers`` calls it first thing for every request."""
    client = scope.get("client")
    if not client or not _is_trusted(client[0], proxies):
        return
    forwarded: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded.extend(value.decode("latin-1").split(","))
    proto = forwarded_proto(scope, proxies)
    host = client_host(client[0], forwarded, proxies)
    if host != client[0]:
        scope["client"] = (host, 0)
    if proto is not None and scope["type"] == ScopeType.HTTP:
        scope["scheme"] = proto
