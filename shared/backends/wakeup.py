"""Waking local queue receivers: at once on a send in this process or (via a Unix socket) in another one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from shared.ports import Clock, Message

log = logging.getLogger(__name__)


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


class ProcessBell:
    """Wakes receivers in *other* processes that share the database: no sleep-polling between processes.

    Each process that waits on the queue binds a Unix datagram socket in `directory`; a send rings every
    socket there (one tiny datagram each, never blocking). A socket whose process died is removed by the
    first sender that finds it refusing. Where Unix sockets are unavailable (or the path is too long for
    one), receivers fall back to polling.
    """

    def __init__(self, directory: Path, on_ring: Callable[[], None]) -> None:
        self.directory = directory
        self._on_ring = on_ring
        self._listener: socket.socket | None = None
        self._path: Path | None = None
        self._sender: socket.socket | None = None
        self._failed = not hasattr(socket, "AF_UNIX")
        self._ring_pending = False

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def listen(self) -> None:
        """Start hearing rings in this process's event loop (idempotent; a failure means polling instead)."""
        if self._listener is not None or self._failed:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{os.getpid()}.{secrets.token_hex(3)}"
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            listener.setblocking(False)
            listener.bind(str(path))
        except OSError as exc:
            log.debug("no wake-up socket in %s (%s): polling instead", self.directory, exc)
            self._failed = True
            return
        asyncio.get_running_loop().add_reader(listener.fileno(), self._drain)
        self._listener, self._path = listener, path

    def ring_soon(self) -> None:
        """`ring` once the event loop is done with what it is running: a burst of sends rings once."""
        if not self._ring_pending:
            self._ring_pending = True
            asyncio.get_running_loop().call_soon(self._ring_now)

    def _ring_now(self) -> None:
        self._ring_pending = False
        self.ring()

    def ring(self) -> None:
        """Wake every listening process (this one included); never blocks, never raises."""
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        for entry in entries:
            try:
                self._sender.sendto(b"!", entry.path)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)  # its process is gone
            except OSError:
                pass  # a full buffer: that process has a wake-up pending already

    def _drain(self) -> None:
        assert self._listener is not None
        with contextlib.suppress(OSError):
            while self._listener.recv(64):
                pass
        self._on_ring()

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()
            self._path = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None
