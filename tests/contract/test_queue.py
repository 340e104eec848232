"""The queue contract's receiving side (Cloudflare Queues semantics plus leases), run against every local backend.

Sending is in `test_queue_producer.py`, which Cloudflare's producer binding runs too.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from shared.backends.base import Backends, QueueStats
from shared.backends.kvlimits import MAX_DELAY_S
from shared.backends.memory import MemoryQueue
from shared.backends.sqlite.store import SqliteQueue
from shared.ports import Message
from tests.contract.conftest import LOCAL_BACKENDS, MAX_RETRIES, VISIBILITY_TIMEOUT_S

if TYPE_CHECKING:
    from tests.contract.conftest import FakeClock

Queue = SqliteQueue | MemoryQueue

# Receiving, acking, retrying and leases belong to local queues: Cloudflare pushes batches to the consumer Worker
# instead (that side is `dispatch_batch`, tested in test_cloudflare_batch.py).
pytestmark = pytest.mark.parametrize("backends", LOCAL_BACKENDS, indirect=True)


@pytest.fixture
def queue(backends: Backends) -> Queue:
    return backends.jobs


@pytest.fixture
def dlq(backends: Backends) -> Queue:
    return backends.dead_letters


async def receive_one(queue: Queue) -> Message:
    [message] = await queue.receive(max_messages=10)
    return message


async def test_sent_message_is_received_with_body_and_first_attempt(queue: Queue) -> None:
    await queue.send({"task": "t1", "n": 1, "nested": {"ü": [1, None]}})
    [message] = await queue.receive(max_messages=10)
    assert message.body == {"task": "t1", "n": 1, "nested": {"ü": [1, None]}}
    assert message.attempts == 1
    assert message.id and message.lease


async def test_acked_message_is_gone_for_good(queue: Queue, clock: FakeClock) -> None:
    await queue.send({"n": 1})
    await queue.ack(await receive_one(queue))
    clock.advance(VISIBILITY_TIMEOUT_S * 10)
    assert await queue.receive(max_messages=10) == []
    assert await queue.size() == 0


async def test_received_message_is_invisible_to_other_receivers_during_its_lease(
    queue: Queue, clock: FakeClock
) -> None:
    await queue.send({"n": 1})
    await receive_one(queue)
    clock.advance(VISIBILITY_TIMEOUT_S - 1)
    assert await queue.receive(max_messages=10) == []


async def test_receive_returns_at_most_max_messages_oldest_first(queue: Queue, clock: FakeClock) -> None:
    for n in range(5):
        await queue.send({"n": n})
        clock.advance(0.001)
    first = await queue.receive(max_messages=3)
    second = await queue.receive(max_messages=3)
    assert [m.body["n"] for m in first] == [0, 1, 2]
    assert [m.body["n"] for m in second] == [3, 4]
    assert len({m.id for m in first + second}) == 5


async def test_delayed_send_is_invisible_until_the_delay_passes(queue: Queue, clock: FakeClock) -> None:
    await queue.send({"n": 1}, delay_s=120)
    clock.advance(119)
    assert await queue.receive(max_messages=10) == []
    clock.advance(1)
    assert (await receive_one(queue)).body == {"n": 1}


async def test_retry_with_delay_redelivers_after_the_delay_with_next_attempt(queue: Queue, clock: FakeClock) -> None:
    await queue.send({"n": 1})
    first = await receive_one(queue)
    await queue.retry(first, delay_s=50)
    clock.advance(49)
    assert await queue.receive(max_messages=10) == []
    clock.advance(1)
    second = await receive_one(queue)
    assert (second.id, second.body, second.attempts) == (first.id, first.body, 2)
    assert second.lease != first.lease


async def test_retry_without_delay_is_visible_at_once(queue: Queue) -> None:
    await queue.send({"n": 1})
    await queue.retry(await receive_one(queue))
    assert (await receive_one(queue)).attempts == 2


async def test_attempts_count_every_delivery(queue: Queue, clock: FakeClock) -> None:
    await queue.send({"n": 1})
    seen = []
    for _ in range(3):
        message = await receive_one(queue)
        seen.append(message.attempts)
        clock.advance(VISIBILITY_TIMEOUT_S)  # lease lapses: the consumer "died"
    assert seen == [1, 2, 3]


async def test_lease_expiry_redelivers_a_message_whose_consumer_died(queue: Queue, clock: FakeClock) -> None:
    await queue.send({"n": 1})
    held = await receive_one(queue)
    clock.advance(VISIBILITY_TIMEOUT_S)
    again = await receive_one(queue)
    assert (again.id, again.attempts) == (held.id, 2)


async def test_stale_ack_after_redelivery_is_a_noop_and_keeps_the_new_delivery(queue: Queue, clock: FakeClock) -> None:
    await queue.send({"n": 1})
    stale = await receive_one(queue)
    clock.advance(VISIBILITY_TIMEOUT_S)
    current = await receive_one(queue)
    await queue.ack(stale)  # no error
    await queue.retry(stale)  # no error, and must not release the current lease
    assert await queue.receive(max_messages=10) == []
    clock.advance(VISIBILITY_TIMEOUT_S)
    assert (await receive_one(queue)).id == current.id


async def test_ack_with_the_current_lease_after_redelivery_removes_it(queue: Queue, clock: FakeClock) -> None:
    await queue.send({"n": 1})
    await receive_one(queue)
    clock.advance(VISIBILITY_TIMEOUT_S)
    await queue.ack(await receive_one(queue))
    assert await queue.size() == 0


async def test_second_ack_of_the_same_delivery_is_a_noop(queue: Queue) -> None:
    await queue.send({"n": 1})
    await queue.send({"n": 2})
    [message] = await queue.receive(max_messages=1)
    await queue.ack(message)
    await queue.ack(message)
    assert await queue.size() == 1


async def test_message_lands_in_dead_letter_queue_after_max_retries(queue: Queue, dlq: Queue) -> None:
    await queue.send({"task": "doomed"})
    first = await receive_one(queue)
    await queue.retry(first)
    for _ in range(MAX_RETRIES - 1):
        await queue.retry(await receive_one(queue))
    last = await receive_one(queue)
    assert last.attempts == MAX_RETRIES + 1
    await queue.retry(last)
    assert await queue.receive(max_messages=10) == []
    assert await queue.size() == 0
    dead = await receive_one(dlq)
    assert (dead.id, dead.body, dead.attempts) == (first.id, {"task": "doomed"}, 1)


async def test_lease_expiry_after_the_last_attempt_dead_letters(queue: Queue, dlq: Queue, clock: FakeClock) -> None:
    await queue.send({"task": "crashy"})
    for attempt in range(1, MAX_RETRIES + 2):
        assert (await receive_one(queue)).attempts == attempt
        clock.advance(VISIBILITY_TIMEOUT_S)
    assert await queue.receive(max_messages=10) == []
    dead = await receive_one(dlq)
    assert (dead.body, dead.attempts) == ({"task": "crashy"}, 1)


async def test_stale_retry_cannot_dead_letter_a_redelivered_message(queue: Queue, dlq: Queue, clock: FakeClock) -> None:
    await queue.send({"n": 1})
    for _ in range(MAX_RETRIES):
        await receive_one(queue)
        clock.advance(VISIBILITY_TIMEOUT_S)
    stale = await receive_one(queue)  # last allowed attempt
    await queue.retry(Message(stale.id, stale.body, stale.attempts, lease="forged"))
    assert await dlq.size() == 0
    assert (await queue.stats()).leased == 1


async def test_stats_count_visible_leased_and_delayed(queue: Queue) -> None:
    for n in range(3):
        await queue.send({"n": n})
    await queue.send({"n": 3}, delay_s=60)
    await queue.receive(max_messages=1)
    assert await queue.stats() == QueueStats(visible=2, leased=1, delayed=1)
    assert await queue.size() == 4


@pytest.mark.parametrize("delay_s", [-1, MAX_DELAY_S + 1, float("nan")])
async def test_retry_delay_outside_0_to_12_hours_is_rejected(queue: Queue, delay_s: float) -> None:
    await queue.send({"n": 1})
    with pytest.raises(ValueError):
        await queue.retry(await receive_one(queue), delay_s=delay_s)


async def test_received_body_is_a_copy(queue: Queue, clock: FakeClock) -> None:
    await queue.send({"items": [1]})
    first = await receive_one(queue)
    first.body["items"].append(2)
    clock.advance(VISIBILITY_TIMEOUT_S)
    assert (await receive_one(queue)).body == {"items": [1]}


async def test_waiting_receive_returns_promptly_when_another_task_sends(queue: Queue) -> None:
    async def send_soon() -> None:
        await asyncio.sleep(0.2)
        await queue.send({"n": 1})

    sender = asyncio.create_task(send_soon())
    started = time.monotonic()
    messages = await queue.receive(max_messages=10, wait_s=10)
    elapsed = time.monotonic() - started
    await sender
    assert [m.body for m in messages] == [{"n": 1}]
    assert 0.15 < elapsed < 1.0


async def test_waiting_receive_gives_up_after_wait_s(queue: Queue) -> None:
    started = time.monotonic()
    assert await queue.receive(max_messages=10, wait_s=0.3) == []
    assert 0.3 <= time.monotonic() - started < 1.5


async def test_dead_letter_wakes_a_receiver_waiting_on_the_dead_letter_queue(queue: Queue, dlq: Queue) -> None:
    waiting = asyncio.create_task(dlq.receive(max_messages=10, wait_s=10))
    await queue.send({"n": 1})
    for _ in range(MAX_RETRIES + 1):
        await queue.retry(await receive_one(queue))
    started = time.monotonic()
    [dead] = await asyncio.wait_for(waiting, 2)
    assert dead.body == {"n": 1}
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("max_messages", [0, -1, 101])
async def test_max_messages_outside_1_to_100_is_rejected(queue: Queue, max_messages: int) -> None:
    with pytest.raises(ValueError):
        await queue.receive(max_messages=max_messages)
