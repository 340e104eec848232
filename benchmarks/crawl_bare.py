"""The bare baseline: the smallest fast crawler we could write, to show what one Python process can do here.

    benchmarks/.venv/bin/python benchmarks/crawl_bare.py --start http://127.0.0.1:PORT/index.html \
        --limit 2000 --out pages.jsonl [--concurrency 16]

asyncio + one aiohttp connection pool + selectolax (Lexbor): breadth-first from the
start URL, links resolved and normalised (no fragment, no utm_* parameters, same host and port only),
de-duplicated, robots.txt obeyed (`urllib.robotparser`), at most `limit` pages; title, body text and links of
every page written as JSON lines. pages/s = pages / (first request, robots.txt, to the last page written).
(uvloop was tried and measured no faster here, so the loop is asyncio's own.)
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import IO, Any
from urllib.parse import urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import aiohttp
from childproc import crawl_arguments, emit
from selectolax.lexbor import LexborHTMLParser


def normalise(href: str, base: str, origin: str) -> str | None:
    """`href` on page `base` as an absolute URL of `origin` without fragment or tracking parameters."""
    parts = urlsplit(urljoin(base, href.strip()))
    if f"{parts.scheme}://{parts.netloc}" != origin:
        return None
    query = parts.query
    if "utm_" in query:
        query = "&".join(p for p in query.split("&") if not p.startswith("utm_"))
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


class Crawler:
    def __init__(self, start: str, *, limit: int, concurrency: int, out: IO[str]) -> None:
        parts = urlsplit(start)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.limit = limit
        self.concurrency = concurrency
        self.out = out
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.seen = {start}
        self.queue.put_nowait(start)
        self.robots = RobotFileParser()
        self.pages = 0
        self.failed = 0

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(self.origin + "/robots.txt") as response:
                self.robots.parse((await response.text()).splitlines() if response.status == 200 else [])
            workers = [asyncio.create_task(self.work(session)) for _ in range(self.concurrency)]
            await self.queue.join()
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def work(self, session: aiohttp.ClientSession) -> None:
        while True:
            url = await self.queue.get()
            try:
                async with session.get(url) as response:
                    body = await response.read()
                    ok = response.status == 200 and response.content_type == "text/html"
                if ok:
                    self.handle(url, body)
                else:
                    self.failed += 1
            except aiohttp.ClientError:
                self.failed += 1
            finally:
                self.queue.task_done()

    def handle(self, url: str, body: bytes) -> None:
        tree = LexborHTMLParser(body)
        links = []
        for node in tree.css("a[href]"):
            link = normalise(node.attributes.get("href") or "", url, self.origin)
            if link is None:
                continue
            links.append(link)
            if link not in self.seen and len(self.seen) < self.limit and self.robots.can_fetch("*", link):
                self.seen.add(link)
                self.queue.put_nowait(link)
        title = tree.css_first("title")
        page: dict[str, Any] = {
            "url": url,
            "title": title.text() if title else None,
            "text": tree.body.text(separator=" ", strip=True) if tree.body else "",
            "links": links,
        }
        self.out.write(json.dumps(page) + "\n")
        self.pages += 1


def main() -> None:
    parser = crawl_arguments(__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    with open(args.out, "w", encoding="utf-8") as out:
        crawler = Crawler(args.start, limit=args.limit, concurrency=args.concurrency, out=out)
        started = time.perf_counter()
        asyncio.run(crawler.run())
        elapsed_s = time.perf_counter() - started
    emit(
        {
            "system": "bare",
            "pages": crawler.pages,
            "pages_failed": crawler.failed,
            "elapsed_s": elapsed_s,
            "pages_per_s": crawler.pages / elapsed_s,
            "aiohttp": aiohttp.__version__,
        }
    )


if __name__ == "__main__":
    main()
