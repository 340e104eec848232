"""The queue contract's sending side (`JobQueue.send`), run against every backend: the local queues, and
Cloudflare's queue producer binding, whose deliveries a JS consumer inside Miniflare records."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import pytest

from shared.backends.base import Backends
from shared.backends.kvlimits import MAX_BODY_BYTES, MAX_DELAY_S
from shared.ports import JobQueue, JsonObject, LocalQueue
from tests.cloudflare.client import RemoteQueue

DELIVERY_TIMEOUT_S = 10.0


@pytest.fixture
def queue(backends: Backends) -> JobQueue:
    return backends.jobs


async def delivered(queue: JobQueue, count: int) -> list[JsonObject]:
    """The bodies delivered so far, waiting until there are `count` (Cloudflare pushes them a moment later)."""
    if isinstance(queue, RemoteQueue):
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while len(records := await queue.received()) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return [record["body"] for record in records]
    local = cast(LocalQueue, queue)  # the local queues also receive
    return [message.body for message in await local.receive(max_messages=100)]


async def test_sent_body_is_delivered_unchanged(queue: JobQueue) -> None:
    body = {"task": "t1", "n": 1, "nested": {"ü": [1, None, {"deep": None}]}, "none": None, "flag": False}
    await queue.send(body)
    assert await delivered(queue, 1) == [body]


async def test_message_over_128000_bytes_is_rejected(queue: JobQueue) -> None:
    overhead = len('{"x":""}')
    with pytest.raises(ValueError):
        await queue.send({"x": "a" * (MAX_BODY_BYTES - overhead + 1)})
    with pytest.raises(ValueError):
        await queue.send({"x": "é" * (MAX_BODY_BYTES // 2)})  # 2 bytes each in UTF-8
    largest = {"x": "a" * (MAX_BODY_BYTES - overhead)}
    await queue.send(largest)
    assert await delivered(queue, 1) == [largest]


@pytest.mark.parametrize("body", [{"x": {1, 2}}, {"x": float("inf")}, {"x": b"bytes"}], ids=["set", "inf", "bytes"])
async def test_body_that_is_not_json_is_rejected(queue: JobQueue, body: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        await queue.send(body)


@pytest.mark.parametrize("delay_s", [-1, MAX_DELAY_S + 1, float("nan")])
async def test_send_delay_outside_0_to_12_hours_is_rejected(queue: JobQueue, delay_s: float) -> None:
    with pytest.raises(ValueError):
        await queue.send({"n": 1}, delay_s=delay_s)
    await queue.send({"n": 2})
    assert await delivered(queue, 1) == [{"n": 2}]
