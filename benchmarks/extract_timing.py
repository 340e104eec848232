"""Per-page CPU cost of the extraction that runs on Workers, and of a stdlib reference parser timed beside it.

Standard library only and runtime-neutral: `extract_cpython.py` runs it on CPython with `time.process_time_ns`,
`extract_pyodide.mjs` inside Pyodide with `time.perf_counter_ns` (Pyodide runs Python on one thread, so wall
time there is the interpreter's CPU time, give or take the JS engine's own background work).

Pages: every `step`-th page of the generated site (page numbers 0, step, 2·step, ...), read as UTF-8 text;
each timed function first runs once over all of them untimed (warm-up: imports, caches, and in Pyodide the
WebAssembly engine's tier-up), then every page is timed once.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

Clock = Callable[[], int]
_PAGE_NUMBER = re.compile(r"page-(\d+)\.html$")


def select_pages(site: Path, *, step: int, base_url: str) -> list[tuple[str, str]]:
    """(url, html) of every `step`-th page, in page-number order (`/index.html` is page 0)."""
    numbered: list[tuple[int, Path]] = [(0, site / "index.html")]
    for path in site.rglob("page-*.html"):
        match = _PAGE_NUMBER.search(path.name)
        if match:
            numbered.append((int(match.group(1)), path))
    numbered.sort()
    chosen = [path for number, path in numbered if number % step == 0]
    return [(base_url + "/" + path.relative_to(site).as_posix(), path.read_text(encoding="utf-8")) for path in chosen]


class TitleLinks(HTMLParser):
    """The reference peer: title and resolved `<a href>` with the standard library's `html.parser`."""

    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.in_title = False
        self.title: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            for name, value in attrs:
                if name == "href" and value:
                    self.links.append(urljoin(self.base_url, value))
        elif tag == "title":
            self.in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)


def stdlib_title_links(html: str, base_url: str) -> Any:
    parser = TitleLinks(base_url)
    parser.feed(html)
    parser.close()
    return "".join(parser.title), parser.links


def scrapeq_extract(html: str, base_url: str) -> Any:
    from consumer.extract import extract

    return extract(html, base_url=base_url, want_markdown=True, want_text=True)


def time_pages(fn: Callable[[str, str], Any], pages: list[tuple[str, str]], *, clock: Clock) -> dict[str, Any]:
    for url, html in pages:
        fn(html, url)
    times_ms = []
    for url, html in pages:
        started = clock()
        fn(html, url)
        times_ms.append((clock() - started) / 1e6)
    times_ms.sort()
    return {
        "pages": len(times_ms),
        "median_ms": statistics.median(times_ms),
        "mean_ms": statistics.fmean(times_ms),
        "p90_ms": times_ms[int(0.9 * (len(times_ms) - 1))],
    }


def run(site: str, *, step: int, base_url: str, clock: Clock) -> dict[str, Any]:
    """Time both functions over the same pages; the ratio of their means (CPU per page) is machine-independent."""
    pages = select_pages(Path(site), step=step, base_url=base_url)
    scrapeq = time_pages(scrapeq_extract, pages, clock=clock)
    peer = time_pages(stdlib_title_links, pages, clock=clock)
    return {
        "pages": len(pages),
        "median_page_bytes": statistics.median(len(html.encode()) for _, html in pages),
        "scrapeq_extract": scrapeq,
        "stdlib_title_links": peer,
        "ratio_to_stdlib": scrapeq["mean_ms"] / peer["mean_ms"],
        "outputs_sha256": outputs_digest(pages),
    }


def outputs_digest(pages: list[tuple[str, str]]) -> str:
    """One digest of everything the extractor returned for `pages`: equal on two runtimes, equal output."""
    digest = hashlib.sha256()
    for url, html in pages:
        out = scrapeq_extract(html, url)
        fields = [out.title, out.description, out.language, out.markdown, out.text, out.links, out.content_hash]
        digest.update(json.dumps(fields, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()
