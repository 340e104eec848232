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
