"""Sitemap discovery: URLs from robots.txt `Sitemap:` lines and `/sitemap.xml` (indexes, gzip), every fetch
guarded and bounded like a page's; a hostile sitemap ends as an error code in the task's report."""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
import zlib
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

from consumer.crawl.hostgate import HostGate
from consumer.crawl.robots import ANY_TYPE, RobotsCache
from consumer.fetch.fetcher import Fetcher
from shared import urls
from shared.errors import FetchError
from shared.models import ScrapeRequest, SitemapError, SitemapReport

log = logging.getLogger(__name__)

#: The sitemaps protocol's own bounds: 50,000 URLs and 50 MB (uncompressed) per file.
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_URLS_PER_FILE = 50_000
#: Sitemap files read per task (an index and its children), and how deep indexes may nest.
MAX_FILES = 20
MAX_NESTING = 3
SITEMAP_TIMEOUT_S = 30.0
_LOC = re.compile(rb"<loc>\s*([^<]{1,4096}?)\s*</loc>", re.IGNORECASE)
_INDEX = re.compile(rb"<sitemapindex[\s>]", re.IGNORECASE)


class SitemapProblem(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def inflate(body: bytes) -> tuple[bytes, bool]:
    """A gzip body inflated in bounded steps, and whether it went on past `MAX_FILE_BYTES` (a gzip bomb stops
    there); any other body as it is."""
    if not body.startswith(b"\x1f\x8b"):
        return body[:MAX_FILE_BYTES], len(body) > MAX_FILE_BYTES
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    data = body
    try:
        while data and not inflater.eof:
            out += inflater.decompress(data, MAX_FILE_BYTES + 1 - len(out))
            if len(out) > MAX_FILE_BYTES:
                return bytes(out[:MAX_FILE_BYTES]), True
            data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise SitemapProblem("sitemap_corrupt", f"bad gzip data: {exc}") from None
    if not inflater.eof:
        raise SitemapProblem("sitemap_corrupt", "the gzip data ends early")
    return bytes(out), False


def parse(body: bytes) -> tuple[bool, list[str]]:
    """(whether it is a sitemap index, the `<loc>` URLs it lists, at most `MAX_URLS_PER_FILE`)."""
    locs = []
    for match in _LOC.finditer(body):
        locs.append(html.unescape(match.group(1).decode("utf-8", errors="replace")).strip())
        if len(locs) >= MAX_URLS_PER_FILE:
            break
    return bool(_INDEX.search(body[:4096])), locs


class SitemapFinder:
    def __init__(self, *, fetcher: Fetcher, robots: RobotsCache, gate: HostGate) -> None:
        self.fetcher = fetcher
        self.robots = robots
        self.gate = gate

    async def find(
        self, start_urls: list[str], *, wanted: Callable[[str], bool], max_urls: int
    ) -> tuple[list[str], SitemapReport]:
        """Page URLs the start URLs' sitemaps list that `wanted` admits, in order, at most `max_urls`."""
        walk = _Walk(wanted, max_urls)
        for origin in dict.fromkeys(_origin(url) for url in start_urls):
            for url in await self._sitemaps_of(origin):
                walk.add_sitemap(url, 0)
        while walk.queue and len(walk.found) < max_urls:
            url, nesting = walk.queue.popleft()
            if walk.report.files >= MAX_FILES:
                walk.error(url, "sitemap_limit", f"over {MAX_FILES} sitemap files")
                break
            walk.report.files += 1
            try:
                is_index, locs, cut = await self._read(url)
            except SitemapProblem as exc:
                walk.error(url, exc.code, str(exc))
                continue
            except FetchError as exc:
                walk.error(url, exc.code, str(exc) or exc.code)
                continue
            if cut:  # what its first 50 MB list is kept
                walk.error(url, "sitemap_too_large", f"over {MAX_FILE_BYTES} bytes: read that far")
            for loc in locs:
                if is_index:
                    walk.add_sitemap(loc, nesting + 1)
                else:
                    walk.add_page(loc)
        walk.report.urls = len(walk.found)
        return walk.found, walk.report

    async def _sitemaps_of(self, origin: str) -> list[str]:
        """The sitemaps robots.txt names, then the usual place (if robots.txt allows it)."""
        rules = await self.robots.rules_for(origin + "/")
        if rules.unreachable:
            return []  # robots.txt could not be read: nothing else of the host is fetched either
        listed = list(rules.parser.sitemaps) if rules.parser is not None else []
        usual = origin + "/sitemap.xml"
        return [*listed, *([usual] if rules.allowed(usual) else [])]

    async def _read(self, url: str) -> tuple[bool, list[str], bool]:
        # The host's Crawl-delay spaces its sitemap requests as it spaces its pages (a sitemap can be elsewhere).
        self.gate.crawl_delay(url, (await self.robots.rules_for(url)).crawl_delay())
        async with self.gate.slot(url):
            result = await self.fetcher.fetch(url, accept=ANY_TYPE, timeout_s=SITEMAP_TIMEOUT_S)
        if result.status_code == 404 and url.endswith("/sitemap.xml"):
            return False, [], False  # no sitemap at the usual place: nothing to report
        if result.status_code >= 400:
            raise SitemapProblem("http_status", f"HTTP {result.status_code}")
        body, cut = inflate(result.body)
        is_index, locs = parse(body)
        return is_index, locs, cut


def discovery_digest(request: ScrapeRequest, max_urls: int) -> str:
    """What a discovery's outcome depends on, hashed: requests with the same digest find the same URLs."""
    inputs = {
        "start": request.start_urls(),
        "mode": request.sitemap,
        "include": request.include_paths,
        "exclude": request.exclude_paths,
        "subdomains": request.allow_subdomains,
        "max_depth": request.max_depth,
        "max_urls": max_urls,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class _Walk:
    """The state of one discovery: sitemaps to read, sitemaps seen (loops), pages taken."""

    def __init__(self, wanted: Callable[[str], bool], max_urls: int) -> None:
        self.wanted = wanted
        self.max_urls = max_urls
        self.queue: deque[tuple[str, int]] = deque()
        self.seen: set[str] = set()
        self.found: list[str] = []
        self.taken: set[str] = set()
        self.report = SitemapReport()

    def error(self, url: str, code: str, message: str) -> None:
        self.report.errors.append(SitemapError(url=url, code=code, message=message))

    def add_sitemap(self, url: str, nesting: int) -> None:
        normal = urls.normalize(url)
        if normal is None or normal in self.seen:
            return  # a loop, or a sitemap listed twice
        if nesting >= MAX_NESTING:
            self.error(normal, "sitemap_nesting", f"sitemap indexes nest deeper than {MAX_NESTING}")
            return
        self.seen.add(normal)
        self.queue.append((normal, nesting))

    def add_page(self, url: str) -> None:
        normal = urls.normalize(url)
        if normal is None or normal in self.taken or len(self.found) >= self.max_urls or not self.wanted(normal):
            return
        self.taken.add(normal)
        self.found.append(normal)
