"""`Backends.reservations`: first writer wins on a key, on every backend; exact under racing writers on SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.backends.base import Backends
from shared.backends.sqlite.store import SqliteKV
from tests.contract.conftest import FakeClock

KEY = "tenant:tn_r:idem:order-1"


async def test_the_first_reservation_wins_and_the_others_see_it(backends: Backends) -> None:
    reservations = backends.reservations
    assert await reservations.reserve(KEY, "first", ttl_s=3600) is None
    assert await reservations.reserve(KEY, "second", ttl_s=3600) == "first"
    assert await backends.kv.get(KEY) == "first"


async def test_replace_and_release_only_act_on_the_expected_value(backends: Backends) -> None:
    reservations = backends.reservations
    await reservations.reserve(KEY, "first", ttl_s=3600)
    assert await reservations.replace(KEY, "not it", "second", ttl_s=3600) is False
    assert await reservations.replace(KEY, "first", "second", ttl_s=3600) is True
    await reservations.release(KEY, "first")
    assert await backends.kv.get(KEY) == "second"
    await reservations.release(KEY, "second")
    assert await backends.kv.get(KEY) is None
    assert await reservations.reserve(KEY, "third", ttl_s=3600) is None


async def test_racing_reservations_have_one_winner(backends: Backends) -> None:
    outcomes = await asyncio.gather(*(backends.reservations.reserve(KEY, f"v{i}", ttl_s=3600) for i in range(32)))
    winners = [f"v{i}" for i, held in enumerate(outcomes) if held is None]
    assert len(winners) == 1
    assert {held for held in outcomes if held is not None} == set(winners)


@pytest.mark.needs_clock
async def test_an_expired_reservation_is_taken_anew(backends: Backends, clock: FakeClock) -> None:
    await backends.reservations.reserve(KEY, "first", ttl_s=60)
    clock.advance(61)
    assert await backends.reservations.reserve(KEY, "second", ttl_s=60) is None
    assert await backends.kv.get(KEY) == "second"


async def test_sqlite_reservations_are_exact_across_connections(tmp_path: Path) -> None:
    """Eight clients of one file (each its own connections and writer thread, as separate processes have)."""
    path = tmp_path / "scrapeq.sqlite3"
    clients = [SqliteKV(path) for _ in range(8)]
    try:
        await clients[0].ping()
        for round_ in range(5):
            key = f"{KEY}-{round_}"
            outcomes = await asyncio.gather(*(clients[i % 8].reserve(key, f"v{i}", ttl_s=3600) for i in range(64)))
            assert sum(held is None for held in outcomes) == 1
            assert len({held for held in outcomes if held is not None}) == 1
    finally:
        for client in clients:
            await client.aclose()
