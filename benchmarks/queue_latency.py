"""Submit → first fetch: from just before `POST /scrape` to the moment the target site receives the request for
the task's page, for limit-1 tasks submitted one at a time.

    .venv/bin/python benchmarks/queue_latency.py --work-dir DIR [--tasks 50] [--warmup 3]

`scrapeq serve` and `scrapeq worker` run as separate processes over one fresh data dir (limits lifted); the
target is a small HTTP server in this process that notes the arrival time of every path (robots.txt answers
404 and is not what is measured: each task asks for its own `/t/<n>.html`). Both clocks are this process's
`time.perf_counter`. Between tasks a random pause (0–100 ms, fixed seed) keeps submissions from locking to
the worker's polling phase. The first `--warmup` tasks (robots.txt, connection set-up) are not counted.
Also reported: the `POST /scrape` round trip alone (the part of the latency before the job is queued).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from childproc import Child, emit, exit_on_sigterm, free_port, wait_http
from scrapeqenv import fresh_tenant, scrape_body, scrapeq_bin, service_env

PAGE = b"<!doctype html><html><head><title>t</title></head><body><p>one page</p></body></html>"


class Arrivals:
    """Arrival time of the first request for each path."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.changed = threading.Condition()

    def note(self, path: str) -> None:
        now = time.perf_counter()
        with self.changed:
            self.times.setdefault(path, now)
            self.changed.notify_all()

    def wait_for(self, path: str, timeout_s: float) -> float:
        with self.changed:
            if not self.changed.wait_for(lambda: path in self.times, timeout_s):
                raise TimeoutError(f"{path} was not fetched within {timeout_s} s")
            return self.times[path]


def target_server(arrivals: Arrivals, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            arrivals.note(self.path)
            found = self.path.startswith("/t/")
            body = PAGE if found else b"not found"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    index = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--timeout-s", type=float, default=10)
    args = parser.parse_args()
    exit_on_sigterm()

    data_dir = args.work_dir / "data"
    _, api_key = fresh_tenant(data_dir)
    arrivals = Arrivals()
    site_port, api_port = free_port(), free_port()
    site = target_server(arrivals, site_port)
    env = service_env(data_dir)
    with open(args.work_dir / "serve.log", "wb") as serve_log, open(args.work_dir / "worker.log", "wb") as worker_log:
        api = Child([scrapeq_bin(), "serve", "--port", str(api_port)], env=env, cwd=args.work_dir, stderr=serve_log)
        worker = Child([scrapeq_bin(), "worker"], env=env, cwd=args.work_dir, stderr=worker_log)
        try:
            wait_http(f"http://127.0.0.1:{api_port}/health", child=api)
            latencies_ms, posts_ms = submit_all(args, api_port, site_port, api_key, arrivals)
        finally:
            api.stop()
            worker.stop()
            site.shutdown()
    measured = sorted(latencies_ms[args.warmup :])
    posts = sorted(posts_ms[args.warmup :])
    emit(
        {
            "tasks": len(measured),
            "p50_ms": statistics.median(measured),
            "p90_ms": percentile(measured, 0.90),
            "p99_ms": percentile(measured, 0.99),
            "max_ms": measured[-1],
            "min_ms": measured[0],
            "post_p50_ms": statistics.median(posts),
            "post_p99_ms": percentile(posts, 0.99),
            "latencies_ms": [round(x, 3) for x in latencies_ms],
        }
    )


def submit_all(
    args: argparse.Namespace, api_port: int, site_port: int, api_key: str, arrivals: Arrivals
) -> tuple[list[float], list[float]]:
    """Latency to first fetch and `POST` round trip of every task, in milliseconds."""
    rng = random.Random(1)
    api = http.client.HTTPConnection("127.0.0.1", api_port, timeout=10)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
    latencies_ms, posts_ms = [], []
    for n in range(args.warmup + args.tasks):
        path = f"/t/{n}.html"
        body = json.dumps(scrape_body(f"http://127.0.0.1:{site_port}{path}"))
        started = time.perf_counter()
        api.request("POST", "/scrape", body=body, headers=headers)
        response = api.getresponse()
        answer = response.read()
        posts_ms.append((time.perf_counter() - started) * 1000)
        if response.status != 202:
            raise RuntimeError(f"POST /scrape answered {response.status}: {answer[:300]!r}")
        latencies_ms.append((arrivals.wait_for(path, args.timeout_s) - started) * 1000)
        time.sleep(rng.uniform(0, 0.1))
    api.close()
    return latencies_ms, posts_ms


if __name__ == "__main__":
    main()
