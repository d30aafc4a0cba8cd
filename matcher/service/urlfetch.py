"""Download a clip from a user-given URL without letting the URL reach inside the network (SSRF).

Every hop (the first URL and each redirect, followed by hand) is checked: http(s) only, and the host's
addresses, as resolved, must be public. The check happens in the connector's resolver, so the socket
connects to exactly the addresses that were checked (a DNS answer that changes between check and
connect, "DNS rebinding", cannot slip through). IP literals skip the resolver and are checked first.
Hosts or networks in the allow list (``URL_ALLOW_HOSTS``), on any port or on one (``127.0.0.1:8080``), are exempt,
which is how tests reach 127.0.0.1. Links to video pages go through the same checks (links.py, linkguard.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from citywok.errors import CityWokError

METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
                      ipaddress.ip_address("100.100.100.200")}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlFetchError(CityWokError):
    """The URL could not be downloaded; ``status`` and ``code`` say how to answer the client."""

    status = 502
    code = "url_fetch_failed"


class BadUrl(UrlFetchError):
    status = 400
    code = "bad_url"


class UrlForbidden(UrlFetchError):
    status = 403
    code = "url_forbidden"


class TooLarge(UrlFetchError):
    status = 413
    code = "too_large"


class FetchTimeout(UrlFetchError):
    status = 504
    code = "url_timeout"


class LinkError(UrlFetchError):
    """A link that cannot be answered (links.py), with its own status and stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, status=status, code=code)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port`` or ``net/len:port`` -> (host, port); a bare host or IPv6 address has no port."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    host, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return entry, None


@dataclass(frozen=True)
class AllowList:
    """Hosts (exact names) and networks exempt from the address check, each on any port or on one port
    (``127.0.0.1:8080``, ``[::1]:8080``, ``media.example:443``, ``10.0.0.0/8``)."""

    hosts: frozenset[tuple[str, int | None]] = frozenset()
    networks: tuple[tuple[Network, int | None], ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str] | str | None) -> AllowList:
        if entries is None:
            return cls()
        if isinstance(entries, str):
            entries = entries.split(",")
        hosts, nets = set(), []
        for e in (x.strip() for x in entries):
            if not e:
                continue
            host, port = _split_port(e)
            try:
                nets.append((ipaddress.ip_network(host.strip("[]"), strict=False), port))
            except ValueError:
                hosts.add((host.lower().rstrip("."), port))
        return cls(frozenset(hosts), tuple(nets))

    def host_allowed(self, host: str, port: int | None = None) -> bool:
        h = host.lower().rstrip(".")
        return (h, None) in self.hosts or (port is not None and (h, port) in self.hosts)

    def address_allowed(self, addr: IPAddress, port: int | None = None) -> bool:
        return any(addr in n and (p is None or p == port) for n, p in self.networks)


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and may be routed to: IPv4-mapped, 6to4 (2002::/16),
    Teredo (2001::/32: its server and its client) and NAT64 (64:ff9b::/96)."""
    out = [a for a in (addr.ipv4_mapped, addr.sixtofour) if a is not None]
    if addr.teredo is not None:
        out.extend(addr.teredo)
    if addr in NAT64:
        out.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return out


def forbidden_reason(addr: IPAddress) -> str | None:
    """Why a client-supplied URL must not reach this address, or None if it is public."""
    if isinstance(addr, ipaddress.IPv6Address):
        for inner in embedded_ipv4(addr):
            why = forbidden_reason(inner)
            if why:
                return f"{why} wrapped in {addr}"
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
    if addr in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for attr, what in (("is_loopback", "loopback"), ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                       ("is_unspecified", "unspecified"), ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(addr, attr):
            return f"a {what} address"
    if not addr.is_global:
        return "not a public address"
    return None


def check_address(host: str, addr: IPAddress, allow: AllowList, port: int | None = None) -> None:
    if allow.host_allowed(host, port) or allow.address_allowed(addr, port):
        return
    why = forbidden_reason(addr)
    if why:
        where = f"{host}:{port}" if port is not None else host
        raise UrlForbidden(f"refusing to fetch from {where}: it resolves to {addr}, {why}")


class CheckingResolver(ThreadedResolver):
    """Resolves, then refuses the whole host if any of its addresses is not public."""

    def __init__(self, allow: AllowList) -> None:
        super().__init__()
        self.allow = allow

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        for r in results:
            check_address(host, ipaddress.ip_address(r["host"].split("%")[0]), self.allow, port or None)
        return results


def check_url(url: str, allow: AllowList) -> URL:
    """Parse and check what can be checked before connecting: scheme, host, IP literals."""
    try:
        u = URL(url)
    except (ValueError, TypeError) as e:
        raise BadUrl(f"not a valid URL: {e}") from None
    if u.scheme not in {"http", "https"}:
        raise BadUrl(f"only http and https URLs are fetched, not {u.scheme or 'a relative URL'!r}")
    if not u.host:
        raise BadUrl("the URL has no host")
    if u.user or u.password:
        raise BadUrl("URLs with credentials are not fetched")
    try:
        addr = ipaddress.ip_address(u.host.strip("[]").split("%")[0])
    except ValueError:
        return u
    check_address(u.host, addr, allow, u.port)
    return u


@dataclass
class FetchPolicy:
    allow: AllowList = field(default_factory=AllowList)
    max_bytes: int = 50 << 20
    timeout: float = 15.0
    max_redirects: int = 5
    user_agent: str = "CityWok/0.1 (+clip identification)"


@dataclass
class Fetched:
    data: bytes
    url: str
    content_type: str | None


async def fetch(url: str, policy: FetchPolicy) -> Fetched:
    """Download ``url`` under the policy's size, time, redirect and address limits."""
    try:
        return await asyncio.wait_for(_fetch(url, policy), policy.timeout)
    except TimeoutError:
        raise FetchTimeout(f"downloading the URL took longer than {policy.timeout:g} s") from None


async def _fetch(url: str, policy: FetchPolicy) -> Fetched:
    connector = aiohttp.TCPConnector(resolver=CheckingResolver(policy.allow), use_dns_cache=False, force_close=True)
    headers = {"User-Agent": policy.user_agent, "Accept": "audio/*, video/*, */*;q=0.5"}
    async with aiohttp.ClientSession(connector=connector, trust_env=False, headers=headers,
                                     auto_decompress=True) as session:
        current = url
        for _hop in range(policy.max_redirects + 1):
            u = check_url(current, policy.allow)
            try:
                async with session.get(u, allow_redirects=False) as resp:
                    if resp.status in REDIRECT_STATUSES:
                        loc = resp.headers.get("Location")
                        if not loc:
                            raise UrlFetchError(f"{u.host} answered {resp.status} without a Location")
                        current = urljoin(str(u), loc)
                        continue
                    if resp.status >= 400:
                        raise UrlFetchError(f"{u.host} answered HTTP {resp.status} for the URL")
                    declared = resp.content_length
                    if declared is not None and declared > policy.max_bytes:
                        raise TooLarge(f"the file at the URL is {declared} bytes; the limit is {policy.max_bytes}")
                    data = await _read_capped(resp, policy.max_bytes)
                    return Fetched(data, str(u), resp.headers.get("Content-Type"))
            except UrlForbidden:
                raise
            except aiohttp.InvalidURL as e:
                raise BadUrl(f"not a valid URL: {e}") from None
            except (aiohttp.ClientError, OSError) as e:
                raise UrlFetchError(f"could not download from {u.host}: {e}") from None
        raise UrlFetchError(f"more than {policy.max_redirects} redirects")


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(64 << 10):
        buf += chunk
        if len(buf) > limit:
            raise TooLarge(f"the file at the URL is larger than the {limit}-byte limit")
    return bytes(buf)
