"""Chaos: five crawls on `serve` + two `worker` processes while a random one of them is SIGKILLed and restarted,
15 times, every 1–3 s. Nothing is lost, nothing doubled, and every webhook event arrives under one stable id."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import GENEROUS_LIMITS, Cli, all_pages, free_port, wait_for_health
from tests.fixtures.receiver import Receiver, serve_receiver
from tests.fixtures.sitegen import generate
from tests.fixtures.static import serve_directory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TASKS, LIMIT, KILLS = 5, 50, 15
EVERY_EVENT = ["task.started", "task.page", "task.completed", "task.failed", "task.cancelled"]
ENDED = ("completed", "failed", "cancelled")


class Cluster:
    """`serve` and two `worker`s on one data dir; `kill_one` SIGKILLs a random one and starts it again."""

    def __init__(self, cli: Cli, port: int, logs: Path) -> None:
        self.cli, self.port, self.logs = cli, port, logs
        self.roles = {"serve": ["serve", "--port", str(port)], "worker-1": ["worker"], "worker-2": ["worker"]}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kills: list[tuple[str, float]] = []
        for role in self.roles:
            self.start(role)

    def start(self, role: str) -> None:
        self.procs[role] = self.cli.start(*self.roles[role], log=self.logs / f"{role}.log")

    def kill_one(self, rng: random.Random) -> None:
        role = rng.choice(sorted(self.roles))
        proc = self.procs[role]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.kills.append((role, time.time()))
        self.start(role)


def wait_until(what: str, timeout_s: float, check: Any) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = check()
        except httpx.HTTPError:
            found = None  # the server is restarting
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_crawls_survive_processes_killed_at_random(tmp_path: Path) -> None:
    rng = random.Random(20261206)
    generate(tmp_path / "site", pages=400, seed=11)
    cli = Cli(
        tmp_path / "data",
        SCRAPEQ_QUEUE_VISIBILITY_TIMEOUT_S="4",
        # Slow enough (2 requests at once per worker, 0.4 s each) that the crawls outlast most of the kills.
        SCRAPEQ_HOST_MAX_CONCURRENCY="2",
        SCRAPEQ_QUEUE_RETRY_BASE_S="0.2",
        SCRAPEQ_SLICE_MAX_PAGES="6",
        SCRAPEQ_CRAWL_CONCURRENCY="2",
        SCRAPEQ_WEBHOOK_BACKOFF_S="0.2",
        SCRAPEQ_WEBHOOK_MAX_ATTEMPTS="50",
        **GENEROUS_LIMITS,
    )
    try:
        key = cli.new_key("chaos", "kb_chaos")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        receiver = Receiver()
        with (
            serve_directory(tmp_path / "site", delay_s=0.4) as site,
            serve_receiver(receiver),
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client,
        ):
            cluster = Cluster(cli, port, tmp_path)
            wait_for_health(base)
            task_ids = []
            for n in range(TASKS):
                body = {
                    "url": f"{site}/index.html?crawl={n}",
                    "knowledge_base_id": "kb_chaos",
                    "limit": LIMIT,
                    "formats": ["markdown"],
                    "webhook": {"url": receiver.url(f"/hook/{n}"), "events": EVERY_EVENT},
                }
                answer = client.post("/scrape", json=body)
                assert answer.status_code == 202, answer.text
                task_ids.append(answer.json()["task_id"])
            for _ in range(KILLS):
                time.sleep(rng.uniform(1.0, 3.0))
                cluster.kill_one(rng)
            wait_for_health(base)

            def all_ended() -> list[dict[str, Any]] | None:
                tasks = [client.get(f"/tasks/{task_id}").json() for task_id in task_ids]
                return tasks if all(task["status"] in ENDED for task in tasks) else None

            tasks = wait_until("every task to end", 150, all_ended)
            pages = {task_id: all_pages(client, task_id) for task_id in task_ids}

            def completions() -> dict[str, set[str]] | None:
                seen: dict[str, set[str]] = defaultdict(set)
                for got in list(receiver.received):
                    if json.loads(got.body)["type"] == "task.completed":
                        seen[json.loads(got.body)["data"]["task_id"]].add(got.headers["webhook-id"])
                return seen if set(seen) == set(task_ids) else None

            wait_until("every task.completed delivery", 120, completions)
    finally:
        cli.stop_all()

    check_outcome(cluster, tasks, pages, receiver)


def check_outcome(
    cluster: Cluster, tasks: list[dict[str, Any]], pages: dict[str, list[dict[str, Any]]], receiver: Receiver
) -> None:
    roles = {role for role, _ in cluster.kills}
    assert len(cluster.kills) == KILLS and {"worker-1", "worker-2"} & roles and "serve" in roles
    # The kills met the crawls at work: the last task ended after most of them.
    last_end = max(datetime.fromisoformat(task["finished_at"]).timestamp() for task in tasks)
    assert last_end > cluster.kills[KILLS // 2][1], (last_end, cluster.kills)
    for task in tasks:
        stored = [page for page in pages[task["task_id"]] if page["error"] is None]
        assert task["status"] == "completed", task
        assert task["progress"]["pages_done"] == LIMIT == len(stored)
        assert len({page["url"] for page in stored}) == LIMIT
    # Every event, however often it was delivered, has one webhook-id; each task's completion is one event.
    ids_by_event: dict[tuple[str, str, int | None], set[str]] = defaultdict(set)
    for got in receiver.received:
        event = json.loads(got.body)
        page = event["data"].get("page")
        ids_by_event[(event["data"]["task_id"], event["type"], page and page["seq"])].add(got.headers["webhook-id"])
    assert all(len(ids) == 1 for ids in ids_by_event.values()), {k: v for k, v in ids_by_event.items() if len(v) > 1}
    for task_id in pages:
        kinds = {kind for (tid, kind, _) in ids_by_event if tid == task_id}
        assert {"task.started", "task.page", "task.completed"} <= kinds
        assert not {"task.failed", "task.cancelled"} & kinds
        assert len({seq for (tid, kind, seq) in ids_by_event if tid == task_id and kind == "task.page"}) >= LIMIT
