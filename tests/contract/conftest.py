"""Fixtures for the backend contract suite: every test runs once per backend, the local ones on a fake clock.

The "cloudflare" backend is `CloudflareKV` / `CloudflareQueue` running in Pyodide over Miniflare's KV namespace
and queue producer (tests/cloudflare/harness.mjs, one process per session). It runs on real time and has no
receiving side: tests marked `needs_clock` or `local_only` skip it, with the reason in the report, and the
receiving side's module (test_queue.py) runs on `LOCAL_BACKENDS` only.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.backends.base import Backends
from shared.backends.factory import open_memory_backends, open_sqlite_backends
from tests.cloudflare.client import Harness, missing_requirement, remote_backends

VISIBILITY_TIMEOUT_S = 30.0
MAX_RETRIES = 2
LOCAL_BACKENDS = ["memory", "sqlite"]
BACKENDS = [*LOCAL_BACKENDS, "cloudflare"]


class FakeClock:
    """Epoch seconds that move only when a test says so; pass the instance itself as a `Clock`."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WallClock(FakeClock):
    """The clock of a backend that keeps real time (Cloudflare): reads only."""

    def __init__(self) -> None:
        pass

    @property
    def now(self) -> float:  # type: ignore[override]
        return time.time()

    def advance(self, seconds: float) -> None:
        raise RuntimeError("this backend runs on real time: mark the test `needs_clock`")


def backend_of(node: pytest.Item) -> str | None:
    callspec = getattr(node, "callspec", None)
    return None if callspec is None else callspec.params.get("backends")


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    return WallClock() if backend_of(request.node) == "cloudflare" else FakeClock()


@pytest.fixture(scope="session")
def cloudflare_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    reason = missing_requirement()
    if reason is not None:
        if os.environ.get("CI") == "true":  # `make test` installs node_modules: a CI run must not skip
            pytest.fail(f"the Cloudflare harness cannot start in CI: {reason}")
        pytest.skip(f"Cloudflare adapters not tested: {reason}")
    harness = Harness.start(tmp_path_factory.mktemp("cloudflare") / "harness.log")
    yield harness
    harness.stop()


def skip_on_cloudflare(node: pytest.Item) -> None:
    if node.get_closest_marker("needs_clock") is not None:
        pytest.skip("moves the fake clock; Cloudflare keeps real time and its TTLs are ≥ 60 s")
    marker = node.get_closest_marker("local_only")
    if marker is not None:
        pytest.skip(marker.args[0] if marker.args else "does not apply to Cloudflare")


@pytest.fixture(params=BACKENDS)
async def backends(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Backends]:
    if request.param == "cloudflare":
        skip_on_cloudflare(request.node)
        harness: Harness = request.getfixturevalue("cloudflare_harness")
        await harness.call("reset")  # Miniflare's namespace outlives the test
        opened: Backends = remote_backends(harness)
    elif request.param == "memory":
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
