"""The FastAPI application factory of the producer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from producer import audit_api, feeds, knowledge, problems, usage_api
from producer.dashboard import serving as dashboard
from producer.deps import Services
from producer.fastpath import SubmitFastPath
from producer.middleware import BodyLimitMiddleware, RateLimitMiddleware, ip_policy
from producer.requestid import RequestIdMiddleware
from producer.routes import router
from shared.backends.base import Backends
from shared.backends.factory import open_backends
from shared.ports import JobQueue
from shared.ratelimit import Limiters
from shared.settings import Settings

DESCRIPTION = """Submit crawls, poll their status, read their pages.

Authenticate with `Authorization: Bearer <api key>`. Errors are RFC 9457 problem documents
(`application/problem+json`) with a stable `code`."""


def create_app(
    settings: Settings | None = None,
    *,
    backends: Backends[JobQueue] | None = None,
    limiters: Limiters | None = None,
) -> FastAPI:
    """Build the API. Without `backends`, the embedded SQLite backends are opened for the app's lifetime; without
    `limiters`, rate limits are token buckets in this process."""
    settings = settings or Settings()
    if limiters is None:
        limiters = Limiters.local(clock=time.monotonic, max_buckets=settings.rate_limit_max_buckets)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if backends is not None:
            yield
            return
        opened = open_backends(settings)
        app.state.services = Services.build(settings, opened, limiters)
        try:
            yield
        finally:
            await opened.aclose()

    app = FastAPI(title="scrapeq", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    if backends is not None:
        app.state.services = Services.build(settings, backends, limiters)
    app.add_middleware(SubmitFastPath)  # innermost: after the address's rate limit and the body's size
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    # Added last, so it runs first: a flood is refused before its body is even read.
    app.add_middleware(
        RateLimitMiddleware,
        limiter=limiters.ip,
        policy=ip_policy(settings),
        client_ip_header=settings.client_ip_header,
    )
    # Outermost: every answer has its id (every log line of it too) and is counted, the limits' 429s included.
    app.add_middleware(RequestIdMiddleware, routes=app.router.routes)
    problems.install(app)
    app.include_router(router)
    app.include_router(feeds.router)
    app.include_router(knowledge.router)
    app.include_router(dashboard.router)
    app.include_router(audit_api.router)
    app.include_router(usage_api.router)
    return app
