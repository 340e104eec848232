"""`Retry-After` parsing and the pause a 429/503 imposes on its host and page (pure), and the host gate."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from consumer.crawl.hostgate import HostGate, host_key
from consumer.crawl.politeness import Pause, pause_for
from shared.retry import retry_after_s

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Sun, 01 Jun 2025 12:00:30 GMT", 30.0),
        ("Sunday, 01-Jun-25 12:01:00 GMT", 60.0),  # RFC 850, obsolete but allowed
        ("Sun Jun  1 12:00:10 2025", 10.0),  # asctime, no zone: UTC
        ("Sun, 01 Jun 2025 11:00:00 GMT", 0.0),  # in the past
        ("-5", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Sun, 99 Foo 2025 12:00:00 GMT", None),
    ],
)
def test_retry_after_values(value: str | None, seconds: float | None) -> None:
    assert retry_after_s(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("status", "retry_after", "attempt", "pause"),
    [
        (200, "5", 1, None),
        (500, "5", 1, None),
        (404, None, 1, None),
        (429, "3", 1, Pause(host_s=3.0, retry=True)),
        (503, "3", 2, Pause(host_s=3.0, retry=True)),
        (429, "3", 3, Pause(host_s=3.0, retry=False)),  # retries (2) used up: the host still pauses
        (429, None, 1, Pause(host_s=1.0, retry=True)),  # no Retry-After: 1 s, 2 s, 4 s ...
        (429, None, 2, Pause(host_s=2.0, retry=True)),
        (503, "garbage", 2, Pause(host_s=2.0, retry=True)),
        (429, "3600", 1, Pause(host_s=10.0, retry=False)),  # longer than the cap: pause capped, no retry
        (429, "10", 1, Pause(host_s=10.0, retry=True)),
        (429, "Sun, 01 Jun 2025 12:00:04 GMT", 1, Pause(host_s=4.0, retry=True)),
    ],
)
def test_pause_for(status: int, retry_after: str | None, attempt: int, pause: Pause | None) -> None:
    assert pause_for(status, retry_after, attempt=attempt, retries=2, max_s=10.0, now=NOW) == pause


def test_http_dates_are_read_against_now() -> None:
    later = format_datetime(datetime.fromtimestamp(NOW + 42, UTC), usegmt=True)
    assert retry_after_s(later, now=NOW) == 42.0


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://a.test/x", "a.test:80"),
        ("http://A.TEST:80/", "a.test:80"),
        ("https://a.test/", "a.test:443"),
        ("http://a.test:8080/", "a.test:8080"),
        ("http://[::1]:81/", "::1:81"),
    ],
)
def test_hosts_are_name_and_port(url: str, key: str) -> None:
    assert host_key(url) == key


async def test_the_gate_bounds_concurrency_per_host_not_across_hosts() -> None:
    gate = HostGate(max_concurrency=2)
    running = {"a.test": 0, "b.test": 0}
    peak = {"a.test": 0, "b.test": 0}

    async def visit(host: str) -> None:
        async with gate.slot(f"http://{host}/"):
            running[host] += 1
            peak[host] = max(peak[host], running[host])
            await asyncio.sleep(0.02)
            running[host] -= 1

    await asyncio.gather(*(visit(host) for host in ["a.test", "b.test"] * 6))
    assert peak == {"a.test": 2, "b.test": 2}


async def test_starts_are_spaced_by_the_hosts_delay_raised_by_crawl_delay_and_capped() -> None:
    gate = HostGate(max_concurrency=4, min_delay_s=0.05, max_delay_s=0.15)
    gate.crawl_delay("http://slow.test/", 60)  # capped at 0.15
    gate.crawl_delay("http://fast.test/", None)  # stays at the floor
    assert (gate.delay_of("http://slow.test/a"), gate.delay_of("http://fast.test/")) == (0.15, 0.05)
    starts: list[float] = []

    async def visit() -> None:
        async with gate.slot("http://slow.test/page"):
            starts.append(time.monotonic())

    await asyncio.gather(*(visit() for _ in range(4)))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.14 for gap in gaps), gaps


async def test_a_pause_holds_back_every_request_to_the_host() -> None:
    gate = HostGate(max_concurrency=4, max_delay_s=5.0)
    gate.pause("http://busy.test/a", 0.2)
    gate.pause("http://busy.test/b", 0.05)  # a shorter pause never shortens a longer one
    began = time.monotonic()
    async with gate.slot("http://busy.test/c"):
        waited = time.monotonic() - began
    async with gate.slot("http://other.test/"):
        pass
    assert 0.19 <= waited < 1.0
    assert time.monotonic() - began - waited < 0.1  # another host is not held back


async def test_idle_hosts_are_forgotten_beyond_the_bound() -> None:
    gate = HostGate(max_concurrency=1, max_hosts=10)
    for n in range(50):
        async with gate.slot(f"http://h{n}.test/"):
            pass
    assert len(gate._hosts) <= 10
