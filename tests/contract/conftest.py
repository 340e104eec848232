"""Fixtures for the backend contract suite: every test runs once per backend, on a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.backends import Backends, open_memory_backends, open_sqlite_backends

VISIBILITY_TIMEOUT_S = 30.0
MAX_RETRIES = 2


class FakeClock:
    """Epoch seconds that move only when a test says so; pass the instance itself as a `Clock`."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
async def backends(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Backends]:
    if request.param == "memory":
        opened = open_memory_backends(visibility_timeout_s=VISIBILITY_TIMEOUT_S, max_retries=MAX_RETRIES, clock=clock)
    else:
        opened = open_sqlite_backends(
            tmp_path / "scrapeq.sqlite3",
            visibility_timeout_s=VISIBILITY_TIMEOUT_S,
            max_retries=MAX_RETRIES,
            clock=clock,
        )
    await opened.ping()
    yield opened
    await opened.aclose()
