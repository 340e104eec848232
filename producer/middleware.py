"""The API's limits as ASGI middleware (request size → 413, requests per client address → 429), the rate policies
of a request, and the `RateLimit` headers of every limit a request went through."""

from __future__ import annotations

import json
import math

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producer import problems
from shared.errors import RateLimited
from shared.ratelimit import RateDecision, RateLimiter, RatePolicy, client_subject, rate_limit_headers
from shared.settings import Settings
from shared.stores.accounts import Tenant

#: Where a request's rate decisions are kept (in the ASGI scope's `state`, i.e. `request.state`).
DECISIONS = "rate_limit_decisions"
#: A tenant that sets its rate but not its burst gets this many seconds' worth.
DEFAULT_BURST_S = 5


class BodyLimitMiddleware:
    """Answers 413 when a request body exceeds `max_bytes`, whether or not it declares its length."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(send)
            return
        # Buffer the (small, bounded) body so an over-long chunked upload is refused before the app runs.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {
                "type": "urn:scrapeq:problem:payload_too_large",
                "title": "Payload too large",
                "status": 413,
                "detail": f"request body exceeds {self.max_bytes} bytes",
                "code": "payload_too_large",
            }
        ).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def client_address(scope: Scope, header: str) -> str | None:
    """The client's address: the last entry of `header` (set by a trusted proxy) if configured and present, else
    the connection's peer. None when neither is known."""
    if header:
        forwarded = Headers(scope=scope).get(header, "").rsplit(",", 1)[-1].strip()
        if forwarded:
            return forwarded
    client = scope.get("client")
    return str(client[0]) if client else None


def ip_policy(settings: Settings) -> RatePolicy:
    return RatePolicy("ip", settings.ip_rate_limit_per_s, settings.ip_rate_limit_burst)


def rate_policies(settings: Settings, tenant: Tenant) -> tuple[RatePolicy, RatePolicy]:
    """The per-key and per-tenant policies for `tenant`'s requests. A tenant's own rate replaces both: each
    key and all keys together get it, so a single-key tenant can use all of it."""
    own = tenant.limits
    if own.rate_limit_per_s is None and own.rate_limit_burst is None:
        return (
            RatePolicy("key", settings.rate_limit_per_s, settings.rate_limit_burst),
            RatePolicy("tenant", settings.tenant_rate_limit_per_s, settings.tenant_rate_limit_burst),
        )
    rate = own.rate_limit_per_s or settings.tenant_rate_limit_per_s
    burst = own.rate_limit_burst or max(1, math.ceil(rate * DEFAULT_BURST_S))
    return RatePolicy("key", rate, burst), RatePolicy("tenant", rate, burst)


def note_decision(scope: Scope, decision: RateDecision) -> None:
    """Remember a decision so that its `RateLimit` headers go out with the response, whatever the response."""
    scope.setdefault("state", {}).setdefault(DECISIONS, []).append(decision)


def refusal(decision: RateDecision) -> RateLimited:
    return RateLimited(
        f"too many requests for this {_SUBJECTS.get(decision.policy.name, decision.policy.name)}; "
        f"retry in {decision.retry_after_s} s",
        headers={"Retry-After": str(decision.retry_after_s)},
        policy=decision.policy.name,
    )


_SUBJECTS = {"ip": "client address", "key": "API key", "tenant": "tenant"}


class RateLimitMiddleware:
    """Limits every request by client address before anything else runs (authentication included, so floods
    and key guessing are throttled), then adds the `RateLimit` headers of every limit the request went through
    (this one, and the per-key and per-tenant ones `authenticate` noted) to whatever response goes out."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, policy: RatePolicy, client_ip_header: str) -> None:
        self.app = app
        self.limiter = limiter
        self.policy = policy
        self.client_ip_header = client_ip_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decisions: list[RateDecision] = []
        scope.setdefault("state", {})[DECISIONS] = decisions

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in rate_limit_headers(decisions).items():
                    headers[name] = value
            await send(message)

        address = client_address(scope, self.client_ip_header)
        if address is not None:
            decision = await self.limiter.take(client_subject(address), self.policy)
            decisions.append(decision)
            if not decision.allowed:
                error = refusal(decision)
                response = problems.problem(
                    error.status, error.detail, code=error.code, title=error.title, headers=error.headers, **error.extra
                )
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)
