"""An httpx transport over aiohttp for the local consumer: the same network guard, with aiohttp's C parser
(far less CPU per page than httpcore; `benchmarks/` measures it).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

from consumer.fetch.addresses import AddressRefused, Resolver, check_addresses, system_resolver
from shared.guard import AddressPolicy, literal_address

READ_CHUNK = 64 * 1024
MAX_HEADER_LINE = 64 * 1024
MAX_HEADERS = 256


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver port: the checked addresses of a host, or `AddressRefused`."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver) -> None:
        self._policy = policy
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        literal = literal_address(host)
        addresses = [literal] if literal is not None else await self._resolver(host, port)
        if not addresses:
            raise OSError(f"{host} has no address")
        check_addresses(self._policy, host, port, addresses)
        return [
            ResolveResult(
                hostname=host,
                host=str(ip),
                port=port,
                family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in addresses
        ]

    async def close(self) -> None:
        pass


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent with one shared `aiohttp.ClientSession` (created lazily, inside the event loop).

    `Fetcher` keeps talking httpx (redirects, deadline, bounded inflation); this only moves bytes.

    The network guard holds as in `httpcore_transport`: aiohttp's connector asks our resolver for every new
    connection; the resolver resolves once, refuses the host if ANY answer is disallowed (or the port is not
    allowed), and hands aiohttp exactly the checked addresses to connect to — no second lookup, no rebinding
    window. IP literals never reach a resolver in aiohttp, so they are checked here before the request.
    Bodies arrive undecoded (`auto_decompress=False`): `Fetcher` inflates them in bounded steps. Cookies are
    never kept and proxies from the environment are ignored.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 100,
    ) -> None:
        self._policy = policy
        self._ssl: ssl.SSLContext | bool = verify
        self._resolver = GuardedResolver(policy, resolver or system_resolver)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=self._resolver,
                limit=self._max_connections,
                use_dns_cache=False,  # every new connection is resolved and checked again
                keepalive_timeout=5.0,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                # aiohttp's 8 KiB per header line refuses real pages (long Content-Security-Policy headers);
                # these bounds stay close to httpcore's 100 KiB header block.
                max_line_size=MAX_HEADER_LINE,
                max_field_size=MAX_HEADER_LINE,
                max_headers=MAX_HEADERS,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            self._check_literal(request.url)
        except AddressRefused as refused:
            raise httpx.ConnectError(str(refused), request=request) from refused
        timeout = request.extensions.get("timeout", {})
        try:
            response = await self._open().request(
                request.method,
                str(request.url),
                headers=list(request.headers.multi_items()),
                data=request.content or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
                compress=None,
                ssl=self._ssl,
            )
        except Exception as exc:
            raise _translate(exc, request) from (AddressRefused.found_in(exc) or exc)
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    def _check_literal(self, url: httpx.URL) -> None:
        literal = literal_address(url.host)
        if literal is not None:
            port = url.port or (443 if url.scheme == "https" else 80)
            check_addresses(self._policy, url.host, port, [literal])

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(READ_CHUNK):
                yield chunk
        except Exception as exc:
            raise _translate(exc, self._request) from exc

    async def aclose(self) -> None:
        # Unread bytes left on the connection (a body cut at the cap): drop the connection, do not reuse it.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


def _translate(exc: BaseException, request: httpx.Request) -> Exception:
    """aiohttp's errors as the httpx errors `Fetcher` maps (a refusal is chained as the cause by the caller)."""
    refused = AddressRefused.found_in(exc)
    if refused is not None:
        return httpx.ConnectError(str(refused), request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout(str(exc) or "timed out", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError | OSError):
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request)
    if isinstance(exc, aiohttp.ClientError):
        return httpx.ConnectError(str(exc) or type(exc).__name__, request=request)
    return httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request)
