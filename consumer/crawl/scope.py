"""Crawl scope (pure): which discovered URLs a task may visit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.models import ScrapeRequest


@dataclass(frozen=True)
class Scope:
    """Same host and port as the start URL (or its subdomains when allowed), include/exclude regexes on the path.

    The start URL itself is always in scope: the client asked for it. With `allow_subdomains`, a leading
    `www.` of the start host is dropped, so `www.example.com` admits `docs.example.com` too.
    """

    start_url: str
    host: str
    port: int | None
    allow_subdomains: bool
    include: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]
    max_depth: int | None

    @classmethod
    def from_request(cls, request: ScrapeRequest) -> Scope:
        start = urlsplit(request.url)
        host = (start.hostname or "").lower()
        if request.allow_subdomains and host.startswith("www."):
            host = host[4:]
        return cls(
            start_url=request.url,
            host=host,
            port=start.port,
            allow_subdomains=request.allow_subdomains,
            include=tuple(re.compile(p) for p in request.include_paths),
            exclude=tuple(re.compile(p) for p in request.exclude_paths),
            max_depth=request.max_depth,
        )

    def allows(self, url: str, depth: int) -> bool:
        """Whether a normalised URL found at `depth` link hops from the start belongs to the crawl."""
        if self.max_depth is not None and depth > self.max_depth:
            return False
        if url == self.start_url:
            return True
        parts = urlsplit(url)
        if parts.port != self.port or not self.host_allowed((parts.hostname or "").lower()):
            return False
        path = parts.path
        if self.include and not any(p.search(path) for p in self.include):
            return False
        return not any(p.search(path) for p in self.exclude)

    def host_allowed(self, host: str) -> bool:
        if host == self.host:
            return True
        return self.allow_subdomains and host.endswith("." + self.host)
