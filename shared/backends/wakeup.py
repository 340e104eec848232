"""Waking local queue receivers: at once on a send in this process, else on a poll interval."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from shared.ports import Clock, Message


class Wakeup:
    """Wakes this process's receivers waiting on a queue. Each receiver takes the current event *before* it
    looks for messages, and `fire` swaps in a fresh one, so a send between the look and the wait is not lost.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def arm(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


Take = Callable[[], Awaitable[tuple[list[Message], float | None]]]
"""One look for messages: what was delivered, and when the next one becomes visible (None: queue empty)."""


async def receive_waiting(
    take: Take, wakeup: Wakeup, *, wait_s: float, poll_interval_s: float, clock: Clock
) -> list[Message]:
    """Look, then sleep until a local send, the next delayed message, or the poll interval (other processes
    cannot wake us), until something arrives or `wait_s` of real time has passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        event = wakeup.arm()
        messages, next_visible = await take()
        remaining = deadline - loop.time()
        if messages or remaining <= 0:
            return messages
        pause = min(poll_interval_s, remaining)
        if next_visible is not None:
            pause = min(pause, next_visible - clock())
        with contextlib.suppress(TimeoutError):
            # The floor keeps a clock at the edge of a visibility time from spinning the loop.
            await asyncio.wait_for(event.wait(), max(pause, 0.001))
