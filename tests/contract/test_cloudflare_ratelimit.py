"""The Rate Limiting binding's adapter in Pyodide over Miniflare's binding (3 requests per fixed minute per key):
it passes the subject as the key, reads `{success}` from the JS answer, and asks for a retry after the window."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.cloudflare.client import Harness

LIMIT = 3  # harness.mjs: ratelimits.RATE_LIMIT.simple.limit


@pytest.fixture
async def harness(cloudflare_harness: Harness) -> AsyncIterator[Harness]:
    await cloudflare_harness.call("reset")
    yield cloudflare_harness


async def take(harness: Harness, subject: str) -> dict[str, Any]:
    result: dict[str, Any] = await harness.call("ratelimit.take", {"subject": subject})
    return result


async def test_the_binding_allows_its_limit_per_subject_then_refuses_until_the_next_window(harness: Harness) -> None:
    subject, other = f"s-{uuid.uuid4().hex}", f"s-{uuid.uuid4().hex}"  # its counts outlive a test
    answers = [await take(harness, subject) for _ in range(2 * LIMIT + 1)]
    allowed = [answer["allowed"] for answer in answers]
    # Fixed one-minute windows: a window may turn during the calls and grant up to LIMIT more, never fewer.
    assert allowed.index(False) in range(LIMIT, 2 * LIMIT + 1)
    refused = answers[allowed.index(False)]
    assert refused == {"allowed": False, "remaining": 0, "reset_s": 60}
    assert answers[0] == {"allowed": True, "remaining": None, "reset_s": 0}
    assert (await take(harness, other))["allowed"]
