"""`Fetcher` over `JsFetchTransport` in Pyodide with Node's real `fetch` (undici), against a loopback server:
what the consumer Worker does for every page. Requests leave only for 127.0.0.1; refused destinations are
proven never to reach `fetch` (the harness records every URL handed to it, and refuses all but loopback).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cloudflare.client import Harness
from tests.fixtures.httpserver import LoopbackServer

USER_AGENT = "scrapeq-test/1.0 (+https://example.invalid/bot)"
HTML = {"Content-Type": "text/html; charset=utf-8"}
PAGE = b"<!doctype html><html><head><title>t</title></head><body>hello</body></html>"


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as loopback:
        yield loopback


async def fetch(harness: Harness, url: str, **settings: Any) -> dict[str, Any]:
    args = {"url": url, "allow": ["127.0.0.0/8"], "user_agent": USER_AGENT, **settings}
    result: dict[str, Any] = await harness.call("run", {"scenario": "fetch", "args": args})
    return result


def body_of(result: dict[str, Any]) -> bytes:
    return base64.b64decode(result["body_b64"])


class Endless:
    """An endless body; `closed` is set once the server stops writing it (the client hung up)."""

    def __init__(self, chunk: bytes) -> None:
        self.chunk = chunk
        self.closed = threading.Event()

    def __call__(self) -> Iterator[bytes]:
        try:
            while True:
                yield self.chunk
        finally:
            self.closed.set()


async def test_redirect_chain_is_followed_hop_by_hop_to_the_final_url(
    cloudflare_harness: Harness, server: LoopbackServer
) -> None:
    start = server.route("/a", status=302, headers={"Location": "/b"})
    server.route("/b", status=301, headers={"Location": server.url("/c")})
    final = server.route("/c", headers=HTML, body=PAGE)
    result = await fetch(cloudflare_harness, start)
    assert (result["final_url"], result["redirects"], result["status_code"]) == (final, 2, 200)
    assert body_of(result) == PAGE
    assert result["fetched"] == [start, server.url("/b"), final]
    assert [hit.path for hit in server.hits] == ["/a", "/b", "/c"]


async def test_our_user_agent_is_sent(cloudflare_harness: Harness, server: LoopbackServer) -> None:
    url = server.route("/page", headers=HTML, body=PAGE)
    await fetch(cloudflare_harness, url)
    [hit] = server.hits_for("/page")
    assert hit.headers["user-agent"] == USER_AGENT


async def test_gzip_body_arrives_decoded_without_its_encoding_headers(
    cloudflare_harness: Harness, server: LoopbackServer
) -> None:
    url = server.route("/gz", headers={**HTML, "Content-Encoding": "gzip"}, body=gzip.compress(PAGE))
    result = await fetch(cloudflare_harness, url)
    assert body_of(result) == PAGE
    assert not {"content-encoding", "content-length"} & set(result["headers"])


async def test_body_over_the_cap_is_too_large_and_the_rest_is_never_read(
    cloudflare_harness: Harness, server: LoopbackServer
) -> None:
    body = Endless(b"<p>" + b"x" * 8189)
    url = server.route("/endless", headers=HTML, body=body)
    result = await fetch(cloudflare_harness, url, max_body_bytes=64 * 1024, total_timeout_s=20.0)
    assert result["error"] == "too_large"
    assert result["elapsed_s"] < 5
    # Cancelling the JS reader closes the connection; without it the server would block on a full socket.
    assert await asyncio.to_thread(body.closed.wait, 5)


@pytest.mark.parametrize(
    "target", ["http://10.0.0.1/", "http://[::1]/", "http://169.254.169.254/latest/meta-data/", "http://0xa000001/"]
)
async def test_redirect_to_a_refused_address_never_reaches_fetch(
    cloudflare_harness: Harness, server: LoopbackServer, target: str
) -> None:
    start = server.route("/r", status=302, headers={"Location": target})
    result = await fetch(cloudflare_harness, start)
    assert result["error"] == "blocked_address"
    assert result["fetched"] == [start]


async def test_other_ports_of_a_public_address_are_refused(cloudflare_harness: Harness) -> None:
    result = await fetch(cloudflare_harness, "http://93.184.216.34:8080/")
    assert result["error"] == "blocked_address"
    assert result["fetched"] == []


async def test_unreachable_server_is_a_connect_error(cloudflare_harness: Harness) -> None:
    with LoopbackServer() as closed:
        url = closed.url("/")
    result = await fetch(cloudflare_harness, url)
    assert result["error"] == "connect_error"
    assert result["fetched"] == [url]
