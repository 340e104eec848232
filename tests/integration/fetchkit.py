"""Helpers of the fetcher tests: settings for loopback, a fixed resolver, one-shot fetches, hostile bodies."""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import socket
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from consumer.fetch.addresses import Resolver
from consumer.fetch.client import build_client
from consumer.fetch.fetcher import Fetcher
from shared.guard import IPAddress
from shared.settings import Settings

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
