"""Retry timing (pure): the one exponential backoff, and the one reader of `Retry-After` values."""

from __future__ import annotations

import math
import random
from datetime import UTC
from email.utils import parsedate_to_datetime

#: Cloudflare Queues accept delays up to 12 h (the local queue enforces the same).
MAX_QUEUE_DELAY_S = 43_200
WEBHOOK_BACKOFF_FACTOR = 4
#: Queue retries are drawn from [delay/2, delay]: many messages spread out, none sooner than half the delay.
QUEUE_JITTER = (0.5, 1.0)
#: Webhook attempts are drawn from ±20 % of the schedule.
WEBHOOK_JITTER = (0.8, 1.2)


def backoff_s(
    attempts: int,
    *,
    base_s: float,
    max_s: float = math.inf,
    factor: float = 2.0,
    jitter: tuple[float, float] | None = QUEUE_JITTER,
) -> float:
    """Delay before the next try after `attempts` failed ones: base × factor^(attempts-1), at most `max_s`.

    `jitter` (low, high) multiplies the delay by a random factor in that range, still at most `max_s`.
    """
    delay: float = min(max_s, base_s * factor ** max(0, min(attempts - 1, 30)))
    if jitter is not None:
        delay = min(max_s, delay * random.uniform(*jitter))
    return delay


def webhook_delay_s(attempts: int, *, base_s: float, retry_after_s: float | None = None, jitter: bool = True) -> float:
    """Delay before webhook attempt `attempts + 1`: base × 4^(attempts-1), ±20 % jitter, at most 12 h.

    With the default 30 s base that is 30 s, 2 min, 8 min, 32 min, 2.1 h, 8.5 h, 12 h: eight attempts over
    about a day. A receiver's `Retry-After` is honoured when it asks for longer, within 12 h.
    """
    delay = backoff_s(
        attempts,
        base_s=base_s,
        max_s=MAX_QUEUE_DELAY_S,
        factor=WEBHOOK_BACKOFF_FACTOR,
        jitter=WEBHOOK_JITTER if jitter else None,
    )
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return min(delay, MAX_QUEUE_DELAY_S)


def retry_after_s(value: str | None, *, now: float) -> float | None:
    """Seconds a `Retry-After` value asks for: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).

    None when absent or unreadable; a date in the past is 0. Fractions are accepted although the RFC has
    only whole seconds: being lenient about what a server meant costs nothing here.
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None
