"""Rate limiting's pure parts: the token bucket and its memory bound, layering, the `RateLimit` headers, which
subject a client address is, the policies of a tenant, and the UTC day of the pages quota."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from starlette.types import Scope

from producer.middleware import client_address, rate_policies
from producer.submit import seconds_to_next_day
from shared.ratelimit import (
    LayeredLimiter,
    RateDecision,
    RatePolicy,
    TokenBucketLimiter,
    client_subject,
    rate_limit_headers,
)
from shared.settings import Settings
from shared.stores.accounts import Tenant, TenantLimits
from shared.stores.quotas import Quotas, day_start

POLICY = RatePolicy("key", rate_per_s=2, burst=3)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refuses_until_a_token_refills() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(clock=clock)
    assert [limiter.take_now("a", POLICY).remaining for _ in range(3)] == [2, 1, 0]
    refused = limiter.take_now("a", POLICY)
    assert not refused.allowed and refused.retry_after_s == 1
    clock.now += 0.5  # one token at 2 per second
    assert limiter.take_now("a", POLICY).allowed
    assert not limiter.take_now("a", POLICY).allowed
    assert limiter.take_now("b", POLICY).allowed  # another subject has its own bucket


def test_a_slow_refill_asks_for_a_longer_wait() -> None:
    limiter = TokenBucketLimiter(clock=FakeClock())
    slow = RatePolicy("tenant", rate_per_s=0.1, burst=1)
    limiter.take_now("a", slow)
    assert limiter.take_now("a", slow).retry_after_s == 10


def test_a_changed_policy_applies_to_an_existing_bucket() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(clock=clock)
    for _ in range(3):
        limiter.take_now("a", POLICY)
    bigger = RatePolicy("key", rate_per_s=100, burst=100)
    clock.now += 1
    assert limiter.take_now("a", bigger).remaining == 99  # refilled at the new rate, up to the new burst


def test_the_buckets_stay_bounded_and_a_flood_of_new_subjects_does_not_free_a_busy_one() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(clock=clock, max_buckets=100)
    for _ in range(3):
        limiter.take_now("abuser", POLICY)
    for n in range(10_000):
        limiter.take_now(f"fresh-{n}", POLICY)
        if n % 50 == 0:
            assert not limiter.take_now("abuser", POLICY).allowed  # still used, so never the one forgotten
    assert len(limiter) == 100


async def test_a_layered_limiter_refuses_when_any_layer_does_and_reports_the_first_layers_count() -> None:
    clock = FakeClock()
    first, second = TokenBucketLimiter(clock=clock), TokenBucketLimiter(clock=clock)
    layered = LayeredLimiter(first, second)
    second.take_now("a", RatePolicy("key", 1, 1))
    assert not (await layered.take("a", RatePolicy("key", 1, 1))).allowed
    allowed = await layered.take("b", POLICY)
    assert allowed.allowed and allowed.remaining == 2


def test_ratelimit_headers_list_every_policy_and_what_is_left() -> None:
    decisions = [
        RateDecision(RatePolicy("ip", 20, 100), allowed=True, remaining=99, reset_s=1),
        RateDecision(RatePolicy("key", 10, 50), allowed=True, remaining=None, reset_s=0),
        RateDecision(RatePolicy("tenant", 20, 100), allowed=False, remaining=0, reset_s=3),
    ]
    assert rate_limit_headers(decisions) == {
        "RateLimit-Policy": '"ip";q=100;w=5, "key";q=50;w=5, "tenant";q=100;w=5',
        "RateLimit": '"ip";r=99;t=1, "tenant";r=0;t=3',
    }
    assert rate_limit_headers([]) == {}


@pytest.mark.parametrize(
    ("address", "subject"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same subscriber's /64
        ("[2001:db8::1]", "2001:db8::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("testclient", "testclient"),
        ("x" * 100, "x" * 64),
    ],
)
def test_client_subject(address: str, subject: str) -> None:
    assert client_subject(address) == subject


def scope(headers: dict[str, str], client: tuple[str, int] | None = ("198.51.100.1", 5000)) -> Scope:
    return {"type": "http", "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()], "client": client}


@pytest.mark.parametrize(
    ("headers", "header", "client", "address"),
    [
        pytest.param({"X-Forwarded-For": "1.1.1.1"}, "", ("198.51.100.1", 5000), "198.51.100.1", id="not-trusted"),
        pytest.param({"X-Forwarded-For": "6.6.6.6, 1.1.1.1"}, "x-forwarded-for", None, "1.1.1.1", id="last-entry"),
        pytest.param({}, "X-Forwarded-For", ("198.51.100.1", 5000), "198.51.100.1", id="header-absent"),
        pytest.param({"CF-Connecting-IP": "2001:db8::1"}, "CF-Connecting-IP", None, "2001:db8::1", id="worker"),
        pytest.param({}, "", None, None, id="unknown"),
    ],
)
def test_client_address(
    headers: dict[str, str], header: str, client: tuple[str, int] | None, address: str | None
) -> None:
    assert client_address(scope(headers, client), header) == address


def tenant(**limits: object) -> Tenant:
    return Tenant(tenant_id="tn_x", name="x", knowledge_bases=["kb"], webhook_secrets=[], limits=TenantLimits(**limits))


def test_a_tenant_without_limits_gets_the_service_defaults() -> None:
    settings = Settings(
        rate_limit_per_s=10, rate_limit_burst=50, tenant_rate_limit_per_s=20, tenant_rate_limit_burst=80
    )
    assert rate_policies(settings, tenant()) == (RatePolicy("key", 10, 50), RatePolicy("tenant", 20, 80))
    defaults = Quotas(settings.max_concurrent_tasks, settings.max_pages_per_day, settings.quota_settle_s)
    assert Quotas.of(tenant(), settings) == defaults


def test_a_tenants_own_rate_applies_to_each_key_and_to_the_tenant() -> None:
    assert rate_policies(Settings(), tenant(rate_limit_per_s=100)) == (
        RatePolicy("key", 100, 500),
        RatePolicy("tenant", 100, 500),
    )
    assert rate_policies(Settings(), tenant(rate_limit_per_s=1, rate_limit_burst=2))[1] == RatePolicy("tenant", 1, 2)
    own = Quotas.of(tenant(max_concurrent_tasks=3, max_pages_per_day=0), Settings(quota_settle_s=1))
    assert own == Quotas(max_concurrent_tasks=3, max_pages_per_day=0, settle_s=1)  # 0: no quota, not the default


@pytest.mark.parametrize(
    ("now", "start", "seconds"),
    [
        (datetime(2026, 5, 1, 0, 0, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC), 86_400),
        (datetime(2026, 5, 1, 23, 59, 59, 500_000, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC), 1),
        (datetime(2026, 5, 1, 12, 0, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC), 43_200),
        # a clock in another zone: still the UTC day (01:30 at +02:00 is 23:30 UTC the day before)
        (datetime(2026, 5, 2, 1, 30, tzinfo=timezone(timedelta(hours=2))), datetime(2026, 5, 1, tzinfo=UTC), 1_800),
    ],
)
def test_the_pages_quota_day_is_the_utc_day(now: datetime, start: datetime, seconds: int) -> None:
    assert day_start(now) == start
    assert seconds_to_next_day(now) == seconds
