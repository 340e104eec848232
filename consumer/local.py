"""The local consumer: pulls batches from the SQLite (or memory) queue and applies the handler's decisions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from consumer.crawl.slice import Shutdown
from consumer.fetch.client import build_client
from consumer.handler import Decision, JobHandler, make_handler, retry
from shared.backends.base import Backends
from shared.errors import StorageError
from shared.ports import LocalQueue, Message, QueueReceiver
from shared.retry import backoff_s
from shared.settings import Settings

log = logging.getLogger(__name__)

DEAD_LETTER_POLL_S = 5.0
#: After the grace, what a slice gets to checkpoint what it hands back and send its follow-up.
HAND_BACK_S = 5.0
OUTAGE_FIRST_WAIT_S = 0.5
OUTAGE_MAX_WAIT_S = 10.0


class StorageOutage:
    """How long to wait before the next try while the storage fails (backing off up to `OUTAGE_MAX_WAIT_S`), and
    one log line when an outage starts and one when it ends, not one per try."""

    def __init__(self) -> None:
        self.tries = 0
        self.since: float | None = None

    def failed(self, exc: Exception) -> float:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("storage unavailable (%s); retrying until it recovers", exc)
        self.tries += 1
        return backoff_s(self.tries, base_s=OUTAGE_FIRST_WAIT_S, max_s=OUTAGE_MAX_WAIT_S)

    def recovered(self) -> None:
        if self.since is not None:
            log.warning("storage available again after %.1f s", time.monotonic() - self.since)
            self.since, self.tries = None, 0


class LocalWorker:
    """Runs up to `concurrency` messages at once until `stop` is set. Then it takes no message; its slices start no
    page, and after `grace_s` hand back their unfinished pages in a checkpoint and a follow-up message (another
    worker continues at once). A message still running after that is cancelled and released for redelivery."""

    def __init__(
        self,
        *,
        handler: JobHandler,
        jobs: QueueReceiver,
        dead_letters: QueueReceiver,
        concurrency: int,
        grace_s: float,
        shutdown: Shutdown | None = None,
    ) -> None:
        self.handler = handler
        self.jobs = jobs
        self.dead_letters = dead_letters
        self.concurrency = concurrency
        self.grace_s = grace_s
        self.shutdown = shutdown
        self._active: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        next_dead_letter_poll = 0.0
        outage = StorageOutage()
        while not stop.is_set():
            try:
                if time.monotonic() >= next_dead_letter_poll:
                    await self._drain_dead_letters()
                    next_dead_letter_poll = time.monotonic() + DEAD_LETTER_POLL_S
                free = self.concurrency - len(self._active)
                if free <= 0:
                    await asyncio.wait(self._active, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                    continue
                messages = await self.jobs.receive(max_messages=free, wait_s=0.5)
            except StorageError as exc:
                # A full or read-only disk: keep the process, wait, and try again (running slices go on as best
                # they can; what they could not commit is delivered again).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=outage.failed(exc))
                continue
            outage.recovered()
            for message in messages:
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
        except StorageError as exc:  # a full or read-only disk, say: no traceback, it says nothing new
            log.warning("message %s failed (attempt %d): %s", message.id, message.attempts, exc)
            decision = retry(backoff_s(message.attempts, base_s=5, max_s=300))
        except Exception:
            log.exception("message %s failed (attempt %d)", message.id, message.attempts)
            decision = retry(backoff_s(message.attempts, base_s=5, max_s=300))
        await self._apply(message, decision)

    async def _apply(self, message: Message, decision: Decision) -> None:
        try:
            if decision.ack:
                await self.jobs.ack(message)
            else:
                await self.jobs.retry(message, delay_s=decision.retry_after_s or 0)
        except StorageError as exc:
            log.warning(
                "message %s could not be settled (%s); it is delivered again when its lease ends", message.id, exc
            )

    async def _drain_dead_letters(self) -> None:
        for message in await self.dead_letters.receive(max_messages=100):
            try:
                await self.handler.handle_dead_letter(message.body)
            except Exception:
                log.exception("dead letter %s could not be processed", message.id)
                continue
            await self.dead_letters.ack(message)

    async def _shutdown(self) -> None:
        if self.shutdown is not None:
            self.shutdown.begin(self.grace_s)
        if not self._active:
            return
        log.info("stopping: %d running messages get %.0f s, then hand back their work", len(self._active), self.grace_s)
        _, pending = await asyncio.wait(self._active, timeout=self.grace_s + HAND_BACK_S)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)


async def run_worker(settings: Settings, backends: Backends[LocalQueue], stop: asyncio.Event) -> None:
    """Wire the consumer (one shared HTTP client for every task) and run it until `stop` is set."""
    if backends.dead_letters is None:
        raise ValueError("a local consumer needs the dead-letter queue too")
    async with build_client(settings) as client:
        shutdown = Shutdown()
        handler = make_handler(settings, backends, client=client, shutdown=shutdown)
        worker = LocalWorker(
            handler=handler,
            jobs=backends.jobs,
            dead_letters=backends.dead_letters,
            concurrency=settings.worker_concurrency,
            grace_s=settings.shutdown_grace_s,
            shutdown=shutdown,
        )
        log.info("consumer running (%d slices at once)", settings.worker_concurrency)
        await worker.run(stop)
