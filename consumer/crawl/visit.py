"""Visiting one URL: robots check, the host's gate, fetch (tried again after a 429/503), extraction, and the
resulting page record (or per-page error)."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from consumer.crawl.hostgate import HostGate
from consumer.crawl.politeness import pause_for
from consumer.crawl.robots import RobotsCache
from consumer.crawl.sitemaps import SitemapFinder
from consumer.extract import extract
from consumer.extract.page import decode_body
from consumer.fetch.fetcher import Fetcher, FetchResult
from shared.errors import FetchError, FetchTimeout
from shared.models import Format, Page, PageError, ScrapeRequest, SitemapReport
from shared.ports import Clock

log = logging.getLogger(__name__)

#: Status codes worth trying again later (RFC 9110 semantics plus common CDN codes).
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504, 522, 524})
#: An attempt with less of the page's budget left than this is not started: it could not fetch a page.
MIN_ATTEMPT_S = 1.0


class Outcome(enum.StrEnum):
    DONE = "done"
    FAILED = "failed"
    #: Disallowed by robots.txt: not fetched, not stored, counted.
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Visit:
    outcome: Outcome
    page: Page | None = None
    links: list[str] = field(default_factory=list)
    #: Whether the failure may go away if the URL is tried again later.
    retryable: bool = False
    #: The response's validators, for a conditional request the next time.
    etag: str | None = None
    last_modified: str | None = None
    #: Body bytes received for the page (inflated), for the tenant's usage.
    fetched_bytes: int = 0


class Visitor:
    """Turns a URL into a `Visit`; everything a hostile page can do ends here as a per-page error."""

    def __init__(
        self,
        *,
        fetcher: Fetcher,
        robots: RobotsCache,
        gate: HostGate,
        max_links: int,
        retries: int = 2,
        budget_s: float = 60.0,
        clock: Clock = time.time,
    ) -> None:
        self.fetcher = fetcher
        self.robots = robots
        self.gate = gate
        self.max_links = max_links
        self.retries = retries
        self.budget_s = budget_s
        self.clock = clock

    async def visit(
        self,
        url: str,
        depth: int,
        request: ScrapeRequest,
        *,
        not_after: float | None = None,
        budget_s: float | None = None,
        validators: dict[str, str] | None = None,
    ) -> Visit:
        """`not_after` (a `clock` time): no 429/503 retry is started whose pause would end after it.
        `budget_s`: the page's time from its first request, every attempt included (default: the visitor's).
        `validators`: conditional-request headers (`If-None-Match`, `If-Modified-Since`); a 304 answer is a
        `DONE` visit whose page says `not_modified` and carries no content (the caller has it)."""
        rules = await self.robots.rules_for(url)
        if not rules.allowed(url):
            if not rules.unreachable:
                return Visit(Outcome.SKIPPED)
            error = PageError(code="robots_unreachable", message="robots.txt could not be fetched; retrying later")
            return Visit(Outcome.SKIPPED, Page(url=url, depth=depth, error=error), retryable=True)
        self.gate.crawl_delay(url, rules.crawl_delay())
        try:
            result = await self._fetch(url, not_after, self.budget_s if budget_s is None else budget_s, validators)
        except FetchError as exc:
            error = PageError(code=exc.code, message=str(exc) or exc.code)
            return Visit(Outcome.FAILED, Page(url=url, depth=depth, error=error), retryable=exc.retryable)
        if result.status_code == 304 and validators:
            page = Page(url=url, final_url=result.final_url, status_code=304, depth=depth, not_modified=True)
            return Visit(Outcome.DONE, page, fetched_bytes=len(result.body))
        if result.status_code >= 400:
            error = PageError(code="http_status", message=f"HTTP {result.status_code}")
            page = Page(url=url, final_url=result.final_url, status_code=result.status_code, depth=depth, error=error)
            retryable = result.status_code in RETRYABLE_STATUS
            return Visit(Outcome.FAILED, page, retryable=retryable, fetched_bytes=len(result.body))
        visit = self._page(result, depth, request)
        headers = result.headers
        etag, last_modified = headers.get("etag"), headers.get("last-modified")
        return dataclasses.replace(visit, etag=etag, last_modified=last_modified, fetched_bytes=len(result.body))

    async def sitemap_urls(
        self, start_urls: list[str], *, wanted: Callable[[str], bool], max_urls: int
    ) -> tuple[list[str], SitemapReport]:
        """The page URLs the start URLs' sitemaps list, through the same fetcher, robots rules and host gates."""
        finder = SitemapFinder(fetcher=self.fetcher, robots=self.robots, gate=self.gate)
        return await finder.find(start_urls, wanted=wanted, max_urls=max_urls)

    async def _fetch(
        self, url: str, not_after: float | None, budget_s: float, headers: dict[str, str] | None = None
    ) -> FetchResult:
        """Fetch inside the host's gate; a 429/503 pauses the host, and the page is tried again after it, all
        within `budget_s` from the first request."""
        attempt = 0
        budget_ends: float | None = None
        while True:
            async with self.gate.slot(url):
                now = self.clock()
                budget_ends = now + budget_s if budget_ends is None else budget_ends
                if budget_ends - now < MIN_ATTEMPT_S:
                    raise FetchTimeout(f"the page's time budget ({budget_s:.3g} s) is used up")
                result = await self.fetcher.fetch(url, timeout_s=budget_ends - now, headers=headers)
            attempt += 1
            pause = pause_for(
                result.status_code,
                result.headers.get("retry-after"),
                attempt=attempt,
                retries=self.retries,
                max_s=self.gate.max_delay_s,
                now=self.clock(),
            )
            if pause is None:
                return result
            self.gate.pause(url, pause.host_s)  # every task's requests to this host wait, not only this page's
            resume = self.clock() + pause.host_s
            past_slice = not_after is not None and resume > not_after
            if not pause.retry or past_slice or resume + MIN_ATTEMPT_S > budget_ends:
                return result
            log.info("HTTP %d from %s: trying again in %.1f s", result.status_code, url, pause.host_s)

    def _page(self, result: FetchResult, depth: int, request: ScrapeRequest) -> Visit:
        formats = set(request.formats)
        html = decode_body(result.body, result.headers.get("content-type"))
        if result.content_type == "text/plain":
            return self._plain_text(result, html, depth, formats)
        extracted = extract(
            html,
            base_url=result.final_url,
            want_markdown=Format.MARKDOWN in formats,
            want_text=Format.TEXT in formats,
            only_main_content=request.only_main_content,
            max_links=self.max_links,
        )
        metadata = Format.METADATA in formats
        page = Page(
            url=result.url,
            final_url=result.final_url,
            status_code=result.status_code,
            depth=depth,
            title=extracted.title if metadata else None,
            description=extracted.description if metadata else None,
            language=extracted.language if metadata else None,
            markdown=extracted.markdown,
            text=extracted.text,
            html=html if Format.HTML in formats else None,
            links=extracted.links if Format.LINKS in formats else None,
            content_hash=extracted.content_hash,
        )
        return Visit(Outcome.DONE, page, links=extracted.links)

    @staticmethod
    def _plain_text(result: FetchResult, text: str, depth: int, formats: set[Format]) -> Visit:
        page = Page(
            url=result.url,
            final_url=result.final_url,
            status_code=result.status_code,
            depth=depth,
            markdown=text if Format.MARKDOWN in formats else None,
            text=text if Format.TEXT in formats else None,
            links=[] if Format.LINKS in formats else None,
            content_hash="sha256:" + hashlib.sha256(text.encode()).hexdigest(),
        )
        return Visit(Outcome.DONE, page)
