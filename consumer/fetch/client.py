"""The one place that builds the consumer's HTTP client: guarded, no proxies, no redirects, no cookies kept."""

from __future__ import annotations

import http.cookiejar
import ssl
from typing import TYPE_CHECKING, Any

import httpx

from consumer.fetch.addresses import Resolver
from consumer.fetch.httpcore_transport import GuardedBackend, GuardedTransport
from consumer.fetch.js_transport import JsFetchTransport
from shared.guard import AddressPolicy

if TYPE_CHECKING:
    from shared.settings import Settings

ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1"
#: Only what `consumer.fetch.body` inflates in bounded steps; never br/zstd, which httpx would offer if installed.
ACCEPT_ENCODING = "gzip, deflate"


def build_client(
    settings: Settings,
    *,
    resolver: Resolver | None = None,
    verify: ssl.SSLContext | bool = True,
    js_fetch: Any = None,
) -> httpx.AsyncClient:
    """The one client of a consumer process, locally and in the consumer Worker alike.

    What moves the bytes: the Workers runtime's JS `fetch` when `js_fetch` is given, else `settings.fetch_engine`
    (aiohttp, the default: far cheaper per page; or httpx's own httpcore). All run the same address guard under
    the same httpx API.
    """
    policy = AddressPolicy(settings.allow_private_networks, ports=settings.fetch_allowed_ports)
    transport: httpx.AsyncBaseTransport
    if js_fetch is not None:
        transport = JsFetchTransport(js_fetch, policy=policy)
    elif settings.fetch_engine == "aiohttp":
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
