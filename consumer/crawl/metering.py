"""What one crawl slice did, for its tenant's usage: pages by outcome, page errors by code, body bytes fetched."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from consumer.crawl.slice import PageHook
from consumer.crawl.visit import Visit, Visitor
from shared.models import Page, Progress, ScrapeRequest, SitemapReport
from shared.stores.usage import BYTES_FETCHED, PAGES_FAILED, PAGES_SKIPPED, PAGES_STORED, error_counter


class SliceMeter:
    """Counts one run of one slice; its figures are added to the ledger once, when the run's outcome is kept.

    Pages come from the slice's progress (what it committed, as the task shows), their error codes from the page
    hook (called for every stored page), bytes from every visit (retried and handed-back pages included: they
    were fetched).
    """

    def __init__(self, start: Progress) -> None:
        self.start = start.model_copy()
        self.errors: Counter[str] = Counter()
        self.bytes_fetched = 0

    def page_hook(self, inner: PageHook | None) -> PageHook:
        async def hook(seq: int, page: Page, progress: Progress) -> None:
            if page.error is not None:
                self.errors[page.error.code] += 1
            if inner is not None:
                await inner(seq, page, progress)

        return hook

    def visitor(self, visitor: Visitor) -> Visitor:
        return MeteredVisitor(visitor, self)

    def counts(self, end: Progress) -> dict[str, int]:
        counts = {
            PAGES_STORED: end.pages_done - self.start.pages_done,
            PAGES_FAILED: end.pages_failed - self.start.pages_failed,
            PAGES_SKIPPED: end.pages_skipped - self.start.pages_skipped,
            BYTES_FETCHED: self.bytes_fetched,
        }
        counts.update({error_counter(code): n for code, n in self.errors.items()})
        return counts


class MeteredVisitor(Visitor):
    """The process's visitor, delegated to (its fetcher, robots cache and host gates shared), counting one slice's
    bytes."""

    def __init__(self, inner: Visitor, meter: SliceMeter) -> None:
        vars(self).update(vars(inner))  # its settings and `gate`, which the slice reads
        self.inner = inner
        self.meter = meter

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
        visit = await self.inner.visit(
            url, depth, request, not_after=not_after, budget_s=budget_s, validators=validators
        )
        self.meter.bytes_fetched += visit.fetched_bytes
        return visit

    async def sitemap_urls(
        self, start_urls: list[str], *, wanted: Callable[[str], bool], max_urls: int
    ) -> tuple[list[str], SitemapReport]:
        return await self.inner.sitemap_urls(start_urls, wanted=wanted, max_urls=max_urls)
