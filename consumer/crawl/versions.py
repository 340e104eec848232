"""A page against its knowledge base's stored version: the change, the conditional-request headers, and when
the stored page may stand in for a fetch (after a 304, or under `max_age`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.models import Change, Document, DocumentVersion, Format, Page, ScrapeRequest, utcnow

if TYPE_CHECKING:
    from consumer.crawl.visit import Visit

#: The page field each format fills.
FORMAT_FIELDS = {
    Format.MARKDOWN: ("markdown",),
    Format.TEXT: ("text",),
    Format.HTML: ("html",),
    Format.LINKS: ("links",),
    Format.METADATA: ("title", "description", "language"),
}


def classify(base: DocumentVersion | None, page: Page) -> Change:
    if base is None or base.change is Change.REMOVED:
        return Change.NEW
    if page.not_modified or page.cached or (page.content_hash is not None and page.content_hash == base.content_hash):
        return Change.UNCHANGED
    return Change.CHANGED


def reusable(base: DocumentVersion | None, request: ScrapeRequest, depth: int) -> bool:
    """Whether the stored page holds what this request wants of it: its formats, its kind of extraction, and the
    links when the crawl goes on from this page (a stored page without them could not be followed)."""
    if base is None or base.change is Change.REMOVED:
        return False
    wanted = set(request.formats)
    if request.max_depth is None or depth < request.max_depth:
        wanted.add(Format.LINKS)
    return wanted <= set(base.formats) and base.only_main_content == request.only_main_content


def fresh(base: DocumentVersion, request: ScrapeRequest) -> bool:
    """Fetched less than the request's `max_age` ago."""
    return bool(request.max_age) and (utcnow() - base.fetched_at).total_seconds() < request.max_age


def validators(base: DocumentVersion) -> dict[str, str] | None:
    headers = {}
    if base.etag:
        headers["If-None-Match"] = base.etag
    if base.last_modified:
        headers["If-Modified-Since"] = base.last_modified
    return headers or None


def as_this_crawl(stored: Page, request: ScrapeRequest, depth: int, *, cached: bool) -> Page:
    """The stored page as this crawl's: only the formats it asked for, at its depth; `cached` keeps the time of
    the fetch it came from, a 304 (not `cached`) is fetched now."""
    update: dict[str, object] = {"depth": depth, "cached": cached, "not_modified": not cached}
    if not cached:
        update["fetched_at"] = utcnow()
    for fmt, fields in FORMAT_FIELDS.items():
        if fmt not in request.formats:
            update.update(dict.fromkeys(fields))
    return stored.model_copy(update=update)


def document(
    page: Page, base: DocumentVersion | None, request: ScrapeRequest, *, task_id: str, seq: int, visit: Visit
) -> Document:
    """The knowledge base's document once `page` (with its `change` set) is stored as `page:{seq}` of `task_id`."""
    assert page.change is not None
    now = page.fetched_at
    first_seen = base.first_seen_at if base is not None and page.change is not Change.NEW else now
    changed = base.changed_at if base is not None and page.change is Change.UNCHANGED else now
    return Document(
        url=page.url,
        task_id=task_id,
        seq=seq,
        change=page.change,
        content_hash=page.content_hash,
        etag=visit.etag,
        last_modified=visit.last_modified,
        fetched_at=now,
        first_seen_at=first_seen,
        changed_at=changed,
        formats=request.formats,
        only_main_content=request.only_main_content,
        previous=base,
    )
