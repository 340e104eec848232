"""The fetcher's network side against loopback servers: the connect-time guard end to end, every failure as a
`FetchError`, the guarded backend and transport, and TLS to a pinned address."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from consumer.fetch.addresses import AddressRefused, system_resolver
from consumer.fetch.body import PAGE_TYPES
from consumer.fetch.client import build_client
from consumer.fetch.httpcore_transport import LIMITS, GuardedBackend, GuardedTransport
from shared.errors import (
    BadResponse,
    BlockedAddress,
    ConnectFailed,
    FetchError,
    FetchTimeout,
)
from shared.guard import AddressPolicy, IPAddress
from tests.fixtures.httpserver import LoopbackServer, raw_server
from tests.integration.fetchkit import (
    HTML,
    PAGE,
    fetch,
    make_settings,
    open_fetcher,
    static_resolver,
)

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
    assert set(PAGE_TYPES) == {"text/html", "application/xhtml+xml", "text/plain"}


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
