"""The FastAPI application factory of the producer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from producer import hooks, problems
from producer.limits import BodyLimitMiddleware, TokenBucketLimiter
from producer.routes import router
from shared.backends import Backends, open_backends
from shared.ports import JobQueue
from shared.settings import Settings

DESCRIPTION = """Submit crawls, poll their status, read their pages.

Authenticate with `Authorization: Bearer <api key>`. Errors are RFC 9457 problem documents
(`application/problem+json`) with a stable `code`."""


def create_app(settings: Settings | None = None, *, backends: Backends[JobQueue] | None = None) -> FastAPI:
    """Build the API. Without `backends`, the embedded SQLite backends are opened for the app's lifetime."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if backends is not None:
            yield
            return
        opened = open_backends(settings)
        app.state.backends = opened
        try:
            yield
        finally:
            await opened.aclose()

    app = FastAPI(title="scrapeq", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    if backends is not None:
        app.state.backends = backends
    app.state.rate_limiter = TokenBucketLimiter(
        rate_per_s=settings.rate_limit_per_s, burst=settings.rate_limit_burst, clock=time.monotonic
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    problems.install(app)
    app.include_router(router)
    app.include_router(hooks.router)
    return app
