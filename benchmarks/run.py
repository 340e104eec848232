"""`make bench`: every measurement of benchmarks/README.md, side by side in one run, and the table of ratios.

    .venv/bin/python benchmarks/run.py          # REPS=3 PAGES=2000 ONLY=<regex on row keys> (environment)

Generates the test site, starts nginx, then runs the rows round-robin (rep 1 of every row, then rep 2, ...),
each as its own process (the peers' from benchmarks/.venv, scrapeq's from the project's .venv, Pyodide under
Node), so slow drift of this machine touches every row alike. Each figure is the median over the reps; a
ratio is the median of the ratios of rows run in the same round. Writes benchmarks/results/latest.json (every
run, with its command) and latest.md (the table printed at the end).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from childproc import BENCH_DIR, ROOT, Child, exit_on_sigterm, free_port
from report import render
from staticsite import NGINX, Nginx, Site, generate

RESULTS = BENCH_DIR / "results"
WORK = RESULTS / "work"
PEER_PYTHON = Path(os.environ.get("BENCH_PEER_PYTHON", BENCH_DIR / ".venv" / "bin" / "python"))


@dataclass(frozen=True)
class Knobs:
    reps: int
    pages: int
    only: re.Pattern[str]
    connections: int
    duration_s: float
    latency_tasks: int
    extract_step: int

    @classmethod
    def from_env(cls) -> Knobs:
        env = os.environ
        return cls(
            reps=int(env.get("REPS", "3")),
            pages=int(env.get("PAGES", "2000")),
            only=re.compile(env.get("ONLY", "")),
            connections=int(env.get("CONNECTIONS", "32")),
            duration_s=float(env.get("DURATION_S", "5")),
            latency_tasks=int(env.get("TASKS", "50")),
            extract_step=int(env.get("EXTRACT_STEP", "10")),
        )


@dataclass(frozen=True)
class Context:
    knobs: Knobs
    site: Site
    base_url: str

    @property
    def start_url(self) -> str:
        return self.base_url + "/index.html"


Argv = Callable[[Context, Path], list[str]]


@dataclass(frozen=True)
class Row:
    key: str
    argv: Argv
    timeout_s: float = 180.0
    #: The script is the crawler itself: its CPU per page and peak RSS come from `wait4` of its process.
    per_page_usage: bool = False


def _script(name: str) -> str:
    return str(BENCH_DIR / name)


def _crawl(python: Path | str, script: str, *, output: str) -> Argv:
    """A crawl row; `output` is the script's option naming where pages go (a JSON lines file, a data dir)."""

    def argv(ctx: Context, scratch: Path) -> list[str]:
        out = scratch / ("data" if output == "--data-dir" else "pages.jsonl")
        return [
            str(python),
            _script(script),
            "--start",
            ctx.start_url,
            "--limit",
            str(ctx.knobs.pages),
            output,
            str(out),
        ]

    return argv


def _extract(runtime: str) -> Argv:
    def argv(ctx: Context, scratch: Path) -> list[str]:
        head = [sys.executable, _script("extract_cpython.py")]
        if runtime == "pyodide":
            head = [shutil.which("node") or "node", _script("extract_pyodide.mjs")]
        return [*head, "--site", str(ctx.site.root), "--base-url", ctx.base_url, "--step", str(ctx.knobs.extract_step)]

    return argv


def _producer(target: str, quotas: str = "high", *, observe: bool = False) -> Argv:
    def argv(ctx: Context, scratch: Path) -> list[str]:
        k = ctx.knobs
        return [
            sys.executable,
            _script("producer_bench.py"),
            *("--target", target, "--quotas", quotas, "--work-dir", str(scratch / "server")),
            *("--connections", str(k.connections), "--duration-s", str(k.duration_s)),
            *(["--observe"] if observe else []),
        ]

    return argv


def _latency(ctx: Context, scratch: Path) -> list[str]:
    return [
        sys.executable,
        _script("queue_latency.py"),
        "--work-dir",
        str(scratch),
        "--tasks",
        str(ctx.knobs.latency_tasks),
    ]


def _throughput(ctx: Context, scratch: Path) -> list[str]:
    # One work dir for every rep: each backlog's template database is filled once (outside the timing).
    return [sys.executable, _script("queue_throughput.py"), "--work-dir", str(WORK / "queue")]


ROWS = [
    Row("crawl.scrapeq", _crawl(sys.executable, "crawl_scrapeq.py", output="--data-dir"), timeout_s=400),
    Row("crawl.scrapy", _crawl(PEER_PYTHON, "crawl_scrapy.py", output="--out"), timeout_s=400, per_page_usage=True),
    Row("crawl.bare", _crawl(PEER_PYTHON, "crawl_bare.py", output="--out"), per_page_usage=True),
    Row("recrawl.scrapeq", _crawl(sys.executable, "recrawl_scrapeq.py", output="--data-dir"), timeout_s=700),
    Row("extract.cpython", _extract("cpython")),
    Row("extract.pyodide", _extract("pyodide")),
    Row("producer.scrapeq", _producer("scrapeq")),
    Row("producer.scrapeq_noquota", _producer("scrapeq", quotas="off")),
    Row("producer.scrapeq_observed", _producer("scrapeq", observe=True)),
    Row("producer.bare", _producer("bare")),
    Row("queue.latency", _latency),
    Row("queue.throughput", _throughput),
]


def run_row(row: Row, ctx: Context, rep: int, nginx: Nginx | None) -> dict[str, Any]:
    """Run one rep of one row; its JSON result plus the process's usage, or the error."""
    scratch = WORK / "runs" / f"{row.key}.{rep}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    argv = row.argv(ctx, scratch)
    # Other work on the machine skews a run: the load average before it is kept beside it.
    loadavg = float(Path("/proc/loadavg").read_text().split()[0])
    record: dict[str, Any] = {"row": row.key, "rep": rep, "argv": argv, "loadavg_1m": loadavg}
    nginx_before = nginx.worker_cpu_s() if nginx and row.key.startswith("crawl.") else None
    with open(scratch / "stdout.log", "wb") as out, open(scratch / "stderr.log", "wb") as err:
        child = Child(argv, cwd=scratch, stdout=out, stderr=err)
        try:
            usage = child.wait(row.timeout_s)
        except BaseException:  # Ctrl-C: the row's script stops its own children on SIGTERM
            child.stop(timeout_s=15)
            raise
    record["process"] = usage.as_dict()
    lines = (scratch / "stdout.log").read_text(errors="replace").strip().splitlines()
    try:
        if usage.returncode != 0:
            raise RuntimeError(f"exit status {usage.returncode}")
        record["result"] = json.loads(lines[-1])
    except (RuntimeError, IndexError, ValueError) as exc:
        tail = (scratch / "stderr.log").read_text(errors="replace")[-1500:]
        record["error"] = f"{exc}; stderr: {tail}"
        return record
    if row.per_page_usage and record["result"].get("pages"):
        pages = record["result"]["pages"]
        record["result"]["cpu_ms_per_page"] = usage.cpu_s * 1000 / pages
        record["result"]["peak_rss_mb"] = usage.max_rss_kb / 1024
    if nginx_before is not None and nginx:
        record["nginx_cpu_s"] = round(nginx.worker_cpu_s() - nginx_before, 3)
    return record


def environment(site: Site | None, began: datetime) -> dict[str, Any]:
    def out(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=30)
        except OSError:
            return "missing"
        return (done.stdout + done.stderr).strip()

    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    return {
        "commit": out(["git", "rev-parse", "HEAD"]),
        "uncommitted_changes": bool(out(["git", "status", "--porcelain", "--untracked-files=no"])),
        "date": began.isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu.group(1) if cpu else platform.processor(),
        "python": platform.python_version(),
        "peer_python": out([str(PEER_PYTHON), "-c", "import platform; print(platform.python_version())"]),
        "nginx": out([NGINX, "-v"]).rpartition(" ")[2],
        "wrk": " ".join(out(["wrk", "-v"]).split()[:2]) if shutil.which("wrk") else "missing",
        "node": out(["node", "--version"]),
        "site": site.as_dict() if site else None,
    }


def check_tools(rows: list[Row]) -> None:
    keys = " ".join(row.key for row in rows)
    missing = []
    if "crawl." in keys and not Path(NGINX).exists():
        missing.append("nginx")
    if "producer." in keys and not shutil.which("wrk"):
        missing.append("wrk")
    if re.search(r"crawl\.(scrapy|bare)", keys) and not PEER_PYTHON.exists():
        missing.append(f"the peers' venv ({PEER_PYTHON})")
    if "extract.pyodide" in keys and not (ROOT / "node_modules" / "pyodide").is_dir():
        missing.append("node_modules/pyodide")
    if missing:
        sys.exit(f"benchmarks: missing {', '.join(missing)}; `make bench` installs them")


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def main() -> None:
    exit_on_sigterm()
    knobs = Knobs.from_env()
    rows = [row for row in ROWS if knobs.only.search(row.key)]
    if not rows:
        sys.exit(f"benchmarks: ONLY={knobs.only.pattern!r} selects no row of {[r.key for r in ROWS]}")
    check_tools(rows)
    started, began = time.monotonic(), datetime.now(UTC)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    site = generate(WORK / "site", pages=knobs.pages)
    log(f"site: {site.pages} pages ({site.reachable} reachable under robots.txt), median {site.median_page_bytes} B")
    nginx = Nginx(site.root, port=free_port(), rundir=WORK / "nginx") if any("crawl." in r.key for r in rows) else None
    base_url = nginx.base_url if nginx else "http://127.0.0.1:8089"
    ctx = Context(knobs=knobs, site=site, base_url=base_url)
    records: list[dict[str, Any]] = []
    try:
        if nginx:
            nginx.start()
        for rep in range(1, knobs.reps + 1):
            for row in rows:
                row_started = time.monotonic()
                record = run_row(row, ctx, rep, nginx)
                records.append(record)
                with open(WORK / "runs.jsonl", "a", encoding="utf-8") as runs:  # kept even if the run dies later
                    runs.write(json.dumps(record, default=str) + "\n")
                took = time.monotonic() - row_started
                log(f"rep {rep}/{knobs.reps} {row.key:<22} {_brief(record)} ({took:.1f} s)")
    finally:
        if nginx:
            nginx.stop()
    summary = {
        "environment": environment(site, began),
        "knobs": {**knobs.__dict__, "only": knobs.only.pattern},
        "runs": records,
        "wall_s": round(time.monotonic() - started, 1),
    }
    table, aggregates = render(records, summary)
    summary["aggregates"] = aggregates
    (RESULTS / "latest.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    (RESULTS / "latest.md").write_text(table, encoding="utf-8")
    sys.stdout.write(table)
    log(f"wrote {RESULTS / 'latest.json'} and latest.md in {summary['wall_s']} s")


def _brief(record: dict[str, Any]) -> str:
    if "error" in record:
        return "FAILED: " + record["error"][:300]
    result = record["result"]
    for key, unit in (
        ("pages_per_s", "pages/s"),
        ("requests_per_s", "req/s"),
        ("messages_per_s", "msg/s"),
        ("p50_ms", "ms p50"),
    ):
        if key in result:
            return f"{result[key]:,.1f} {unit}"
    if "scrapeq_extract" in result:
        return f"{result['scrapeq_extract']['mean_ms']:.3f} ms/page extract"
    return "ok"


if __name__ == "__main__":
    main()
