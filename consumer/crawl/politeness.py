"""When a server asks to be left alone (pure): the pause a 429 or 503 answer imposes on its host and page;
`consumer.crawl.hostgate.HostGate` makes every request to the host wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.retry import backoff_s, retry_after_s

#: Answers that mean "too much, come back later" (RFC 6585 §4, RFC 9110 §15.6.4).
BACKOFF_STATUSES = frozenset({429, 503})
#: Pause after a 429/503 without a usable `Retry-After`: 1 s, then 2 s, 4 s... (capped like any pause).
BACKOFF_BASE_S = 1.0


@dataclass(frozen=True)
class Pause:
    """What one 429/503 answer means for its host and its page."""

    #: Seconds no request to the host may start (the whole process's requests, every task's).
    host_s: float
    #: Whether the page is tried again after the pause.
    retry: bool


def pause_for(
    status: int, retry_after: str | None, *, attempt: int, retries: int, max_s: float, now: float
) -> Pause | None:
    """The pause a response imposes, or None if it imposes none. `attempt` counts the tries made so far.

    The host pauses for what the server asked (else an exponential backoff), at most `max_s`. The page is
    tried again only while `retries` last, and only if the server asked for no more than `max_s`: retrying
    sooner than asked would be impolite, and waiting longer is not what a page visit is for.
    """
    if status not in BACKOFF_STATUSES:
        return None
    asked = retry_after_s(retry_after, now=now)
    wanted = asked if asked is not None else backoff_s(attempt, base_s=BACKOFF_BASE_S, jitter=None)
    return Pause(host_s=min(wanted, max_s), retry=attempt <= retries and wanted <= max_s)
