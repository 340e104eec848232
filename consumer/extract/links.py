"""Links of one page: hrefs resolved against the document base, de-duplicated in order, capped;
resolutions are memoised per page and, when they depend only on the origin, across a site's pages.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from shared.urls import resolve_link

# shared.urls.resolve_link is the costliest step per link, hence the memos.
MAX_RESOLVED = 20_000  # distinct hrefs resolved per page: bounds the cost of a page made of links
SHARED_RESOLVED = 8192  # hrefs kept from earlier pages (nav, footer): about half of a site's links repeat

# Such an href resolves the same against every page of one origin (scheme://host:port); a
# document-relative one ("x.html", "../x", "?q") depends on the page's path and is never shared.
_ORIGIN_RELATIVE = re.compile(r"/|https?://[A-Za-z0-9]")
_shared: dict[str, str | None] = {}


class LinkCollector:
    __slots__ = ("base", "links", "max_links", "origin", "resolved", "seen")

    def __init__(self, base_url: str, max_links: int) -> None:
        self.base = base_url
        self.origin = origin(base_url)
        self.max_links = max_links
        self.links: list[str] = []
        self.seen: set[str] = set()
        self.resolved: dict[str, str | None] = {}

    def set_base(self, href: str) -> None:
        """Honour <base href>: later hrefs resolve against it."""
        base = self.resolve(href)
        if base is not None:
            self.base = base
            self.origin = origin(base)
            self.resolved.clear()

    def resolve(self, href: str) -> str | None:
        """The normalised absolute URL of an href, or None when it is not an http(s) link."""
        try:
            return self.resolved[href]
        except KeyError:
            if len(self.resolved) >= MAX_RESOLVED:
                return None
        if self.origin and _ORIGIN_RELATIVE.match(href):
            key = f"{self.origin} {href}"
            try:
                url = _shared[key]
            except KeyError:
                if len(_shared) >= SHARED_RESOLVED:
                    _shared.clear()
                url = _shared[key] = resolve_link(href, self.base)
        else:
            url = resolve_link(href, self.base)
        self.resolved[href] = url
        return url

    def collect(self, href: str | None) -> str | None:
        """Resolve an <a href> and record it as a link of the page (up to max_links)."""
        if href is None:
            return None
        url = self.resolve(href)
        if url is not None and url not in self.seen and len(self.links) < self.max_links:
            self.seen.add(url)
            self.links.append(url)
        return url


def origin(url: str) -> str:
    """scheme://host[:port] of an absolute URL (lower-cased), or "" if it has none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}" if parts.scheme and parts.netloc else ""
