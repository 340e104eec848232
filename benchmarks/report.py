"""The table of `make bench`: medians over the reps, ratios to the peers, and the targets with ✓/✗.

A figure is the median over the reps (its min–max in brackets when there are several); a ratio is the median
of the per-round ratios, i.e. of two rows run one after the other in the same round.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Records = list[dict[str, Any]]
Getter = Callable[[dict[str, Any]], float | None]


def _by_rep(records: Records, row: str, get: Getter) -> dict[int, float]:
    values = {}
    for record in records:
        if record["row"] == row and "result" in record:
            value = get(record["result"])
            if value is not None:
                values[record["rep"]] = float(value)
    return values


class Figures:
    """Medians, ranges and paired ratios over the records of one run; every figure it returns is kept."""

    def __init__(self, records: Records) -> None:
        self.records = records
        self.kept: dict[str, Any] = {}

    def median(self, name: str, row: str, get: Getter) -> tuple[float | None, str]:
        """The median and its text (with the range over the reps)."""
        values = list(_by_rep(self.records, row, get).values())
        if not values:
            self.kept[name] = None
            return None, "failed" if self._ran(row) else "—"
        middle = statistics.median(values)
        self.kept[name] = {"median": middle, "min": min(values), "max": max(values), "n": len(values)}
        low, high = _fmt(min(values)), _fmt(max(values))
        return middle, _fmt(middle) + (f" ({low}–{high})" if low != high else "")

    def highest(self, name: str, row: str, get: Getter) -> float | None:
        values = list(_by_rep(self.records, row, get).values())
        self.kept[name] = max(values) if values else None
        return self.kept[name]

    def ratio(self, name: str, top: tuple[str, Getter], bottom: tuple[str, Getter]) -> tuple[float | None, str]:
        """Median over the rounds of top/bottom, pairing the two rows' runs of the same round."""
        upper, lower = _by_rep(self.records, *top), _by_rep(self.records, *bottom)
        ratios = [upper[rep] / lower[rep] for rep in upper if lower.get(rep)]
        if not ratios:
            self.kept[name] = None
            return None, "—"
        middle = statistics.median(ratios)
        self.kept[name] = {"median": middle, "min": min(ratios), "max": max(ratios), "n": len(ratios)}
        low, high = f"{min(ratios):.2f}", f"{max(ratios):.2f}"
        spread = f" ({low}–{high})" if low != high else ""
        return middle, f"{middle:.2f}×{spread}"

    def _ran(self, row: str) -> bool:
        return any(record["row"] == row for record in self.records)


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _times(text: str) -> str:
    """A median's text as a ratio: "1.23 (1.1–1.3)" → "1.23× (1.1–1.3)"."""
    if text in ("—", "failed"):
        return text
    value, _, spread = text.partition(" ")
    return f"{value}× {spread}".rstrip()


def _get(*path: str) -> Getter:
    def get(result: dict[str, Any]) -> float | None:
        value: Any = result
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return None if value is None else float(value)

    return get


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


CRAWL_SYSTEMS = (
    ("crawl.scrapeq", "scrapeq: one `scrapeq worker` (markdown + links + metadata → SQLite KV)"),
    ("crawl.scrapy", "Scrapy {scrapy} (title + body text → JSON lines)"),
    ("crawl.bare", "bare: asyncio + aiohttp + selectolax (title + text + links → JSON lines)"),
)


def _crawl(fig: Figures, env: dict[str, Any], records: Records) -> list[str]:
    site = env.get("site") or {}
    scrapy = next((r["result"].get("scrapy") for r in records if r["row"] == "crawl.scrapy" and "result" in r), "")
    rows = []
    pps = _get("pages_per_s")
    for key, label in CRAWL_SYSTEMS:
        short = key.split(".")[1]
        _, pages = fig.median(f"{short}.pages", key, _get("pages"))
        _, rate = fig.median(f"{short}.pages_per_s", key, pps)
        _, to_scrapy = fig.ratio(f"{short}.x_scrapy", (key, pps), ("crawl.scrapy", pps))
        _, to_bare = fig.ratio(f"{short}.x_bare", (key, pps), ("crawl.bare", pps))
        _, cpu = fig.median(f"{short}.cpu_ms_per_page", key, _get("cpu_ms_per_page"))
        _, rss = fig.median(f"{short}.peak_rss_mb", key, _get("peak_rss_mb"))
        rows.append([label.format(scrapy=scrapy), pages, rate, to_scrapy, to_bare, cpu, rss])
    return [
        f"### 1. Crawl throughput, one process, concurrency 16 (site: {site.get('pages')} pages, "
        f"{site.get('reachable')} reachable under robots.txt, median page {site.get('median_page_bytes')} B; "
        "nginx, 1 worker, loopback)",
        "",
        *_table(["system", "pages", "pages/s", "× Scrapy", "× bare", "CPU ms/page", "peak RSS MB"], rows),
    ]


def _extract(fig: Figures, records: Records, knobs: dict[str, Any]) -> list[str]:
    rows = []
    for key, label in (
        ("extract.cpython", "CPython {python} (`process_time`)"),
        (
            "extract.pyodide",
            "Pyodide {pyodide} (Python {python}) under Node {node} (`perf_counter`, one thread: wall ≈ CPU)",
        ),
    ):
        info = next((r["result"] for r in records if r["row"] == key and "result" in r), {})
        runtime = key.split(".")[1]
        _, mean = fig.median(f"{runtime}.extract_mean_ms", key, _get("scrapeq_extract", "mean_ms"))
        _, median = fig.median(f"{runtime}.extract_median_ms", key, _get("scrapeq_extract", "median_ms"))
        _, p90 = fig.median(f"{runtime}.extract_p90_ms", key, _get("scrapeq_extract", "p90_ms"))
        _, peer = fig.median(f"{runtime}.stdlib_mean_ms", key, _get("stdlib_title_links", "mean_ms"))
        _, times = fig.median(f"{runtime}.x_stdlib", key, _get("ratio_to_stdlib"))
        rows.append(
            [
                label.format(**{k: info.get(k, "?") for k in ("python", "pyodide", "node")}),
                mean,
                median,
                p90,
                peer,
                _times(times),
            ]
        )
    pages = next((r["result"].get("pages") for r in records if r["row"].startswith("extract.") and "result" in r), "?")
    return [
        f"### 2. Worker-path extraction, CPU per page ({pages} pages: every {knobs.get('extract_step')}th; "
        "markdown + text + links + metadata; stdlib `html.parser` title + links as the peer, same process)",
        "",
        *_table(["runtime", "scrapeq mean ms", "median ms", "p90 ms", "stdlib title+links mean ms", "× stdlib"], rows),
    ]


def _producer(fig: Figures, knobs: dict[str, Any]) -> list[str]:
    rows = []
    rps = _get("requests_per_s")
    for key, label in (
        ("producer.scrapeq", "scrapeq `POST /scrape` (auth, rate limits, quotas raised high, task record, enqueue)"),
        ("producer.scrapeq_noquota", "the same with the quotas off (0: no quota checks)"),
        ("producer.scrapeq_observed", "`producer.scrapeq` with JSON logs at INFO and `/metrics` scraped every second"),
        ("producer.bare", "bare FastAPI `POST` (pydantic body → 202)"),
    ):
        short = key.split(".")[1]
        _, rate = fig.median(f"{short}.requests_per_s", key, rps)  # "scrapeq", "scrapeq_noquota", "bare"
        _, to_bare = fig.ratio(f"{short}.x_bare", (key, rps), ("producer.bare", rps))
        _, p50 = fig.median(f"{short}.p50_ms", key, _get("p50_ms"))
        _, p99 = fig.median(f"{short}.p99_ms", key, _get("p99_ms"))
        errors = fig.highest(f"{short}.non_2xx", key, _get("non_2xx"))
        rows.append([label, rate, to_bare, p50, p99, "—" if errors is None else f"{errors:,.0f}"])
    return [
        f"### 3. Producer: {knobs.get('connections')} connections for {knobs.get('duration_s')} s from wrk "
        "(another process); uvicorn, one process, same flags",
        "",
        *_table(["endpoint", "requests/s", "× bare", "p50 ms", "p99 ms", "non-2xx (most in a rep)"], rows),
    ]


def _queue(fig: Figures, knobs: dict[str, Any]) -> list[str]:
    _, p50 = fig.median("latency.p50_ms", "queue.latency", _get("p50_ms"))
    _, p99 = fig.median("latency.p99_ms", "queue.latency", _get("p99_ms"))
    _, post = fig.median("latency.post_p50_ms", "queue.latency", _get("post_p50_ms"))
    _, small = fig.median("queue.backlog_100", "queue.throughput", _get("backlogs", "100", "messages_per_s"))
    _, large = fig.median("queue.backlog_100000", "queue.throughput", _get("backlogs", "100000", "messages_per_s"))
    _, ratio = fig.median("queue.x_backlog", "queue.throughput", _get("ratio_largest_to_smallest"))
    return [
        "### 4. Queue",
        "",
        *_table(
            ["measurement", "value"],
            [
                [
                    f"submit → first page fetch, p50 ({knobs.get('latency_tasks')} limit-1 tasks, serve + worker)",
                    f"{p50} ms",
                ],
                ["submit → first page fetch, p99", f"{p99} ms"],
                ["of which the `POST /scrape` round trip, p50", f"{post} ms"],
                ["SQLite queue send + receive + ack, backlog 100", f"{small} msg/s"],
                ["SQLite queue send + receive + ack, backlog 100,000", f"{large} msg/s"],
                ["backlog 100,000 vs 100 (paired: blocks of 250 cycles taking turns in one process)", _times(ratio)],
            ],
        ),
    ]


def _recrawl(fig: Figures) -> list[str]:
    _, first = fig.median("recrawl.first_s", "recrawl.scrapeq", _get("first", "elapsed_s"))
    _, again = fig.median("recrawl.again_s", "recrawl.scrapeq", _get("again", "elapsed_s"))
    _, speedup = fig.median("recrawl.speedup", "recrawl.scrapeq", _get("speedup"))
    _, cpu = fig.median("recrawl.cpu_ratio", "recrawl.scrapeq", _get("cpu_ratio"))
    _, plain = fig.median("recrawl.json_bytes", "recrawl.scrapeq", _get("bytes_per_page_json"))
    _, stored = fig.median("recrawl.stored_bytes", "recrawl.scrapeq", _get("bytes_per_page_stored"))
    _, ratio = fig.median("recrawl.compression", "recrawl.scrapeq", _get("compression_ratio"))
    return [
        "### 5. Knowledge base re-crawl and storage",
        "",
        *_table(
            ["measurement", "value"],
            [
                ["first crawl of the site into a knowledge base", f"{first} s"],
                ["the same crawl again, nothing changed (conditional requests, 304s)", f"{again} s"],
                ["first / again, wall time", _times(speedup)],
                ["first / again, worker CPU", _times(cpu)],
                ["bytes per page record, as JSON", f"{plain}"],
                ["bytes per page record, as stored (deflated)", f"{stored}"],
                ["JSON / stored", _times(ratio)],
            ],
        ),
    ]


@dataclass(frozen=True)
class Target:
    label: str
    #: The figure it checks: a name `Figures` kept (its median, or the value itself).
    figure: str
    holds: Callable[[float], bool]
    shown: str


TARGETS = (
    Target("crawl ≥ 2.5× Scrapy pages/s, markdown on", "scrapeq.x_scrapy", lambda v: v >= 2.5, "{:.2f}×"),
    Target("crawl peak RSS ≤ 128 MB (highest of the reps)", "scrapeq.peak_rss_max", lambda v: v <= 128, "{:.0f} MB"),
    Target("Worker-path extraction ≤ 5 ms CPU/page, CPython", "cpython.extract_mean_ms", lambda v: v <= 5, "{:.2f} ms"),
    Target("`POST /scrape` ≥ 50% of the bare endpoint's requests/s", "scrapeq.x_bare", lambda v: v >= 0.5, "{:.0%}"),
    Target(
        "`POST /scrape`, JSON logs + metrics on, ≥ 50% of bare", "scrapeq_observed.x_bare", lambda v: v >= 0.5, "{:.0%}"
    ),
    Target("submit → first fetch p50 ≤ 25 ms", "latency.p50_ms", lambda v: v <= 25, "{:.1f} ms"),
    Target("queue throughput at 100k backlog ≥ 80% of at 100", "queue.x_backlog", lambda v: v >= 0.8, "{:.0%}"),
    Target("unchanged re-crawl ≥ 3× faster than the first crawl", "recrawl.speedup", lambda v: v >= 3, "{:.2f}×"),
)


def _targets(fig: Figures) -> list[str]:
    rows = []
    for target in TARGETS:
        kept = fig.kept.get(target.figure)
        value = kept["median"] if isinstance(kept, dict) else kept
        if value is None:
            rows.append([target.label, "—", "—"])
        else:
            rows.append([target.label, target.shown.format(value), "✓" if target.holds(value) else "✗"])
    return ["### Targets", "", *_table(["target", "measured", ""], rows)]


def render(records: Records, summary: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The markdown table, and every figure in it."""
    env, knobs = summary["environment"], summary["knobs"]
    fig = Figures(records)
    sections = [
        _crawl(fig, env, records),
        _extract(fig, records, knobs),
        _producer(fig, knobs),
        _queue(fig, knobs),
        _recrawl(fig),
    ]
    fig.highest("scrapeq.peak_rss_max", "crawl.scrapeq", _get("peak_rss_mb"))
    sections.append(_targets(fig))
    dirty = " + uncommitted changes" if env.get("uncommitted_changes") else ""
    loads = sorted(record["loadavg_1m"] for record in records if "loadavg_1m" in record) or [0.0]
    head = [
        f"## scrapeq benchmarks — commit {env.get('commit', '?')[:12]}{dirty}, {env.get('date')}",
        "",
        f"{env.get('cpus')} CPUs ({env.get('cpu_model')}), Python {env.get('python')}, {env.get('nginx')}, "
        f"{env.get('wrk')}, Node {env.get('node')}. Median of {knobs.get('reps')} reps run round-robin "
        f"(min–max in brackets); ratios are medians of same-round ratios. The run took {summary['wall_s']} s; "
        f"1-min load average before a row: median {statistics.median(loads):.2f}, highest {loads[-1]:.2f} "
        "(anything above ~1 means other work shared the machine).",
    ]
    text = "\n\n".join("\n".join(part) for part in [head, *sections]) + "\n"
    return text, fig.kept
