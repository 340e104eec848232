"""The Scrapy peer: a breadth-first crawl of one site, title + body text of every page to JSON lines.

    benchmarks/.venv/bin/python benchmarks/crawl_scrapy.py --start http://127.0.0.1:PORT/index.html \
        --limit 2000 --out pages.jsonl [--concurrency 16]

Settings as a user would tune Scrapy for one fast host: CONCURRENT_REQUESTS = CONCURRENT_REQUESTS_PER_DOMAIN =
16 (the per-domain default of 8 would cap a one-host crawl), robots.txt obeyed, no AutoThrottle, no delay.
Scrapy's default (LIFO) crawl order is kept: breadth-first queues (DEPTH_PRIORITY=1 + FIFO) measured about 20%
slower here, and the limit is above the site's size, so the order does not change which pages are fetched.
pages/s = item_scraped_count / elapsed_time_seconds from Scrapy's own stats.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import scrapy
from childproc import crawl_arguments, emit
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response
from scrapy.linkextractors import LinkExtractor


def drop_tracking(url: str) -> str:
    """Drop utm_* parameters (scrapeq and the bare loop do too), so both spellings of a link are one page."""
    parts = urlsplit(url)
    if "utm_" not in parts.query:
        return url
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("utm_")]
    return urlunsplit(parts._replace(query=urlencode(query)))


class SiteSpider(scrapy.Spider):
    name = "bench"

    def __init__(self, start_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_url = start_url
        # OffsiteMiddleware compares the bare host; LinkExtractor(allow_domains=...) would compare host:port and,
        # on a non-default port, silently extract nothing, so it is left unset.
        self.allowed_domains = [urlsplit(start_url).hostname or ""]
        self.links = LinkExtractor(process_value=drop_tracking)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        # Not dont_filter (the default start requests'): the dupefilter then knows the start page, which is
        # otherwise fetched twice.
        yield scrapy.Request(self.start_url, callback=self.parse)

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        yield {
            "url": response.url,
            "title": response.css("title::text").get(),
            "text": " ".join(t.strip() for t in response.xpath("//body//text()").getall() if t.strip()),
        }
        for link in self.links.extract_links(response):
            yield scrapy.Request(link.url, callback=self.parse)


def main() -> None:
    parser = crawl_arguments(__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    process = CrawlerProcess(
        settings={
            "CONCURRENT_REQUESTS": args.concurrency,
            "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
            "ROBOTSTXT_OBEY": True,
            "AUTOTHROTTLE_ENABLED": False,
            "DOWNLOAD_DELAY": 0,
            "CLOSESPIDER_ITEMCOUNT": args.limit,
            "FEEDS": {args.out: {"format": "jsonlines", "overwrite": True}},
            "LOG_LEVEL": "WARNING",
            "TELNETCONSOLE_ENABLED": False,
        }
    )
    crawler = process.create_crawler(SiteSpider)
    process.crawl(crawler, start_url=args.start)
    process.start()
    stats = crawler.stats.get_stats() if crawler.stats else {}
    items = int(stats.get("item_scraped_count", 0))
    elapsed_s = float(stats.get("elapsed_time_seconds", 0.0))
    emit(
        {
            "system": "scrapy",
            "pages": items,
            "elapsed_s": elapsed_s,
            "pages_per_s": items / elapsed_s if elapsed_s else 0.0,
            "responses": int(stats.get("response_received_count", 0)),
            "dupefilter_filtered": int(stats.get("dupefilter/filtered", 0)),
            "robots_forbidden": int(stats.get("robotstxt/forbidden", 0)),
            "finish_reason": stats.get("finish_reason"),
            "scrapy": scrapy.__version__,
        }
    )


if __name__ == "__main__":
    main()
