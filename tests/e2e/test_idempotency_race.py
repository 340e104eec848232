"""Racing duplicates of one `POST /scrape` (same Idempotency-Key, same body) make exactly one task, whether they
hit one `scrapeq serve` or two on the same data dir."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import GENEROUS_LIMITS, Cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def race(bases: list[str], n: int, headers: dict[str, str], body: dict[str, object]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        # Every request is connected and waiting before any is sent: a barrier, then all at once.
        go = asyncio.Event()

        async def one(i: int) -> httpx.Response:
            await go.wait()
            return await client.post(f"{bases[i % len(bases)]}/scrape", json=body, headers=headers)

        pending = [asyncio.ensure_future(one(i)) for i in range(n)]
        await asyncio.sleep(0.05)
        go.set()
        return list(await asyncio.gather(*pending))


def tasks_of(base: str, headers: dict[str, str]) -> list[dict[str, object]]:
    listed = httpx.get(f"{base}/tasks", params={"limit": 100}, headers=headers, timeout=10).json()
    tasks: list[dict[str, object]] = listed["tasks"]
    return tasks


@pytest.mark.parametrize("servers", [1, 2])
@pytest.mark.parametrize("n", [8, 32])
def test_racing_duplicates_make_exactly_one_task(tmp_path: Path, servers: int, n: int) -> None:
    cli = Cli(tmp_path / "data", **GENEROUS_LIMITS)
    try:
        run_race(cli, tmp_path, servers, n)
    finally:
        cli.stop_all()


def run_race(cli: Cli, tmp_path: Path, servers: int, n: int) -> None:
    headers = {"Authorization": f"Bearer {cli.new_key('race', 'kb_race')}"}
    bases = [cli.start_http("serve", tmp_path / f"serve-{i}.log") for i in range(servers)]
    body = {"url": "http://127.0.0.1:9/", "knowledge_base_id": "kb_race", "limit": 3}
    for round_ in range(3):
        answers = asyncio.run(race(bases, n, {**headers, "Idempotency-Key": f"race-{round_}"}, body))
        statuses = Counter(answer.status_code for answer in answers)
        assert statuses[202] == 1, statuses
        assert set(statuses) <= {202, 200, 409}, statuses
        task_ids = {answer.json()["task_id"] for answer in answers if answer.status_code in (200, 202)}
        assert len(task_ids) == 1, task_ids
        for answer in answers:
            if answer.status_code == 409:
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert answer.json()["code"] == "idempotency_key_in_use" and "retry-after" in answer.headers
    assert len(tasks_of(bases[0], headers)) == 3
