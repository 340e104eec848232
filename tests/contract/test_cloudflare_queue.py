"""What only the Cloudflare producer binding shows: delivery to a consumer Worker in real time (Miniflare)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from shared.ports import JsonObject
from tests.cloudflare.client import Harness, RemoteQueue


@pytest.fixture
async def queue(cloudflare_harness: Harness) -> AsyncIterator[RemoteQueue]:
    await cloudflare_harness.call("reset")
    yield RemoteQueue(cloudflare_harness)


async def deliveries(queue: RemoteQueue, count: int, timeout_s: float = 10.0) -> list[JsonObject]:
    deadline = time.monotonic() + timeout_s
    while len(records := await queue.received()) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return records


async def test_delayed_send_arrives_no_earlier_than_its_delay(queue: RemoteQueue) -> None:
    sent_at = time.time()
    await queue.send({"n": "delayed"}, delay_s=2)
    await queue.send({"n": "now"})
    records = {record["body"]["n"]: record for record in await deliveries(queue, 2)}
    after_s = {n: record["received_at_ms"] / 1000 - sent_at for n, record in records.items()}
    assert after_s["now"] < 1.5  # so the delay below is the binding's doing, not a slow queue
    assert 2.0 <= after_s["delayed"] < 6.0
    assert {(r["queue"], r["attempts"]) for r in records.values()} == {("scrapeq-jobs", 1)}
