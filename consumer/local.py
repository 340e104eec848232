"""The local consumer: pulls batches from the SQLite (or memory) queue and applies the handler's decisions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from consumer.fetch.client import build_client
from consumer.handler import Decision, JobHandler, make_handler, retry
from shared.backends.base import Backends
from shared.ports import LocalQueue, Message, QueueReceiver
from shared.retry import backoff_s
from shared.settings import Settings

log = logging.getLogger(__name__)

DEAD_LETTER_POLL_S = 5.0


class LocalWorker:
    """Runs up to `concurrency` messages at once until `stop` is set, then drains within `grace_s`."""

    def __init__(
        self,
        *,
        handler: JobHandler,
        jobs: QueueReceiver,
        dead_letters: QueueReceiver,
        concurrency: int,
        grace_s: float,
    ) -> None:
        self.handler = handler
        self.jobs = jobs
        self.dead_letters = dead_letters
        self.concurrency = concurrency
        self.grace_s = grace_s
        self._active: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        next_dead_letter_poll = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_dead_letter_poll:
                await self._drain_dead_letters()
                next_dead_letter_poll = time.monotonic() + DEAD_LETTER_POLL_S
            free = self.concurrency - len(self._active)
            if free <= 0:
                await asyncio.wait(self._active, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                continue
            for message in await self.jobs.receive(max_messages=free, wait_s=0.5):
                task = asyncio.create_task(self._process(message))
                self._active.add(task)
                task.add_done_callback(self._active.discard)
        await self._shutdown()

    async def _process(self, message: Message) -> None:
        try:
            decision = await self.handler.handle(message.body, message_id=message.id, attempts=message.attempts)
        except asyncio.CancelledError:
            # Shutting down: hand the message back at once instead of waiting for its lease to expire.
            await self.jobs.retry(message, delay_s=0)
            raise
        except Exception:
            log.exception("message %s failed (attempt %d)", message.id, message.attempts)
            decision = retry(backoff_s(message.attempts, base_s=5, max_s=300))
        await self._apply(message, decision)

    async def _apply(self, message: Message, decision: Decision) -> None:
        if decision.ack:
            await self.jobs.ack(message)
        else:
            await self.jobs.retry(message, delay_s=decision.retry_after_s or 0)

    async def _drain_dead_letters(self) -> None:
        for message in await self.dead_letters.receive(max_messages=100):
            try:
                await self.handler.handle_dead_letter(message.body)
            except Exception:
                log.exception("dead letter %s could not be processed", message.id)
                continue
            await self.dead_letters.ack(message)

    async def _shutdown(self) -> None:
        if not self._active:
            return
        log.info("waiting up to %.0f s for %d running slices", self.grace_s, len(self._active))
        _, pending = await asyncio.wait(self._active, timeout=self.grace_s)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)


async def run_worker(settings: Settings, backends: Backends[LocalQueue], stop: asyncio.Event) -> None:
    """Wire the consumer (one shared HTTP client for every task) and run it until `stop` is set."""
    if backends.dead_letters is None:
        raise ValueError("a local consumer needs the dead-letter queue too")
    async with build_client(settings) as client:
        handler = make_handler(settings, backends, client=client)
        worker = LocalWorker(
            handler=handler,
            jobs=backends.jobs,
            dead_letters=backends.dead_letters,
            concurrency=settings.worker_concurrency,
            grace_s=settings.slice_max_s,
        )
        log.info("consumer running (%d slices at once)", settings.worker_concurrency)
        await worker.run(stop)
