"""The local processes: `dev` (API + consumer in one process), `serve` (API only) and `worker` (consumer only);
the local composition root, the only place that imports both `producer` and `consumer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp

from consumer.local import run_worker
from producer.app import create_app
from scrapeq import prometheus
from shared.backends.base import Backends
from shared.backends.factory import open_backends
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.backends.sqlite.store import SqliteQueue

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process-wide handlers below stop API and consumer together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _install_stop(stop: asyncio.Event, server: _Server | None) -> None:
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        if stop.is_set() and server is not None:
            server.force_exit = True  # second Ctrl-C: do not wait for open connections
        stop.set()
        if server is not None:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)


def _server(settings: Settings, backends: Backends[SqliteQueue]) -> _Server:
    app: ASGIApp = create_app(settings, backends=backends)
    if token := settings.metrics_token.get_secret_value():
        app = prometheus.MetricsEndpoint(app, token=token, jobs=backends.jobs, dead_letters=backends.dead_letters)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # The API writes its own access line (producer/requestid.py); uvicorn's loggers go to the root handler,
        # so every line has the configured format.
        access_log=False,
        log_config=None,
        # On SIGTERM: take no connection, finish the requests in flight (up to the grace), then stop.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
    )
    return _Server(config)


async def serve(settings: Settings, *, api: bool, consumer: bool) -> None:
    """Run the API and/or the consumer over the embedded backends until SIGINT/SIGTERM."""
    prometheus.install(settings)  # before anything counts: this process's figures go to the data dir's metrics/
    backends = open_backends(settings)
    stop = asyncio.Event()
    server = _server(settings, backends) if api else None
    _install_stop(stop, server)
    try:
        jobs = []
        if server is not None:
            jobs.append(asyncio.create_task(_serve_api(server, stop)))
        if consumer:
            jobs.append(asyncio.create_task(run_worker(settings, backends, stop)))
        await asyncio.gather(*jobs)
    finally:
        await backends.aclose()


async def _serve_api(server: _Server, stop: asyncio.Event) -> None:
    try:
        await server.serve()
    finally:
        stop.set()  # the API stopping (e.g. the port is taken) stops the consumer too
