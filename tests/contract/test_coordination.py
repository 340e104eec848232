"""The coordination port, one suite on every implementation: memory, the SQLite file, and the Durable Object code
(`shared/backends/durable.py` in Pyodide, through the stub's RPC to an object over a stand-in of its storage)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from shared.backends.base import Backends
from shared.coordination import FIRST_CONTACT_DELAY_S, SLOT_POLL_S, Coordinator, HostTurn, QuotaLimits
from shared.stores.quotas import CONCURRENT_TASKS, PAGES_PER_DAY
from tests.contract.conftest import FakeClock, WallClock

HOST = "site.test:443"
NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
NO_LIMITS = QuotaLimits(max_concurrent_tasks=0, max_pages_per_day=0)


@pytest.fixture
def port(backends: Backends) -> Coordinator:
    assert backends.coordination is not None
    return backends.coordination


async def elapse(clock: FakeClock, seconds: float) -> None:
    """Let `seconds` pass: the fake clock's, or real time on a backend that keeps it (Cloudflare)."""
    if isinstance(clock, WallClock):
        await asyncio.sleep(seconds)
    else:
        clock.advance(seconds)


async def take(
    port: Coordinator, holder: str, *, limit: int = 2, delay_s: float = 0.0, lease_s: float = 60.0
) -> HostTurn:
    return await port.acquire_host(HOST, holder, max_concurrency=limit, delay_s=delay_s, lease_s=lease_s)


async def test_a_host_grants_at_most_its_concurrency_until_a_slot_is_released(port: Coordinator) -> None:
    assert (await take(port, "a")).granted
    assert (await take(port, "b")).granted
    full = await take(port, "c")
    assert not full.granted and 0 < full.wait_s <= SLOT_POLL_S
    await port.release_host(HOST, "a")
    assert (await take(port, "c")).granted
    assert (await port.acquire_host("other.test:443", "d", max_concurrency=1, delay_s=0, lease_s=60)).granted


async def test_starts_are_spaced_by_the_delay(port: Coordinator, clock: FakeClock) -> None:
    assert (await take(port, "a", delay_s=0.6)).granted
    await port.release_host(HOST, "a")
    early = await take(port, "b", delay_s=0.6)
    assert not early.granted and 0.3 < early.wait_s <= 0.6
    await elapse(clock, early.wait_s + 0.05)
    assert (await take(port, "b", delay_s=0.6)).granted


async def test_a_delay_one_sharer_learned_spaces_every_sharer(port: Coordinator, clock: FakeClock) -> None:
    assert (await take(port, "a", delay_s=None)).granted  # nobody has read robots.txt yet: first contact
    await port.release_host(HOST, "a")
    early = await take(port, "b", delay_s=None)
    assert not early.granted and 0.5 < early.wait_s <= FIRST_CONTACT_DELAY_S
    await elapse(clock, early.wait_s + 0.05)
    assert (await take(port, "b", delay_s=0.4)).granted  # b read it: Crawl-delay 0.4
    await port.release_host(HOST, "b")
    other = await take(port, "c", delay_s=None)  # c has not: b's delay applies to it too
    assert not other.granted and 0.2 < other.wait_s <= 0.4 + 1e-6


async def test_a_pause_keeps_every_start_off_the_host(port: Coordinator, clock: FakeClock) -> None:
    assert (await take(port, "a")).granted
    await port.release_host(HOST, "a", pause_s=0.6)  # the answer was a 429
    paused = await take(port, "b")
    assert not paused.granted and 0.3 < paused.wait_s <= 0.6
    await port.release_host(HOST, None, pause_s=0.0)  # a release without a slot changes nothing
    await elapse(clock, paused.wait_s + 0.05)
    assert (await take(port, "b")).granted


async def test_a_slot_not_released_is_free_again_after_its_lease(port: Coordinator, clock: FakeClock) -> None:
    assert (await take(port, "dead", limit=1, lease_s=0.5)).granted
    assert not (await take(port, "b", limit=1)).granted
    await elapse(clock, 0.6)
    assert (await take(port, "b", limit=1)).granted


async def test_asking_again_for_a_held_slot_is_granted_and_release_is_idempotent(port: Coordinator) -> None:
    assert (await take(port, "a", limit=1)).granted
    assert (await take(port, "a", limit=1)).granted  # the first answer was lost on the way back
    await port.release_host(HOST, "a")
    await port.release_host(HOST, "a")
    assert (await take(port, "b", limit=1)).granted


async def test_quota_places_and_pages_per_day(port: Coordinator) -> None:
    limits = QuotaLimits(max_concurrent_tasks=2, max_pages_per_day=100)
    assert await port.reserve_quota("tn_q", "t1", pages=40, limits=limits, now=NOW) is None
    assert await port.reserve_quota("tn_q", "t2", pages=40, limits=limits, now=NOW) is None
    refusal = await port.reserve_quota("tn_q", "t3", pages=10, limits=limits, now=NOW)
    assert refusal is not None and (refusal.quota, refusal.used) == (CONCURRENT_TASKS, 2)
    assert refusal.holders == ("t1", "t2")  # oldest first, for the caller to free those that ended
    await port.release_quota("tn_q", "t1")
    await port.release_quota("tn_q", "t1")  # idempotent: one place freed, not two
    over = await port.reserve_quota("tn_q", "t3", pages=30, limits=limits, now=NOW)
    assert over is not None and (over.quota, over.used) == (PAGES_PER_DAY, 80)
    assert await port.reserve_quota("tn_q", "t3", pages=20, limits=limits, now=NOW) is None
    full = await port.reserve_quota("tn_q", "t4", pages=0, limits=limits, now=NOW)
    assert full is not None and full.quota == CONCURRENT_TASKS
    tomorrow = datetime(2027, 3, 2, 0, 0, 1, tzinfo=UTC)
    await port.release_quota("tn_q", "t2")
    assert await port.reserve_quota("tn_q", "t5", pages=100, limits=limits, now=tomorrow) is None
    assert await port.reserve_quota("tn_other", "t1", pages=100, limits=limits, now=NOW) is None  # its own


async def test_100_racing_reservations_for_25_places_make_exactly_25(port: Coordinator) -> None:
    limits = QuotaLimits(max_concurrent_tasks=25, max_pages_per_day=0)
    outcomes = await asyncio.gather(
        *(port.reserve_quota("tn_race", f"t{i:03d}", pages=1, limits=limits, now=NOW) for i in range(100))
    )
    assert sum(refusal is None for refusal in outcomes) == 25
    assert {refusal.quota for refusal in outcomes if refusal is not None} == {CONCURRENT_TASKS}


async def test_swap_key_is_compare_and_set(port: Coordinator) -> None:
    key = "tenant:tn_k:idem:order-7"
    assert (await port.swap_key(key, expected=None, value="first", ttl_s=3600)).done
    lost = await port.swap_key(key, expected=None, value="second", ttl_s=3600)
    assert not lost.done and lost.held == "first"
    assert not (await port.swap_key(key, expected="nope", value="x", ttl_s=3600)).done
    assert (await port.swap_key(key, expected="first", value="second", ttl_s=3600)).done
    assert (await port.swap_key(key, expected="second", value=None, ttl_s=0)).done
    assert (await port.swap_key(key, expected=None, value="third", ttl_s=3600)).done


async def test_32_racing_swaps_have_one_winner(port: Coordinator) -> None:
    key = "tenant:tn_k:idem:race"
    swaps = await asyncio.gather(*(port.swap_key(key, expected=None, value=f"v{i}", ttl_s=3600) for i in range(32)))
    winners = [f"v{i}" for i, swap in enumerate(swaps) if swap.done]
    assert len(winners) == 1
    assert {swap.held for swap in swaps if not swap.done} == set(winners)


async def test_an_expired_key_counts_as_absent(port: Coordinator, clock: FakeClock) -> None:
    key = "shared-key"
    assert (await port.swap_key(key, expected=None, value="old", ttl_s=0.4)).done
    await elapse(clock, 0.5)
    swap = await port.swap_key(key, expected=None, value="new", ttl_s=3600)
    assert swap.done and swap.held is None


async def test_a_release_gives_back_the_pages_its_task_did_not_store(port: Coordinator) -> None:
    limits = QuotaLimits(max_concurrent_tasks=0, max_pages_per_day=30)
    assert await port.reserve_quota("tn_fair", "t1", pages=25, limits=limits, now=NOW) is None
    await port.release_quota("tn_fair", "t1", used_pages=5)  # 20 pages failed
    await port.release_quota("tn_fair", "t1", used_pages=0)  # again: nothing more comes back
    assert await port.reserve_quota("tn_fair", "t2", pages=25, limits=limits, now=NOW) is None
    over = await port.reserve_quota("tn_fair", "t3", pages=1, limits=limits, now=NOW)
    assert over is not None and (over.quota, over.used) == (PAGES_PER_DAY, 30)
    await port.release_quota("tn_fair", "t2")  # without a count (an erasure): its reservation stands
    assert await port.reserve_quota("tn_fair", "t3", pages=1, limits=limits, now=NOW) is not None
