"""Connect-time network guard: the httpcore backend that resolves, checks and pins each TCP connection.

Also the consumer's one HTTP client, every connection of which (redirect hops, reconnects) goes through it.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import httpcore
import httpx

from shared.guard import AddressPolicy, IPAddress, literal_address

if TYPE_CHECKING:  # annotations only: `AddressRefused` is imported in Workers, where pydantic may not be
    from shared.settings import Settings

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""`(host, port) -> addresses`; every answer is checked, and the connection goes to one of them."""

ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1"
#: Only what `consumer.fetch.fetcher` inflates in bounded steps; never br/zstd, which httpx would offer if installed.
ACCEPT_ENCODING = "gzip, deflate"
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class AddressRefused(httpcore.ConnectError):
    """The guard refused a destination; httpx re-raises it as `httpx.ConnectError` with it as `__cause__`."""

    def __init__(self, message: str, *, host: str, port: int, address: IPAddress | None) -> None:
        super().__init__(message)
        self.host, self.port, self.address = host, port, address

    @classmethod
    def found_in(cls, exc: BaseException) -> AddressRefused | None:
        """The guard's refusal in the chain of causes of `exc` (httpx and aiohttp each wrap it once or twice)."""
        seen: BaseException | None = exc
        for _ in range(5):
            if seen is None or isinstance(seen, cls):
                return seen
            seen = seen.__cause__ or seen.__context__
        return None


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """All A and AAAA answers of the system resolver, in its order, without duplicates."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: dict[IPAddress, None] = {}
    for *_, sockaddr in infos:
        addresses[ipaddress.ip_address(sockaddr[0])] = None
    return list(addresses)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host once, refuses it if ANY answer is disallowed, then connects to a checked IP itself.

    Connecting to the address that was checked (never to the name) leaves no window for DNS rebinding. TLS is
    unaffected: httpcore takes SNI and the certificate's expected name from the request origin
    (`AsyncHTTPConnection._connect` → `start_tls(server_hostname=origin.host)`), not from this call.

    Port rule: only the policy's ports (80 and 443 unless `SCRAPEQ_FETCH_ALLOWED_PORTS` says otherwise), unless
    the address is inside `allow_networks`. Fetching arbitrary ports of
    public hosts is port scanning on a tenant's behalf; the exemption lets tests and intranet deployments use
    the random or custom ports their servers listen on.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolver = resolver or system_resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        self._check(host, port, addresses)
        error: Exception | None = None
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(ip), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc  # try the next checked address, as getaddrinfo-based clients do
        raise error or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("unix sockets are not allowed", host=path, port=0, address=None)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        literal = literal_address(host)
        if literal is not None:
            return [literal]
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolver(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        return addresses

    def _check(self, host: str, port: int, addresses: list[IPAddress]) -> None:
        check_addresses(self._policy, host, port, addresses)


def check_addresses(policy: AddressPolicy, host: str, port: int, addresses: list[IPAddress]) -> None:
    """Refuse the connection (`AddressRefused`) if ANY address of the host, or the port, is not allowed."""
    # A host name's resolved address stays out of the message: it would tell tenants about internal DNS.
    literal = literal_address(host) is not None
    for ip in addresses:
        if not policy.is_allowed(ip):
            reason = f"{ip} is not a public address" if literal else f"{host} resolves to a non-public address"
        elif not policy.port_allowed(ip, port):
            reason = f"port {port} is not allowed (only {policy.describe_ports()})"
        else:
            continue
        raise AddressRefused(reason, host=host, port=port, address=ip)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An `AsyncHTTPTransport` whose connections all go through `backend`. No proxy, no unix socket."""

    def __init__(
        self,
        backend: httpcore.AsyncNetworkBackend,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = LIMITS,
        http1: bool = True,
        http2: bool = False,
        retries: int = 0,
    ) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False, limits=limits, http1=http1, http2=http2, retries=retries)
        # httpx 0.28.1 (pinned) takes no network backend, so the pool is rebuilt with the same options plus
        # ours. `_pool` is private: re-check this (and the test comparing both pools) on any httpx upgrade.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            retries=retries,
            network_backend=backend,
        )


def build_client(
    settings: Settings, *, resolver: Resolver | None = None, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """The one client of a consumer process: guarded, no env proxies, no redirects, no cookies kept.

    `settings.fetch_engine` picks what moves the bytes: aiohttp (the default: far cheaper per page) or httpx's
    own httpcore; both run the same guard and sit under the same httpx API.
    """
    policy = AddressPolicy(settings.allow_private_networks, ports=settings.fetch_allowed_ports)
    transport: httpx.AsyncBaseTransport
    if settings.fetch_engine == "aiohttp":
        from consumer.fetch.aiohttp_transport import AiohttpTransport  # aiohttp is a local-only dependency

        transport = AiohttpTransport(policy, resolver=resolver, verify=verify)
    else:
        transport = GuardedTransport(GuardedBackend(policy, resolver=resolver), verify=verify)
    timeout = httpx.Timeout(
        connect=settings.fetch_connect_timeout_s,
        read=settings.fetch_read_timeout_s,
        write=settings.fetch_read_timeout_s,
        pool=settings.fetch_connect_timeout_s,
    )
    headers = {"User-Agent": settings.user_agent, "Accept": ACCEPT, "Accept-Encoding": ACCEPT_ENCODING}
    return httpx.AsyncClient(
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        timeout=timeout,
        headers=headers,
        cookies=_no_cookies(),
    )


def _no_cookies() -> http.cookiejar.CookieJar:
    # One client serves every tenant: a cookie set during one tenant's crawl must never reach another's.
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
