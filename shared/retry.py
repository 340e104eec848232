"""Retry timing (pure): exponential backoff with full jitter, shared by queue retries and webhook deliveries."""

from __future__ import annotations

import random


def backoff_s(attempts: int, *, base_s: float, max_s: float, jitter: bool = True) -> float:
    """Delay before the next try after `attempts` failed ones: base * 2^(attempts-1), capped, jittered.

    With jitter the delay is drawn from [delay/2, delay], so retries of many messages spread out without
    ever retrying sooner than half the nominal delay.
    """
    delay: float = min(max_s, base_s * 2 ** max(0, min(attempts - 1, 30)))
    if jitter:
        delay = random.uniform(delay / 2, delay)
    return delay


#: Cloudflare Queues accept delays up to 12 h (the local queue enforces the same).
MAX_QUEUE_DELAY_S = 43_200
WEBHOOK_BACKOFF_FACTOR = 4


def webhook_delay_s(attempts: int, *, base_s: float, retry_after_s: float | None = None, jitter: bool = True) -> float:
    """Delay before webhook attempt `attempts + 1`: base × 4^(attempts-1), ±20 % jitter, at most 12 h.

    With the default 30 s base that is 30 s, 2 min, 8 min, 32 min, 2.1 h, 8.5 h, 12 h: eight attempts over
    about a day. A receiver's `Retry-After` (seconds) is honoured when it asks for longer, within 12 h.
    """
    delay: float = base_s * WEBHOOK_BACKOFF_FACTOR ** max(0, min(attempts - 1, 20))
    if jitter:
        delay *= random.uniform(0.8, 1.2)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return min(delay, MAX_QUEUE_DELAY_S)
