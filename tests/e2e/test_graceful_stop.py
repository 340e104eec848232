"""SIGTERM stops a process without losing or stalling work: a worker hands its slice back at once, and `serve`
finishes the requests it has already started before it exits."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import GENEROUS_LIMITS, Cli, all_pages, free_port, poll_task, wait_for_health
from tests.fixtures.sitegen import generate
from tests.fixtures.static import serve_directory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

LIMIT = 40
PAGE_DELAY_S = 2.0
GRACE_S = 1.0
#: Far longer than the test: a slice left leased by the stopped worker would stall the crawl past its end.
VISIBILITY_TIMEOUT_S = 300


def stop(proc: subprocess.Popen[bytes]) -> float:
    """SIGTERM `proc`; the seconds it took to exit (it must exit cleanly)."""
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    return time.monotonic() - began


def wait_for_pages(client: httpx.Client, task_id: str, at_least: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stored = len(all_pages(client, task_id))
        if stored >= at_least:
            return stored
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not store {at_least} pages in {timeout_s:.0f} s")


def test_a_stopped_worker_hands_its_slice_to_another_at_once(tmp_path: Path, cli: Cli) -> None:
    generate(tmp_path / "site", pages=200, seed=11)
    cli.env.update(
        SCRAPEQ_SHUTDOWN_GRACE_S=str(GRACE_S),
        SCRAPEQ_LOG_LEVEL="INFO",  # the hand-back is logged at INFO
        SCRAPEQ_QUEUE_VISIBILITY_TIMEOUT_S=str(VISIBILITY_TIMEOUT_S),
        SCRAPEQ_CRAWL_CONCURRENCY="4",
        **GENEROUS_LIMITS,
    )
    key = cli.new_key("stop", "kb_stop")
    base = cli.start_http("serve", tmp_path / "serve.log")
    first = cli.start("worker", log=tmp_path / "worker-1.log")
    with (
        # Every page takes longer than the grace: a stopping worker always has pages in flight to hand back.
        serve_directory(tmp_path / "site", delay_s=PAGE_DELAY_S) as site,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client,
    ):
        body = {"url": f"{site}/index.html", "knowledge_base_id": "kb_stop", "limit": LIMIT}
        accepted = client.post("/scrape", json=body)
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["task_id"]
        # Progress reaches the task at slice checkpoints; stored pages show the crawl as it goes.
        before = wait_for_pages(client, task_id, 4)

        # The whole crawl is one slice (40 pages, 60 s) with 30-odd pages to go: only a hand-back ends it this soon.
        took = stop(first)
        assert took < GRACE_S + 4, f"the worker took {took:.1f} s to stop"
        handed = client.get(f"/tasks/{task_id}").json()
        assert handed["status"] == "running"
        stored = len(all_pages(client, task_id))
        assert before <= stored < LIMIT
        # The hand-back is a checkpoint: the task's progress counts what was stored.
        assert handed["progress"]["pages_done"] == stored
        assert "handing back" in (tmp_path / "worker-1.log").read_text()

        cli.start("worker", log=tmp_path / "worker-2.log")
        resumed_at = time.monotonic()
        wait_for_pages(client, task_id, stored + 1)
        waited = time.monotonic() - resumed_at
        # Worker start-up and one page, not the visibility timeout.
        assert waited < 15, f"the second worker took {waited:.1f} s to continue"

        done = poll_task(client, task_id, lambda t: t["status"] not in ("queued", "running"), timeout_s=90)
        pages = all_pages(client, task_id)
    assert done["status"] == "completed"
    assert done["progress"]["pages_done"] == LIMIT == len(pages)
    assert len({p["url"] for p in pages}) == LIMIT


def test_serve_finishes_a_request_in_flight_before_it_exits(tmp_path: Path, cli: Cli) -> None:
    key = cli.new_key("drain", "kb_drain")
    port = free_port()
    server = cli.start("serve", "--port", str(port), log=tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    wait_for_health(base)
    body = json.dumps({"url": "http://127.0.0.1:9/", "knowledge_base_id": "kb_drain"}).encode()
    head = (
        f"POST /scrape HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head + body[:10])  # a request under way: headers read, body still coming
        time.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert server.poll() is None, "serve exited with a request in flight"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/health", timeout=2)  # a stopping server takes no new connection
        conn.sendall(body[10:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 202 Accepted", answer[:300]
    assert server.wait(timeout=10) == 0
    task_id = json.loads(rest.partition(b"\r\n\r\n")[2])["task_id"]

    # The accepted task was stored and queued: a new server knows it.
    base = cli.start_http("serve", tmp_path / "serve-2.log")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        assert client.get(f"/tasks/{task_id}").json()["status"] == "queued"
