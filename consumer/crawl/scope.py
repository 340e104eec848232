"""Crawl scope (pure): which discovered URLs a task may visit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.models import ScrapeRequest


@dataclass(frozen=True)
class Scope:
    """Same host and port as a start URL (or its subdomains when allowed), include/exclude regexes on the path.

    The start URLs themselves are always in scope: the client asked for them. With `allow_subdomains`, a leading
    `www.` of a start host is dropped, so `www.example.com` admits `docs.example.com` too.
    """

    start_urls: frozenset[str]
    #: (host, port) of every start URL.
    origins: frozenset[tuple[str, int | None]]
    allow_subdomains: bool
    include: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]
    max_depth: int | None

    @classmethod
    def from_request(cls, request: ScrapeRequest) -> Scope:
        origins = set()
        for url in request.start_urls():
            start = urlsplit(url)
            host = (start.hostname or "").lower()
            if request.allow_subdomains and host.startswith("www."):
                host = host[4:]
            origins.add((host, start.port))
        return cls(
            start_urls=frozenset(request.start_urls()),
            origins=frozenset(origins),
            allow_subdomains=request.allow_subdomains,
            include=tuple(re.compile(p) for p in request.include_paths),
            exclude=tuple(re.compile(p) for p in request.exclude_paths),
            max_depth=request.max_depth,
        )

    def allows(self, url: str, depth: int) -> bool:
        """Whether a normalised URL found at `depth` link hops from the start belongs to the crawl."""
        if self.max_depth is not None and depth > self.max_depth:
            return False
        if url in self.start_urls:
            return True
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not any(parts.port == port and self._host_allowed(host, start) for start, port in self.origins):
            return False
        path = parts.path
        if self.include and not any(p.search(path) for p in self.include):
            return False
        return not any(p.search(path) for p in self.exclude)

    def _host_allowed(self, host: str, start: str) -> bool:
        if host == start:
            return True
        return self.allow_subdomains and host.endswith("." + start)
