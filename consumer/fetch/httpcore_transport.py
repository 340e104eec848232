"""The httpcore transport: a network backend that resolves, checks and pins each TCP connection."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable

import httpcore
import httpx

from consumer.fetch.addresses import AddressRefused, Resolver, check_addresses, system_resolver
from shared.guard import AddressPolicy, IPAddress, literal_address

LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


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
