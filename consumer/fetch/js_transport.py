"""An httpx transport over the Workers runtime's JS `fetch`, so `Fetcher` runs unchanged in a Worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from consumer.fetch.addresses import AddressRefused
from shared.backends.jsvalues import (
    abort_controller,
    body_reader,
    cancel_reader,
    fetch_init,
    is_js_error,
    read_chunk,
    response_headers,
    response_status,
)
from shared.errors import BlockedAddress
from shared.guard import AddressPolicy, check_host, literal_address

#: Request headers the runtime sets itself. Accept-Encoding goes too: the runtime decodes only what it offers.
REQUEST_HEADERS_DROPPED = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "accept-encoding", "upgrade"}
)
#: Response headers that describe the wire, not the body JS fetch hands over (already decoded and de-chunked).
RESPONSE_HEADERS_DROPPED = frozenset(
    {"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"}
)


class JsFetchTransport(httpx.AsyncBaseTransport):
    """Sends each request with JS `fetch(url, {method, headers, body, redirect: "manual"})`, guarded first.

    What the guard checks here: the scheme (http/https), a host that is an IP literal (or `localhost`)
    against `policy`, and the port (the policy's ports, 80/443 by default, unless the literal address is
    exempt). Refusals raise `AddressRefused` before `fetch` is called, so nothing is sent. What it cannot
    check: the addresses a host name resolves to, since the runtime resolves names itself. On Cloudflare
    that gap is closed by the platform, whose fetch cannot reach private networks (and refuses bare IPs and
    custom ports once deployed); under `wrangler dev` or Miniflare fetch is Node's, so a name resolving to a
    private address would be fetched there.

    Bodies stream chunk by chunk from the JS reader, which is cancelled when the response is closed early
    (at `Fetcher`'s size cap). There is no timeout here: `Fetcher` bounds each page with `asyncio.timeout`,
    and a cancelled request aborts its JS fetch.

    The httpx that pywrangler vendors drops `User-Agent` and lets JS fetch follow redirects itself, which would
    hide every hop from the guard and from `final_url`. This transport asks for `redirect: "manual"`, so each
    3xx comes back to `Fetcher`, which re-checks and follows it by hand as it does over sockets.
    """

    def __init__(self, fetch: Callable[..., Awaitable[Any]], *, policy: AddressPolicy) -> None:
        self._fetch = fetch
        self._policy = policy

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._check(request.url)
        headers = [
            (name, value) for name, value in request.headers.multi_items() if name not in REQUEST_HEADERS_DROPPED
        ]
        controller = abort_controller()
        init = fetch_init(
            request.method, headers, await request.aread(), None if controller is None else controller.signal
        )
        try:
            response = await self._fetch(str(request.url), init)
        except asyncio.CancelledError:
            if controller is not None:
                controller.abort()  # the caller gave up (page deadline): stop the request in the runtime too
            raise
        except Exception as exc:
            if is_js_error(exc):
                raise httpx.ConnectError(f"fetch failed: {exc}", request=request) from exc
            raise
        return httpx.Response(
            response_status(response),
            headers=[
                (name, value) for name, value in response_headers(response) if name not in RESPONSE_HEADERS_DROPPED
            ],
            stream=JsBodyStream(body_reader(response), request),
            request=request,
        )

    def _check(self, url: httpx.URL) -> None:
        host, port = url.host, url.port or (443 if url.scheme == "https" else 80)
        if url.scheme not in ("http", "https"):
            raise AddressRefused(f"scheme {url.scheme!r} is not allowed", host=host, port=port, address=None)
        try:
            check_host(host, self._policy)
        except BlockedAddress as exc:
            raise AddressRefused(str(exc), host=host, port=port, address=literal_address(host)) from exc
        address = literal_address(host)
        if port not in self._policy.ports and (address is None or not self._policy.is_exempt(address)):
            reason = f"port {port} is not allowed (only {self._policy.describe_ports()})"
            raise AddressRefused(reason, host=host, port=port, address=address)


class JsBodyStream(httpx.AsyncByteStream):
    """A JS response body, pulled a chunk at a time; closing it early cancels the rest of the download."""

    def __init__(self, reader: Any | None, request: httpx.Request) -> None:
        self._reader = reader
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self._reader is not None:
            try:
                chunk = await read_chunk(self._reader)
            except Exception as exc:
                if is_js_error(exc):
                    raise httpx.ReadError(f"reading the body failed: {exc}", request=self._request) from exc
                raise
            if chunk is None:
                self._reader = None  # fully read: nothing to cancel
                return
            if chunk:
                yield chunk

    async def aclose(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await cancel_reader(reader)
