"""The page fetcher and the connect-time guard against loopback servers (no other network is ever touched)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from consumer.fetch import HTML_TYPES, Fetcher
from consumer.netguard import (
    LIMITS,
    AddressRefused,
    GuardedBackend,
    GuardedTransport,
    Resolver,
    build_client,
    system_resolver,
)
from shared.errors import (
    BadResponse,
    BlockedAddress,
    ConnectFailed,
    FetchError,
    FetchTimeout,
    TooLarge,
    TooManyRedirects,
    UnsupportedContentType,
    UnsupportedEncoding,
)
from shared.guard import AddressPolicy, IPAddress
from shared.settings import Settings
from tests.fixtures.httpserver import LoopbackServer, raw_server

MiB = 1024 * 1024
HTML = {"Content-Type": "text/html; charset=utf-8"}
PAGE = b"<!doctype html><html><head><title>t</title></head><body>hello</body></html>"
LOOPBACK_ALLOWED = ["127.0.0.0/8"]


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "allow_private_networks": LOOPBACK_ALLOWED,
        "fetch_connect_timeout_s": 2.0,
        "fetch_read_timeout_s": 2.0,
        "fetch_total_timeout_s": 5.0,
        "fetch_max_body_bytes": MiB,
        "fetch_max_redirects": 5,
    }
    return Settings(**(values | overrides))


def static_resolver(table: dict[str, list[str]], calls: list[str] | None = None) -> Resolver:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(address) for address in table[host]]

    return resolve


@contextlib.asynccontextmanager
async def open_fetcher(settings: Settings, resolver: Resolver | None = None, **kw: Any) -> AsyncIterator[Fetcher]:
    async with build_client(settings, resolver=resolver, **kw) as client:
        yield Fetcher(client, settings=settings)


async def fetch(url: str, settings: Settings | None = None, resolver: Resolver | None = None, **kw: Any) -> Any:
    async with open_fetcher(settings or make_settings(), resolver) as fetcher:
        return await fetcher.fetch(url, **kw)


def gzipped(data: bytes, layers: int = 1) -> bytes:
    for _ in range(layers):
        data = gzip.compress(data)
    return data


def blanks_gzipped(size: int) -> bytes:
    """gzip of `size` spaces, built in 1 MiB steps so the test itself stays small in memory.

    Spaces, not zero bytes: NULs at the start of a body labelled text/html make it binary (refused early)."""
    engine = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * MiB
    parts = [engine.compress(block) for _ in range(size // MiB)]
    return b"".join([*parts, engine.flush()])


def endless(chunk: bytes, delay_s: float = 0.0) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        while True:
            yield chunk
            if delay_s:
                time.sleep(delay_s)

    return chunks


# --- plain pages and redirects


async def test_fetches_a_page_with_its_metadata(http_server: LoopbackServer) -> None:
    url = http_server.route("/page", headers=HTML, body=PAGE)
    result = await fetch(url)
    assert (result.status_code, result.content_type, result.charset, result.body) == (
        200,
        "text/html",
        "utf-8",
        PAGE,
    )
    assert (result.url, result.final_url, result.redirects) == (url, url, 0)
    assert result.headers["content-type"] == "text/html; charset=utf-8"
    hit = http_server.hits_for("/page")[0]
    assert hit.headers["accept-encoding"] == "gzip, deflate"
    assert hit.headers["user-agent"].startswith("scrapeq/")
    assert hit.headers["accept"].startswith("text/html")


async def test_follows_a_redirect_chain_to_the_final_url(http_server: LoopbackServer) -> None:
    start = http_server.route("/a", status=302, headers={"Location": "/b?utm_source=x"})
    http_server.route("/b", status=301, headers={"Location": http_server.url("/c")})
    http_server.route("/c", status=308, headers={"Location": "d"})
    final = http_server.route("/d", headers=HTML, body=PAGE)
    result = await fetch(start)
    assert (result.final_url, result.redirects, result.url, result.body) == (final, 3, start, PAGE)
    assert [hit.path for hit in http_server.hits] == ["/a", "/b", "/c", "/d"]  # tracking query dropped


async def test_redirect_loop_is_refused(http_server: LoopbackServer) -> None:
    http_server.route("/x", status=302, headers={"Location": "/y"})
    http_server.route("/y", status=307, headers={"Location": "/x"})
    with pytest.raises(TooManyRedirects, match="loop"):
        await fetch(http_server.url("/x"))
    assert len(http_server.hits) == 2


async def test_too_many_redirects(http_server: LoopbackServer) -> None:
    for n in range(10):
        http_server.route(f"/r{n}", status=302, headers={"Location": f"/r{n + 1}"})
    with pytest.raises(TooManyRedirects, match="more than 3"):
        await fetch(http_server.url("/r0"), make_settings(fetch_max_redirects=3))
    assert len(http_server.hits) == 4


@pytest.mark.parametrize(
    "target",
    ["file:///etc/passwd", "ftp://127.0.0.1/", "gopher://127.0.0.1:70/", "data:,x", "javascript:alert(1)"],
)
async def test_redirect_to_another_scheme_is_refused(http_server: LoopbackServer, target: str) -> None:
    url = http_server.route("/go", status=302, headers={"Location": target})
    with pytest.raises(BlockedAddress, match="http"):
        await fetch(url)


async def test_redirect_to_a_private_address_is_refused_at_the_hop(http_server: LoopbackServer) -> None:
    url = http_server.route("/go", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    with pytest.raises(BlockedAddress, match=r"169\.254\.169\.254"):
        await fetch(url)


async def test_redirect_without_location_is_a_result(http_server: LoopbackServer) -> None:
    result = await fetch(http_server.route("/300", status=300, headers=HTML, body=PAGE))
    assert (result.status_code, result.redirects, result.body) == (300, 0, PAGE)


# --- the guard, end to end


async def test_guard_refuses_loopback_by_default(http_server: LoopbackServer) -> None:
    url = http_server.route("/", headers=HTML, body=PAGE)
    with pytest.raises(BlockedAddress, match=r"127\.0\.0\.1"):
        await fetch(url, make_settings(allow_private_networks=[]))
    assert http_server.hits == []


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "127.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_guard_refuses_loopback_in_any_spelling(http_server: LoopbackServer, host: str) -> None:
    calls: list[str] = []
    with pytest.raises(BlockedAddress):
        await fetch(
            http_server.url("/", host=host),
            make_settings(allow_private_networks=[]),
            static_resolver({}, calls),
        )
    assert http_server.hits == []
    assert calls == []  # literals never reach DNS


async def test_guard_allows_allow_listed_networks(http_server: LoopbackServer) -> None:
    result = await fetch(http_server.route("/", headers=HTML, body=PAGE), make_settings())
    assert result.status_code == 200


async def test_name_resolving_to_loopback_is_refused_without_a_connection(
    http_server: LoopbackServer,
) -> None:
    calls: list[str] = []
    resolver = static_resolver({"site.test": ["127.0.0.1"]}, calls)
    with pytest.raises(BlockedAddress, match=r"site\.test resolves to a non-public address"):
        await fetch(http_server.url("/", host="site.test"), make_settings(allow_private_networks=[]), resolver)
    assert calls == ["site.test"]
    assert http_server.hits == []


async def test_name_resolving_to_an_allowed_address_connects_to_that_address(
    http_server: LoopbackServer,
) -> None:
    calls: list[str] = []
    http_server.route("/", headers=HTML, body=PAGE)
    resolver = static_resolver({"site.test": ["127.0.0.1"]}, calls)
    result = await fetch(http_server.url("/", host="site.test"), make_settings(), resolver)
    assert result.status_code == 200
    assert calls == ["site.test"]  # resolved once, by the guard only
    assert http_server.hits[0].headers["host"] == f"site.test:{http_server.port}"


async def test_answer_mixing_public_and_private_addresses_is_refused() -> None:
    resolver = static_resolver({"mixed.test": ["93.184.216.34", "10.0.0.1"]})
    with pytest.raises(BlockedAddress, match=r"mixed\.test resolves to a non-public address"):
        await fetch("http://mixed.test/", make_settings(allow_private_networks=[]), resolver)


async def test_public_address_on_a_non_standard_port_is_refused() -> None:
    resolver = static_resolver({"public.test": ["93.184.216.34"]})
    with pytest.raises(BlockedAddress, match="port 8080"):
        await fetch("http://public.test:8080/", make_settings(allow_private_networks=[]), resolver)


async def test_environment_proxies_are_ignored(http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with LoopbackServer() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url("/"))
        result = await fetch(http_server.route("/", headers=HTML, body=PAGE))
        assert result.status_code == 200
        assert proxy.hits == []
    assert len(http_server.hits) == 1


async def test_cookies_are_never_kept_between_requests(http_server: LoopbackServer) -> None:
    url = http_server.route("/", headers={**HTML, "Set-Cookie": "session=tenant-a; Path=/"}, body=PAGE)
    async with open_fetcher(make_settings()) as fetcher:
        await fetcher.fetch(url)
        await fetcher.fetch(url)
    assert all("cookie" not in hit.headers for hit in http_server.hits)


# --- bodies: encodings, caps, deadline


async def test_gzip_body_is_inflated(http_server: LoopbackServer) -> None:
    url = http_server.route("/", headers={**HTML, "Content-Encoding": "gzip"}, body=gzipped(PAGE))
    assert (await fetch(url)).body == PAGE


@pytest.mark.parametrize("layers", [1, 2])
async def test_large_compressed_body_is_inflated_completely(http_server: LoopbackServer, layers: int) -> None:
    page = PAGE + b" " * 700_000 + b"".join(b"line %d\n" % n for n in range(20_000)) + PAGE
    encoding = ", ".join(["gzip"] * layers)
    url = http_server.route("/", headers={**HTML, "Content-Encoding": encoding}, body=gzipped(page, layers))
    assert (await fetch(url)).body == page


async def test_stacked_gzip_is_inflated_layer_by_layer(http_server: LoopbackServer) -> None:
    url = http_server.route("/", headers={**HTML, "Content-Encoding": "gzip, x-gzip"}, body=gzipped(PAGE, 2))
    assert (await fetch(url)).body == PAGE


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
async def test_deflate_in_either_framing_is_inflated(http_server: LoopbackServer, wbits: int) -> None:
    engine = zlib.compressobj(6, zlib.DEFLATED, wbits)
    body = engine.compress(PAGE) + engine.flush()
    url = http_server.route("/", headers={**HTML, "Content-Encoding": "deflate"}, body=body)
    assert (await fetch(url)).body == PAGE


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip, gzip, gzip", gzipped(PAGE, 3)), ("br", PAGE), ("zstd", PAGE), ("compress", PAGE)],
)
async def test_unsupported_or_too_deep_encodings_are_refused(
    http_server: LoopbackServer, encoding: str, body: bytes
) -> None:
    url = http_server.route("/", headers={**HTML, "Content-Encoding": encoding}, body=body)
    with pytest.raises(UnsupportedEncoding):
        await fetch(url)


@pytest.mark.parametrize(("layers", "size"), [(1, 50 * MiB), (2, 100 * MiB)], ids=["gzip", "gzip-gzip"])
async def test_gzip_bomb_stops_at_the_cap_with_bounded_memory(
    http_server: LoopbackServer, layers: int, size: int
) -> None:
    bomb = blanks_gzipped(size)
    if layers == 2:
        bomb = gzip.compress(bomb)
    encoding = ", ".join(["gzip"] * layers)
    url = http_server.route("/", headers={**HTML, "Content-Encoding": encoding}, body=bomb)
    settings = make_settings(fetch_max_body_bytes=MiB)
    async with open_fetcher(settings) as fetcher:
        tracemalloc.start()
        try:
            with pytest.raises(TooLarge):
                await fetcher.fetch(url)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(bomb) < 200 * 1024
    assert peak < MiB + MiB, f"peak {peak / MiB:.1f} MiB"  # the cap, plus well under a MiB of overhead


async def test_content_length_above_the_cap_is_refused_before_reading(http_server: LoopbackServer) -> None:
    headers = {**HTML, "Content-Length": str(10 * 1024**3)}
    url = http_server.route("/", headers=headers, body=endless(b"x" * 65536))
    with pytest.raises(TooLarge, match="Content-Length"):
        await fetch(url)


async def test_endless_chunked_body_is_cut_at_the_cap(http_server: LoopbackServer) -> None:
    url = http_server.route("/", headers=HTML, body=endless(b"x" * 65536))
    with pytest.raises(TooLarge, match="body exceeds"):
        await fetch(url, make_settings(fetch_max_body_bytes=256 * 1024))


async def test_body_exactly_at_the_cap_is_accepted(http_server: LoopbackServer) -> None:
    url = http_server.route("/", headers={**HTML, "Content-Encoding": "gzip"}, body=gzipped(b"a" * 4096))
    assert len((await fetch(url, make_settings(fetch_max_body_bytes=4096))).body) == 4096


async def test_slow_trickle_hits_the_whole_page_deadline(http_server: LoopbackServer) -> None:
    url = http_server.route("/", headers=HTML, body=endless(b"x", delay_s=0.05))
    settings = make_settings(fetch_total_timeout_s=1.0, fetch_read_timeout_s=5.0)
    started = time.monotonic()
    with pytest.raises(FetchTimeout, match="within 1 s"):
        await fetch(url, settings)
    assert time.monotonic() - started < 2.0


# --- content types and statuses


async def test_image_is_refused_without_reading_the_body(http_server: LoopbackServer) -> None:
    url = http_server.route("/img", headers={"Content-Type": "image/png"}, body=endless(b"\x89PNG" * 16384))
    with pytest.raises(UnsupportedContentType, match="image/png"):
        await fetch(url)


async def test_accept_can_widen_the_types(http_server: LoopbackServer) -> None:
    url = http_server.route("/robots.txt", headers={"Content-Type": "application/octet-stream"}, body=b"User-agent: *")
    result = await fetch(url, accept={"application/octet-stream"})
    assert result.body == b"User-agent: *"


async def test_error_status_is_a_result_not_an_exception(http_server: LoopbackServer) -> None:
    url = http_server.route("/missing", status=404, headers=HTML, body=b"<html>gone</html>")
    result = await fetch(url)
    assert (result.status_code, result.body) == (404, b"<html>gone</html>")


async def test_error_status_with_a_type_not_accepted_skips_the_body(http_server: LoopbackServer) -> None:
    url = http_server.route("/err", status=503, headers={"Content-Type": "application/json"}, body=b"{}")
    result = await fetch(url)
    assert (result.status_code, result.content_type, result.body) == (503, "application/json", b"")


@pytest.mark.parametrize(
    ("body", "sniffed"),
    [
        (b"\n  <!DOCTYPE html><html><body>x</body></html>", "text/html"),
        (b"\xef\xbb\xbf<html lang=en>" + b"x" * 1000, "text/html"),
        (b"<p>short", "text/html"),
        (b"just some words\n" * 100, "text/plain"),
    ],
)
async def test_missing_content_type_is_sniffed(http_server: LoopbackServer, body: bytes, sniffed: str) -> None:
    result = await fetch(http_server.route("/", body=body))
    assert (result.content_type, result.body) == (sniffed, body)


@pytest.mark.parametrize("media", ["text/html", "text/plain", "application/xhtml+xml"])
async def test_binary_data_under_a_text_label_is_refused(http_server: LoopbackServer, media: str) -> None:
    url = http_server.route("/", headers={"Content-Type": media}, body=endless(b"\x89PNG\r\n\x1a\n\x00\x00" * 4096))
    with pytest.raises(UnsupportedContentType, match="application/octet-stream"):
        await fetch(url)


@pytest.mark.parametrize("charset", ["utf-16", "UTF-16LE", "utf-32"])
async def test_wide_text_with_nul_bytes_is_not_taken_for_binary(http_server: LoopbackServer, charset: str) -> None:
    codec = {"utf-16": "utf-16-le", "UTF-16LE": "utf-16-le", "utf-32": "utf-32-le"}[charset]
    body = "<html><body>wide text</body></html>".encode(codec) * 40  # no BOM: only the label says so
    url = http_server.route("/", headers={"Content-Type": f"text/html; charset={charset}"}, body=body)
    assert (await fetch(url)).body == body


async def test_missing_content_type_with_binary_data_is_refused(http_server: LoopbackServer) -> None:
    url = http_server.route("/", body=endless(b"\x00\x01\x02\x03" * 1024))
    with pytest.raises(UnsupportedContentType, match="application/octet-stream"):
        await fetch(url)


# --- every failure is a FetchError


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def never_answers(host: str, port: int) -> list[IPAddress]:
    await asyncio.sleep(30)
    return []


OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
# A reset mid-body is a dropped connection to httpcore (`ReadError`) and a short body to aiohttp.
DROPPED = (ConnectFailed, BadResponse)
FAILURES: list[tuple[str, dict[str, Any], type[FetchError] | tuple[type[FetchError], ...]]] = [
    ("connection refused", {"port": "closed"}, ConnectFailed),
    ("unknown host", {"host": "nowhere.test"}, ConnectFailed),
    ("empty DNS answer", {"host": "empty.test"}, ConnectFailed),
    ("resolver hangs", {"host": "slow.test", "resolver": never_answers}, FetchTimeout),
    ("garbage response", {"raw": b"garbage\r\n\r\n"}, BadResponse),
    ("reset after headers", {"raw": OK + b"Content-Length: 9\r\n\r\nab", "then": "reset"}, DROPPED),
    ("truncated body", {"raw": OK + b"Content-Length: 99\r\n\r\nab"}, BadResponse),
    ("bad chunk framing", {"raw": OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"}, BadResponse),
    ("oversized header block", {"raw": OK + b"X-Big: " + b"a" * 200_000 + b"\r\n\r\n"}, BadResponse),
    ("never answers", {"raw": b"", "then": "hold"}, FetchTimeout),
    ("TLS to a plain server", {"raw": b"HTTP/1.1 400 Bad\r\n\r\n", "scheme": "https"}, ConnectFailed),
    ("corrupt gzip", {"route": ({**HTML, "Content-Encoding": "gzip"}, b"\x1f\x8bnot gzip")}, BadResponse),
    ("bad Location", {"route": ({"Location": "http://[::1"}, b""), "status": 302}, BadResponse),
    ("userinfo Location", {"route": ({"Location": "http://u@a.test/"}, b""), "status": 301}, BlockedAddress),
]  # fmt: skip


@pytest.mark.parametrize(("case", "setup", "expected"), FAILURES, ids=[case for case, *_ in FAILURES])
async def test_every_failure_is_a_fetch_error(
    http_server: LoopbackServer,
    case: str,
    setup: dict[str, Any],
    expected: type[FetchError] | tuple[type[FetchError], ...],
) -> None:
    settings = make_settings(fetch_connect_timeout_s=0.5, fetch_read_timeout_s=0.5)
    resolver = setup.get("resolver") or static_resolver({"empty.test": []})
    with contextlib.ExitStack() as stack:
        scheme, host, port = setup.get("scheme", "http"), setup.get("host", "127.0.0.1"), http_server.port
        if "raw" in setup:
            port = stack.enter_context(raw_server(setup["raw"], then=setup.get("then", "close")))
        elif setup.get("port") == "closed":
            port = closed_port()
        elif "route" in setup:
            headers, body = setup["route"]
            http_server.route("/", status=setup.get("status", 200), headers=headers, body=body)
        with pytest.raises(FetchError) as caught:
            await fetch(f"{scheme}://{host}:{port}/", settings, resolver)
    allowed = expected if isinstance(expected, tuple) else (expected,)
    assert type(caught.value) in allowed, repr(caught.value)


# --- the connect-time backend and the transport


class RecordingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, failing: set[str] | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.failing = failing or set()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.calls.append((host, port))
        if host in self.failing:
            raise httpcore.ConnectError("refused")
        return httpcore.AsyncNetworkStream()


def guarded(
    table: dict[str, list[str]],
    calls: list[str],
    *,
    allow: tuple[str, ...] = (),
    failing: set[str] | None = None,
) -> tuple[GuardedBackend, RecordingBackend]:
    inner = RecordingBackend(failing)
    policy = AddressPolicy([ipaddress.ip_network(net) for net in allow])
    return GuardedBackend(policy, resolver=static_resolver(table, calls), inner=inner), inner


async def test_backend_connects_to_the_checked_address_not_the_name() -> None:
    calls: list[str] = []
    backend, inner = guarded({"site.test": ["93.184.216.34"]}, calls)
    await backend.connect_tcp("site.test", 443)
    assert inner.calls == [("93.184.216.34", 443)]
    assert calls == ["site.test"]


async def test_backend_refuses_before_any_connection() -> None:
    backend, inner = guarded({"mixed.test": ["93.184.216.34", "::1"]}, [])
    with pytest.raises(AddressRefused) as caught:
        await backend.connect_tcp("mixed.test", 80)
    assert (inner.calls, str(caught.value.address)) == ([], "::1")


@pytest.mark.parametrize(
    ("address", "port", "allowed"),
    [("93.184.216.34", 80, True), ("93.184.216.34", 8443, False), ("127.0.0.1", 8443, True)],
)
async def test_backend_port_rule(address: str, port: int, allowed: bool) -> None:
    backend, inner = guarded({"h.test": [address]}, [], allow=("127.0.0.0/8",))
    if allowed:
        await backend.connect_tcp("h.test", port)
        assert inner.calls == [(address, port)]
    else:
        with pytest.raises(AddressRefused, match=f"port {port}"):
            await backend.connect_tcp("h.test", port)
        assert inner.calls == []


async def test_backend_tries_the_next_checked_address_when_one_fails() -> None:
    backend, inner = guarded({"two.test": ["93.184.216.34", "93.184.216.35"]}, [], failing={"93.184.216.34"})
    await backend.connect_tcp("two.test", 80)
    assert inner.calls == [("93.184.216.34", 80), ("93.184.216.35", 80)]


async def test_backend_refuses_unix_sockets() -> None:
    backend, _ = guarded({}, [])
    with pytest.raises(AddressRefused):
        await backend.connect_unix_socket("/var/run/docker.sock")


def test_guarded_transport_keeps_every_pool_option() -> None:
    context = ssl.create_default_context()
    transport = GuardedTransport(GuardedBackend(AddressPolicy()), verify=context, limits=LIMITS)
    plain = httpx.AsyncHTTPTransport(verify=context, trust_env=False, limits=LIMITS)
    ignored = {"_network_backend", "_optional_thread_lock"}

    def options(pool: object) -> dict[str, Any]:
        return {key: value for key, value in vars(pool).items() if key not in ignored}

    assert options(transport._pool) == options(plain._pool)
    assert isinstance(transport._pool._network_backend, GuardedBackend)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_default_accept_is_html_and_text() -> None:
    assert set(HTML_TYPES) == {"text/html", "application/xhtml+xml", "text/plain"}


async def test_client_ignores_the_environment_and_never_follows_redirects() -> None:
    settings = make_settings(fetch_connect_timeout_s=3.0, fetch_read_timeout_s=7.0)
    async with build_client(settings) as client:
        assert (client.trust_env, client.follow_redirects) == (False, False)
        assert (client.timeout.connect, client.timeout.read, client.timeout.pool) == (3.0, 7.0, 3.0)
        assert client.headers["accept-encoding"] == "gzip, deflate"


async def test_system_resolver_returns_every_answer_as_addresses() -> None:
    addresses = await system_resolver("localhost", 80)  # /etc/hosts: no DNS traffic
    assert ipaddress.ip_address("127.0.0.1") in addresses
    assert len(addresses) == len(set(addresses))


# --- TLS: connecting to the pinned IP keeps SNI and certificate checks on the host name


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=site.test",
         "-addext", "subjectAltName=DNS:site.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_uses_the_host_name_while_connecting_to_the_checked_ip(
    tls_files: tuple[Path, Path],
) -> None:
    cert, key = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, ctx: names.append(name)
    client_context = ssl.create_default_context(cafile=str(cert))
    resolver = static_resolver({"site.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    with LoopbackServer(tls=server_context) as server:
        server.route("/", headers=HTML, body=PAGE)
        async with open_fetcher(make_settings(), resolver, verify=client_context) as fetcher:
            result = await fetcher.fetch(server.url("/", host="site.test"))
            assert (result.status_code, result.body) == (200, PAGE)
            with pytest.raises(ConnectFailed, match=r"[Hh]ostname mismatch|doesn't match"):
                await fetcher.fetch(server.url("/", host="other.test"))
    assert names == ["site.test", "other.test"]
    assert len(server.hits) == 1
