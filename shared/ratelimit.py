"""Rate limiting: the limiter port, its decisions and their `RateLimit` headers, the in-process token bucket;
standard library only (on Workers the Rate Limiting binding is layered behind it, in Pyodide).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from shared.ports import Clock


@dataclass(frozen=True)
class RatePolicy:
    """`rate_per_s` sustained and `burst` at once; `name` labels it in the `RateLimit` headers."""

    name: str
    rate_per_s: float
    burst: int

    @property
    def window_s(self) -> int:
        """The time an empty bucket takes to fill: the `w` of `RateLimit-Policy`."""
        return max(1, math.ceil(self.burst / self.rate_per_s))


@dataclass(frozen=True)
class RateDecision:
    policy: RatePolicy
    allowed: bool
    #: Requests left now; None when the limiter cannot tell (the Workers binding only says yes or no).
    remaining: int | None
    #: Refused: seconds until a retry can pass. Allowed: seconds until the bucket is full again.
    reset_s: int

    @property
    def retry_after_s(self) -> int:
        return max(1, self.reset_s)


class RateLimiter(Protocol):
    """Counts one request of `subject` under `policy` and says whether it may pass."""

    async def take(self, subject: str, policy: RatePolicy) -> RateDecision: ...


def rate_limit_headers(decisions: Iterable[RateDecision]) -> dict[str, str]:
    """`RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10) for every limit applied."""
    policies, states = [], []
    for d in decisions:
        policies.append(f'"{d.policy.name}";q={d.policy.burst};w={d.policy.window_s}')
        if d.remaining is not None:
            states.append(f'"{d.policy.name}";r={d.remaining};t={d.reset_s}')
        elif not d.allowed:
            states.append(f'"{d.policy.name}";r=0;t={d.retry_after_s}')
    headers = {"RateLimit-Policy": ", ".join(policies)} if policies else {}
    if states:
        headers["RateLimit"] = ", ".join(states)
    return headers


class TokenBucketLimiter:
    """Token buckets in this process, at most `max_buckets` of them (the least recently used are forgotten).

    Forgetting a bucket only hands its subject a full one again: the least recently used are idle subjects, whose
    buckets have mostly refilled anyway. Unbounded, a flood of fresh subjects (addresses, bad keys) would be a
    memory exhaustion attack of its own.
    """

    def __init__(self, *, clock: Clock, max_buckets: int = 20_000) -> None:
        self.clock = clock
        self.max_buckets = max_buckets
        # subject -> [tokens, updated]: a list, not an object, as there may be many thousands
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, subject: str, policy: RatePolicy) -> RateDecision:
        return self.take_now(subject, policy)

    def take_now(self, subject: str, policy: RatePolicy) -> RateDecision:
        now = self.clock()
        bucket = self._buckets.get(subject)
        if bucket is None:
            while len(self._buckets) >= self.max_buckets:
                self._buckets.popitem(last=False)
            bucket = self._buckets[subject] = [float(policy.burst), now]
        else:
            self._buckets.move_to_end(subject)
        # The policy may have changed since (a tenant's override): refill at today's rate, up to today's burst.
        tokens = min(float(policy.burst), bucket[0] + max(0.0, now - bucket[1]) * policy.rate_per_s)
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            full_in = math.ceil((policy.burst - bucket[0]) / policy.rate_per_s)
            return RateDecision(policy, allowed=True, remaining=int(bucket[0]), reset_s=full_in)
        bucket[0] = tokens
        return RateDecision(policy, allowed=False, remaining=0, reset_s=math.ceil((1 - tokens) / policy.rate_per_s))


class LayeredLimiter:
    """Every layer must allow; the first refusal answers. Put the cheap in-process bucket first: it also knows
    what is left, which the Workers binding cannot tell."""

    def __init__(self, *layers: RateLimiter) -> None:
        if not layers:
            raise ValueError("a LayeredLimiter needs at least one layer")
        self.layers = layers

    async def take(self, subject: str, policy: RatePolicy) -> RateDecision:
        first: RateDecision | None = None
        for layer in self.layers:
            decision = await layer.take(subject, policy)
            if not decision.allowed:
                return decision
            first = first or decision
        assert first is not None
        return first


@dataclass(frozen=True)
class Limiters:
    """The three limits of the API: per client address (before authentication), per API key, per tenant."""

    ip: RateLimiter
    key: RateLimiter
    tenant: RateLimiter

    @classmethod
    def local(cls, *, clock: Clock, max_buckets: int) -> Limiters:
        def bucket() -> TokenBucketLimiter:
            return TokenBucketLimiter(clock=clock, max_buckets=max_buckets)

        return cls(ip=bucket(), key=bucket(), tenant=bucket())


def client_subject(address: str) -> str:
    """The subject a client address is limited as: an IPv4 address, or an IPv6 address's /64 (one subscriber
    usually holds a whole /64, so per address would hand it 2^64 buckets)."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return address[:64]  # not an address (a test client's name): limited as it is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
