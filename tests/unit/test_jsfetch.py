"""`JsFetchTransport` on CPython over a fake JS `fetch`: the request it builds, the guard it applies before
fetching, and the response it hands to httpx. Node's real fetch in Pyodide: tests/contract/test_cloudflare_fetch.py.
"""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from consumer.fetch.addresses import AddressRefused
from consumer.fetch.fetcher import Fetcher
from consumer.fetch.js_transport import JsFetchTransport
from shared.errors import BlockedAddress
from shared.guard import AddressPolicy
from tests.fixtures.jsfakes import JsException

LOOPBACK = AddressPolicy([ipaddress.ip_network("127.0.0.0/8")])


class FakeReader:
    def __init__(self, chunks: list[bytes], fail_at: int | None = None) -> None:
        self.chunks = chunks
        self.reads = 0
        self.cancelled = False
        self.fail_at = fail_at

    async def read(self) -> Any:
        if self.reads == self.fail_at:
            raise JsException("TypeError: terminated")
        self.reads += 1
        if self.reads > len(self.chunks):
            return SimpleNamespace(done=True, value=None)
        return SimpleNamespace(done=False, value=self.chunks[self.reads - 1])

    async def cancel(self) -> None:
        self.cancelled = True


class FakeResponse:
    """A JS `Response` as Pyodide shows it: `status`, `headers.entries()`, `body.getReader()` (null body: None)."""

    def __init__(self, status: int, headers: list[tuple[str, str]], reader: FakeReader | None) -> None:
        self.status = status
        self.headers = SimpleNamespace(entries=lambda: [list(pair) for pair in headers])
        self.body = None if reader is None else SimpleNamespace(getReader=lambda: reader)


class FakeFetch:
    def __init__(self, *responses: FakeResponse | Exception) -> None:
        self.responses = list(responses)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, url: str, init: dict[str, Any]) -> FakeResponse:
        self.calls.append((url, init))
        response = self.responses.pop(0)
        if isinstance(response, Exception):
            raise response
        return response


def client(fetch: FakeFetch, policy: AddressPolicy = LOOPBACK) -> httpx.AsyncClient:
    transport = JsFetchTransport(fetch, policy=policy)
    return httpx.AsyncClient(transport=transport, headers={"User-Agent": "scrapeq-test"}, trust_env=False)


async def test_request_asks_for_manual_redirects_and_keeps_our_user_agent() -> None:
    fetch = FakeFetch(FakeResponse(200, [], FakeReader([])))
    async with client(fetch) as http:
        await http.get("http://127.0.0.1:8080/p?q=1", headers={"Accept": "text/html"})
    [(url, init)] = fetch.calls
    headers = dict(init["headers"])
    assert (url, init["method"], init["redirect"]) == ("http://127.0.0.1:8080/p?q=1", "GET", "manual")
    assert (headers["user-agent"], headers["accept"]) == ("scrapeq-test", "text/html")
    assert not {"host", "connection", "accept-encoding"} & set(headers)  # the runtime's own
    assert "body" not in init


async def test_response_keeps_its_headers_but_not_the_wire_encoding_ones() -> None:
    headers = [("content-type", "text/html"), ("content-encoding", "gzip"), ("content-length", "20")]
    headers += [("transfer-encoding", "chunked"), ("location", "/next"), ("set-cookie", "a=1"), ("set-cookie", "b=2")]
    fetch = FakeFetch(FakeResponse(302, headers, FakeReader([b"moved"])))
    async with client(fetch) as http:
        response = await http.get("http://127.0.0.1/")
    assert response.status_code == 302
    assert response.headers.multi_items() == [
        ("content-type", "text/html"),
        ("location", "/next"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ]
    assert response.content == b"moved"


async def test_body_is_read_lazily_and_an_early_close_cancels_the_rest() -> None:
    reader = FakeReader([b"a" * 10, b"b" * 10, b"c" * 10])
    fetch = FakeFetch(FakeResponse(200, [], reader))
    async with client(fetch) as http, http.stream("GET", "http://127.0.0.1/") as response:
        assert reader.reads == 0
        async for chunk in response.aiter_raw():
            assert chunk == b"a" * 10
            break
    assert (reader.reads, reader.cancelled) == (1, True)


async def test_a_fully_read_body_is_not_cancelled() -> None:
    reader = FakeReader([b"x"])
    async with client(FakeFetch(FakeResponse(200, [], reader))) as http:
        assert (await http.get("http://127.0.0.1/")).content == b"x"
    assert not reader.cancelled


async def test_null_body_is_empty() -> None:
    async with client(FakeFetch(FakeResponse(204, [], None))) as http:
        assert (await http.get("http://127.0.0.1/")).content == b""


async def test_rejected_fetch_is_a_connect_error() -> None:
    async with client(FakeFetch(JsException("TypeError: fetch failed"))) as http:
        with pytest.raises(httpx.ConnectError, match="fetch failed"):
            await http.get("http://127.0.0.1/")


async def test_failure_mid_body_is_a_read_error() -> None:
    async with client(FakeFetch(FakeResponse(200, [], FakeReader([b"a", b"b"], fail_at=1)))) as http:
        with pytest.raises(httpx.ReadError):
            await http.get("http://127.0.0.1/")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://localhost/",  # a name a resolver answers with loopback, not exempt under the default policy
        "http://169.254.169.254/latest/meta-data/",
        "http://93.184.216.34:8080/",  # public, but not port 80 or 443
        "http://example.com:22/",  # a name: no exempt address to allow its port
        "ftp://example.com/",
    ],
)
async def test_refused_destinations_never_reach_fetch(url: str) -> None:
    fetch = FakeFetch()
    transport = JsFetchTransport(fetch, policy=AddressPolicy())
    with pytest.raises(AddressRefused):
        await transport.handle_async_request(httpx.Request("GET", url))
    assert fetch.calls == []


@pytest.mark.parametrize("url", ["http://example.com/", "https://93.184.216.34/", "http://127.0.0.1:8080/"])
async def test_allowed_destinations_are_fetched(url: str) -> None:
    fetch = FakeFetch(FakeResponse(200, [], None))
    transport = JsFetchTransport(fetch, policy=LOOPBACK)
    await transport.handle_async_request(httpx.Request("GET", url))
    assert [called for called, _ in fetch.calls] == [url]


async def test_fetcher_reports_a_refused_redirect_as_blocked_address() -> None:
    fetch = FakeFetch(FakeResponse(302, [("location", "http://10.0.0.1/")], FakeReader([])))
    settings = SimpleNamespace(fetch_total_timeout_s=5.0, fetch_max_redirects=5, fetch_max_body_bytes=1024)
    async with client(fetch) as http:
        with pytest.raises(BlockedAddress):
            await Fetcher(http, settings=settings).fetch("http://127.0.0.1/")  # type: ignore[arg-type]
    assert len(fetch.calls) == 1
