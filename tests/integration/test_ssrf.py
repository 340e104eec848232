"""The SSRF battery: every way we know to make the consumer reach a loopback canary, with the guard ON.

The internet is simulated on loopback. The "public" site listens on 127.0.0.2 and only 127.0.0.2/32 is exempt
from the guard; the canary listens on 127.0.0.1 and [::1] on the very same port, so any literal, name,
redirect hop or rebinding that got past the guard would land on it. Each attempt runs through the real
`Fetcher` on both fetch engines (and some through a whole crawl, a webhook delivery and the API); the canary
must count zero connections. Attempts at non-loopback private ranges and at ports run over a "funnel": a
network backend that sends every connection the guard lets through to the canary (and never off the host).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from consumer.fetch.addresses import Resolver
from consumer.fetch.client import build_client
from consumer.fetch.fetcher import Fetcher
from consumer.fetch.httpcore_transport import GuardedBackend, GuardedTransport
from consumer.handler import make_handler
from shared.backends.base import Backends
from shared.errors import BlockedAddress
from shared.guard import AddressPolicy, IPAddress
from shared.settings import Settings
from shared.stores.events import EventLog
from tests.conftest import Caller, make_settings
from tests.fixtures.canary import Canary
from tests.fixtures.httpserver import LoopbackServer
from tests.integration.test_crawl import drain, finished, pages_of, start

PUBLIC = "127.0.0.2"
ENGINES = ["aiohttp", "httpx"]
HTML = {"Content-Type": "text/html; charset=utf-8"}
PAGE = b"<!doctype html><html><head><title>public</title></head><body>hello</body></html>"

#: Names the injected resolver knows. A list of lists answers each call with the next list (the last repeats).
DNS: dict[str, list[str] | list[list[str]]] = {
    "public.test": [PUBLIC],
    "evil.test": ["127.0.0.1"],
    "v6.test": ["::1"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "zero.test": ["0.0.0.0"],
    "mixed.test": [PUBLIC, "127.0.0.1"],
    "mixed-v6.test": [PUBLIC, "::1"],
    "rebind.test": [[PUBLIC], ["127.0.0.1"]],
    "evil.public.test": ["127.0.0.1"],
    "mixed.public.test": [PUBLIC, "127.0.0.1"],
    "v6.public.test": ["::1"],
    # resolved only over the funnel: if the guard failed, nothing leaves the host
    "far.test": ["93.184.216.34"],
    "metadata.test": ["169.254.169.254"],
    "alibaba.test": ["100.100.100.200"],
    "azure.test": ["168.63.129.16"],
    "ten.test": ["10.0.0.1"],
    "nat64.test": ["64:ff9b::7f00:1"],
    "sixtofour.test": ["2002:7f00:1::"],
    "ula.test": ["fd00:ec2::254"],
}


def scripted_resolver(calls: list[str] | None = None) -> Resolver:
    answered: dict[str, int] = {}

    async def resolve(host: str, port: int) -> list[IPAddress]:
        if calls is not None:
            calls.append(host)
        if host not in DNS:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = DNS[host]
        if answer and isinstance(answer[0], list):
            n = answered[host] = answered.get(host, -1) + 1
            answer = answer[min(n, len(answer) - 1)]
        return [ipaddress.ip_address(address) for address in answer]  # type: ignore[arg-type]

    return resolve


def guarded_settings(tmp_path: Path, engine: str = "aiohttp", **overrides: Any) -> Settings:
    return make_settings(
        tmp_path,
        allow_private_networks=f"{PUBLIC}/32",
        fetch_engine=engine,
        fetch_connect_timeout_s=1.0,
        fetch_read_timeout_s=1.0,
        fetch_total_timeout_s=3.0,
        **overrides,
    )


@pytest.fixture
def canary() -> Iterator[Canary]:
    with Canary() as running:
        yield running


@pytest.fixture
def public(canary: Canary) -> Iterator[LoopbackServer]:
    """The "public" site: 127.0.0.2, on the canary's port."""
    with LoopbackServer(host=PUBLIC, port=canary.port) as server:
        yield server


@contextlib.asynccontextmanager
async def fetcher_for(settings: Settings, calls: list[str] | None = None) -> AsyncIterator[Fetcher]:
    async with build_client(settings, resolver=scripted_resolver(calls)) as client:
        yield Fetcher(client, settings=settings)


async def assert_refused(fetcher: Fetcher, url: str) -> None:
    with pytest.raises(BlockedAddress):
        await fetcher.fetch(url)


# --- literal hosts: every spelling of loopback and "this host" (P is the canary's port)

LITERAL_HOSTS = [
    "127.0.0.1", "2130706433", "0x7f000001", "0X7F000001", "017700000001", "0177.0.0.1", "127.1", "127.0.1",
    "0x7f.1", "127.000.000.001", "127.0.0.1.", "0", "0x0", "0.0.0.0", "[::1]", "[::]", "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:7f00:1]", "[::127.0.0.1]", "localhost",
    "LOCALHOST", "localhost.", "app.localhost", "a.b.localhost", "１２７.０.０.１", "127。0。0。1", "ⓛocalhost",
]  # fmt: skip
NAMES = ["evil.test", "v6.test", "mapped.test", "zero.test", "mixed.test", "mixed-v6.test"]
# Where a redirect from the public site points (P: the port the canary shares with the public site).
REDIRECTS = [
    "http://127.0.0.1:P/", "http://2130706433:P/", "http://127.1:P/", "http://0.0.0.0:P/", "http://[::1]:P/",
    "http://[::ffff:127.0.0.1]:P/", "http://localhost:P/", "http://app.localhost:P/", "http://evil.test:P/",
    "http://mixed.test:P/", "//127.0.0.1:P/", "//evil.test:P/x", "file:///etc/passwd", "gopher://127.0.0.1:P/_x",
    "ftp://127.0.0.1:P/", "http://user:pass@127.0.0.1:P/", "http://public.test:P@127.0.0.1:P/",
    "http://127.0.0.1:P\\@public.test/", "  http://127.0.0.1:P/", "http://127.0.0.1:P/\t",
    "http://evil.test:P/%2e%2e/admin",
]  # fmt: skip


@pytest.mark.parametrize("engine", ENGINES)
async def test_literal_hosts_never_reach_the_canary(tmp_path: Path, canary: Canary, engine: str) -> None:
    calls: list[str] = []
    async with fetcher_for(guarded_settings(tmp_path, engine), calls) as fetcher:
        for host in LITERAL_HOSTS:
            await assert_refused(fetcher, f"http://{host}:{canary.port}/")
    assert (canary.connections, canary.hits) == (0, [])
    assert calls == []  # literals (and localhost) never reach DNS


@pytest.mark.parametrize("engine", ENGINES)
async def test_names_resolving_to_loopback_never_reach_the_canary(tmp_path: Path, canary: Canary, engine: str) -> None:
    async with fetcher_for(guarded_settings(tmp_path, engine)) as fetcher:
        for name in NAMES:
            await assert_refused(fetcher, f"http://{name}:{canary.port}/")
    assert canary.connections == 0


@pytest.mark.parametrize("engine", ENGINES)
async def test_redirects_from_a_public_site_into_private_space_are_refused_at_the_hop(
    tmp_path: Path, canary: Canary, public: LoopbackServer, engine: str
) -> None:
    port = str(canary.port)
    async with fetcher_for(guarded_settings(tmp_path, engine)) as fetcher:
        for n, target in enumerate(REDIRECTS):
            # through two public hops first: the refusal must hold on any hop, not only the first
            public.route(f"/go{n}", status=302, headers={"Location": f"/via{n}"})
            public.route(f"/via{n}", status=307, headers={"Location": target.replace("P", port)})
            await assert_refused(fetcher, public.url(f"/go{n}", host="public.test"))
    assert len(public.hits) == 2 * len(REDIRECTS)
    assert canary.connections == 0


@pytest.mark.parametrize("engine", ENGINES)
async def test_dns_rebinding_between_connections_is_refused(
    tmp_path: Path, canary: Canary, public: LoopbackServer, engine: str
) -> None:
    """rebind.test answers public first, then 127.0.0.1; the server closes each connection, so the second
    request needs a new one, which resolves again and must be refused, never connected by name."""
    public.route("/first", status=302, headers={"Location": "/second", "Connection": "close"})
    public.route("/second", headers=HTML, body=PAGE)
    calls: list[str] = []
    async with fetcher_for(guarded_settings(tmp_path, engine), calls) as fetcher:
        await assert_refused(fetcher, public.url("/first", host="rebind.test"))
    assert [hit.path for hit in public.hits] == ["/first"]
    assert calls == ["rebind.test", "rebind.test"]  # once per connection, and that answer is what is dialled
    assert canary.connections == 0


@pytest.mark.parametrize("engine", ENGINES)
async def test_the_exempt_public_site_itself_is_reachable(tmp_path: Path, public: LoopbackServer, engine: str) -> None:
    """The control: the same setup does fetch what it should, so the refusals above are the guard's."""
    url = public.route("/ok", headers=HTML, body=PAGE)
    async with fetcher_for(guarded_settings(tmp_path, engine)) as fetcher:
        assert (await fetcher.fetch(public.url("/ok", host="public.test"))).body == PAGE
        assert (await fetcher.fetch(url)).status_code == 200


# --- over the funnel: non-loopback private ranges and ports, which must never leave this host


class Funnel(httpcore.AsyncNetworkBackend):
    """Stands in for the whole network: every connection the guard lets through lands on the canary."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dialled: list[tuple[str, int]] = []
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.dialled.append((host, port))
        return await self._inner.connect_tcp("127.0.0.1", self.port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


FUNNELLED_HOSTS = [
    "169.254.169.254", "[::ffff:169.254.169.254]", "0xa9fea9fe", "169.254.43518", "100.100.100.200",
    "168.63.129.16", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "198.18.0.1", "192.0.0.192",
    "224.0.0.1", "255.255.255.255", "240.0.0.1", "[fe80::1]", "[fc00::1]", "[fd00:ec2::254]", "[ff02::1]",
    "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "[2002:a9fe:a9fe::]", "[2001:db8::1]",
    "metadata.test", "alibaba.test", "azure.test", "ten.test", "nat64.test", "sixtofour.test", "ula.test",
]  # fmt: skip


@contextlib.asynccontextmanager
async def funnel_fetcher(tmp_path: Path, funnel: Funnel, **overrides: Any) -> AsyncIterator[Fetcher]:
    settings = guarded_settings(tmp_path, "httpx", **overrides)
    policy = AddressPolicy((), ports=settings.fetch_allowed_ports)  # nothing exempt: only "public" passes
    backend = GuardedBackend(policy, resolver=scripted_resolver(), inner=funnel)
    client = httpx.AsyncClient(transport=GuardedTransport(backend), trust_env=False, follow_redirects=False)
    async with client:
        yield Fetcher(client, settings=settings)


async def test_private_ranges_and_metadata_addresses_are_refused_before_any_connection(
    tmp_path: Path, canary: Canary
) -> None:
    funnel = Funnel(canary.port)
    async with funnel_fetcher(tmp_path, funnel) as fetcher:
        for host in FUNNELLED_HOSTS:
            await assert_refused(fetcher, f"http://{host}/latest/meta-data/")
    assert (funnel.dialled, canary.connections) == ([], 0)


async def test_public_addresses_only_on_the_allowed_ports(tmp_path: Path, canary: Canary) -> None:
    funnel = Funnel(canary.port)
    async with funnel_fetcher(tmp_path, funnel) as fetcher:
        for port in (22, 25, 6379, 8080, 8443, canary.port):
            await assert_refused(fetcher, f"http://far.test:{port}/")
            await assert_refused(fetcher, f"http://93.184.216.34:{port}/")
        assert funnel.dialled == []
        # the control: a public address on port 80 goes through, and the funnel shows it
        assert (await fetcher.fetch("http://far.test/")).status_code == 200
    assert (funnel.dialled, canary.connections) == ([("93.184.216.34", 80)], 1)


async def test_the_allowed_ports_setting_widens_the_rule(tmp_path: Path, canary: Canary) -> None:
    funnel = Funnel(canary.port)
    async with funnel_fetcher(tmp_path, funnel, fetch_allowed_ports="443,8443") as fetcher:
        await assert_refused(fetcher, "http://far.test/")
        assert (await fetcher.fetch("http://far.test:8443/")).status_code == 200
    assert funnel.dialled == [("93.184.216.34", 8443)]


# --- the whole consumer: a crawl whose pages lead into private space, and a webhook


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_crawl_whose_links_lead_into_private_space_never_reaches_the_canary(
    tmp_path: Path, canary: Canary, public: LoopbackServer, backends: Backends, engine: str
) -> None:
    port = canary.port
    hops = {"lit": f"http://127.0.0.1:{port}/", "name": f"http://evil.test:{port}/", "v6": f"http://[::1]:{port}/",
            "localhost": f"http://localhost:{port}/", "file": "file:///etc/passwd",
            "decimal": f"http://2130706433:{port}/"}  # fmt: skip
    for name, target in hops.items():
        public.route(f"/r/{name}", status=302, headers={"Location": target})
    subdomains = [f"http://{sub}.public.test:{port}/" for sub in ("evil", "mixed", "v6")]
    outside = [f"http://127.0.0.1:{port}/", f"http://localhost:{port}/admin"]  # out of scope: never even tried
    links = [f"/r/{name}" for name in hops] + subdomains + outside
    public.route("/", headers=HTML, body=b"".join(b'<a href="%s">x</a>' % link.encode() for link in links))
    settings = guarded_settings(tmp_path, engine)
    async with build_client(settings, resolver=scripted_resolver()) as client:
        handler = make_handler(settings, backends, client=client)
        task = await start(backends, f"http://public.test:{port}/", limit=20, allow_subdomains=True)
        await drain(backends, handler)
    pages = await pages_of(backends, task)
    assert pages[0]["error"] is None
    errors = {page["url"]: page["error"]["code"] for page in pages[1:]}  # type: ignore[index]
    assert len(errors) == len(hops) + len(subdomains)
    assert set(errors.values()) == {"blocked_address"}, errors
    assert (await finished(backends, task)).status == "completed"
    assert canary.connections == 0


async def test_a_webhook_to_a_name_resolving_to_loopback_is_refused_at_send_time(
    tmp_path: Path, canary: Canary, backends: Backends, alice: Caller
) -> None:
    settings = guarded_settings(tmp_path, webhook_max_attempts=1)
    events = EventLog(backends.kv, backends.jobs, retention_s=3600)
    hooks = [f"http://evil.test:{canary.port}/hook", f"http://[::ffff:127.0.0.1]:{canary.port}/hook"]
    sent = [await events.record_test(alice.tenant.tenant_id, hook) for hook in hooks]
    async with build_client(settings, resolver=scripted_resolver()) as client:
        await drain(backends, make_handler(settings, backends, client=client))
    for event in sent:
        delivery = await events.delivery(alice.tenant.tenant_id, event.id)
        assert delivery is not None and delivery.status == "failed"
        assert "public address" in (delivery.last_error or "")  # "not a public address" / "resolves to a non-..."
    assert canary.connections == 0


# --- submit time: literal forms never get queued


SUBMITTED = [
    "http://127.0.0.1/", "http://127.1/", "http://0/", "http://0.0.0.0/", "http://[::]/", "http://[::1]/",
    "http://2130706433/", "http://0x7f000001/", "http://017700000001/", "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/", "http://169.254.169.254/", "http://100.100.100.200/", "http://[fe80::1]/",
    "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.1.1/", "http://100.64.0.1/", "http://[fc00::1]/",
    "http://[fd00::1]/", "http://224.0.0.1/", "http://255.255.255.255/", "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/", "http://localhost/", "http://app.localhost/", "http://168.63.129.16/",
]  # fmt: skip


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The API under the same narrow exemption (the conftest one exempts all of 127.0.0.0/8)."""
    return guarded_settings(tmp_path)


async def test_literal_forms_are_refused_at_submit_with_422_and_nothing_is_queued(
    api: httpx.AsyncClient, alice: Caller, backends: Backends
) -> None:
    # as the page URL, and (a few, to stay under the per-key rate limit) as the webhook URL
    bodies = [{"url": url} for url in SUBMITTED]
    bodies += [{"url": "http://public.test/", "webhook": {"url": url}} for url in SUBMITTED[::3]]
    for body in bodies:
        response = await api.post("/scrape", json={"knowledge_base_id": "kb_a1", **body}, headers=alice.headers)
        assert (response.status_code, response.json()["code"]) == (422, "url_not_allowed"), (body, response.text)
    assert await backends.jobs.receive(max_messages=10) == []
