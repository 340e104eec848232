"""`POST /scrape` under load: requests/s and latency of `scrapeq serve` or of the bare FastAPI peer.

    .venv/bin/python benchmarks/producer_bench.py --target scrapeq|bare --work-dir DIR \
        [--connections 32] [--duration-s 5] [--warmup-s 1] [--observe]

The server runs as its own process (uvicorn, one process, the same `uvicorn.Config` flags for both); the load
comes from wrk (one thread, `--connections` keep-alive connections, `post.lua`) in another process, first for
`--warmup-s` unmeasured, then for `--duration-s`. scrapeq gets a fresh data dir, one tenant and key, every rate
limit lifted and its quotas raised high (their checks run) or switched off (`--quotas`, `scrapeqenv`); each
request creates a task and enqueues its job (no consumer runs, so the tenant's queued tasks pile up during the
run, as in a burst of submissions). `--observe` runs scrapeq as an operator would watch it: JSON log lines at INFO
(one access line per request, to a file), `/metrics` served (`SCRAPEQ_METRICS_TOKEN`) and scraped every second.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

from childproc import BENCH_DIR, Child, clean_env, emit, exit_on_sigterm, free_port, wait_http
from scrapeqenv import fresh_tenant, lifted_limits, scrape_body, scrapeq_bin, service_env

WRK = shutil.which("wrk") or "/usr/bin/wrk"
TARGET_URL = "https://example.com/docs/"
METRICS_TOKEN = "bench-metrics-token-0123456789"
#: What `--observe` adds to scrapeq's environment.
OBSERVED = {"SCRAPEQ_LOG_FORMAT": "json", "SCRAPEQ_LOG_LEVEL": "INFO", "SCRAPEQ_METRICS_TOKEN": METRICS_TOKEN}


def start_server(target: str, work_dir: Path, port: int, quotas: str, observe: bool) -> tuple[Child, str]:
    """The server process and the API key to send ("" for the bare peer)."""
    log = open(work_dir / f"{target}-server.log", "wb")  # kept open for the child's lifetime
    if target == "scrapeq":
        data_dir = work_dir / "data"
        _, api_key = fresh_tenant(data_dir)
        argv = [scrapeq_bin(), "serve", "--port", str(port)]
        env = service_env(data_dir, quotas=quotas, **(OBSERVED if observe else {}))
        child = Child(argv, env=env, cwd=work_dir, stdout=log, stderr=log)
    else:
        api_key = ""
        argv = [sys.executable, str(BENCH_DIR / "bare_api.py"), "--port", str(port)]
        child = Child(argv, env=clean_env(), cwd=work_dir, stdout=log, stderr=log)
    return child, api_key


def post_once(url: str, body: bytes, api_key: str) -> int:
    """One request before the load, to fail early on anything but 202 (a 429 would make the figures lie)."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


class Scraper(threading.Thread):
    """GETs `/metrics` every `interval_s` until stopped, as a Prometheus server would; counts the 200s."""

    def __init__(self, url: str, interval_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval_s = interval_s
        self.stopped = threading.Event()
        self.scrapes = 0
        self.failures = 0

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            request = urllib.request.Request(self.url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
                    self.scrapes += response.status == 200
            except OSError:
                self.failures += 1


def run_wrk(url: str, *, body: bytes, api_key: str, connections: int, duration_s: float) -> dict[str, Any]:
    argv = [WRK, "-t1", f"-c{connections}", f"-d{duration_s:g}s", "-s", str(BENCH_DIR / "post.lua"), url]
    env = clean_env(BENCH_BODY=body.decode(), BENCH_KEY=api_key)
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["scrapeq", "bare"], required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration-s", type=float, default=5)
    parser.add_argument("--warmup-s", type=float, default=1)
    parser.add_argument("--quotas", choices=["high", "off"], default="high", help="scrapeq's tenant quotas")
    parser.add_argument("--observe", action="store_true", help="scrapeq: JSON logs at INFO, /metrics scraped every s")
    args = parser.parse_args()
    exit_on_sigterm()

    shutil.rmtree(args.work_dir, ignore_errors=True)
    args.work_dir.mkdir(parents=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server, api_key = start_server(args.target, args.work_dir, port, args.quotas, args.observe)
    scraper = Scraper(base + "/metrics") if args.observe else None
    try:
        wait_http(base + "/health", child=server)
        body = json.dumps(scrape_body(TARGET_URL)).encode()
        first_status = post_once(base + "/scrape", body, api_key)
        if first_status != 202:
            raise RuntimeError(f"{args.target}: POST /scrape answered {first_status}, not 202")
        load = {"body": body, "api_key": api_key, "connections": args.connections}
        run_wrk(base + "/scrape", duration_s=args.warmup_s, **load)  # type: ignore[arg-type]
        if scraper is not None:
            scraper.start()
        result = run_wrk(base + "/scrape", duration_s=args.duration_s, **load)  # type: ignore[arg-type]
    finally:
        if scraper is not None:
            scraper.stopped.set()
            scraper.join()
        usage = server.stop()
    if scraper is not None and (scraper.failures or not scraper.scrapes):
        raise RuntimeError(f"/metrics: {scraper.scrapes} scrapes answered 200, {scraper.failures} failed")
    requests = result["requests"]
    settings = lifted_limits(quotas=args.quotas) if args.target == "scrapeq" else {}
    if args.observe:
        settings |= {**OBSERVED, "SCRAPEQ_METRICS_TOKEN": "(set)"}
    seconds = result["duration_us"] / 1e6
    emit(
        {
            "target": args.target,
            "settings": settings,
            "metrics_scrapes": scraper.scrapes if scraper is not None else 0,
            "connections": args.connections,
            "duration_s": seconds,
            "requests": requests,
            "requests_per_s": requests / seconds,
            "p50_ms": result["p50_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000,
            "errors": result["errors"],
            "non_2xx": result["errors"]["status"],
            "server": usage.as_dict(),
        }
    )


if __name__ == "__main__":
    main()
