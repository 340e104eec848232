"""What the consumer does with a delivered message: ack it, or make it visible again after a delay
(the local worker applies it on its queue, the consumer Worker with `message.ack()` / `message.retry()`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    retry_after_s: float | None = None

    @property
    def ack(self) -> bool:
        return self.retry_after_s is None


ACK = Decision()


def retry(after_s: float) -> Decision:
    return Decision(retry_after_s=after_s)
