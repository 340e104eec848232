"""`X-Request-ID` on every answer (the client's if sane, else a new one), the request's trace for its log lines,
one access line and one metrics record per request (pure ASGI, stdlib only: it runs on the producer Worker too)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producer import problems
from producer.requestmetrics import UNMATCHED, route_label
from shared import telemetry, tracing

log = logging.getLogger("scrapeq.access")

_HEADER = tracing.HEADER.lower().encode()


def _client_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER:
            try:
                return tracing.sane_request_id(value.decode("ascii"))
            except UnicodeDecodeError:
                return None
    return None


class RequestIdMiddleware:
    """Outermost layer: every HTTP answer (problems, 404s, 413/429 of the limits, the submit fast path, docs)
    carries `X-Request-ID`; the request runs under a `tracing.Trace` (so its log lines and the jobs it queues carry
    the id, and authentication adds the tenant); at the end, one INFO line (logger `scrapeq.access`) with method,
    route, status, duration_ms, and the same to the process's `telemetry` recorder (route label, method, status,
    seconds; a no-op unless one is installed). An exception that escapes the app is logged here and answered with
    a 500 problem that has the id too (Starlette's own last-resort handler sits outside every middleware).

    One layer for all of it: a submit goes through every layer's frames and send wrapper on each of its awaits."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        request_id = _client_id(scope) or tracing.new_request_id()
        header = (_HEADER, request_id.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        with tracing.traced(tracing.Trace(request_id=request_id)) as trace:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                if status:
                    raise  # the answer had begun: nothing more can be sent
                response = problems.problem(500, "an unexpected error occurred; it has been logged")
                await response(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - began
                label = route_label(scope, self.routes)
                # No answer sent at all (the client went away) counts as a 500, as a server error would.
                telemetry.recorder().request(label, scope["method"], status or 500, seconds)
                if log.isEnabledFor(logging.INFO):
                    route = None if label == UNMATCHED else label
                    duration_ms = round(seconds * 1000, 2)
                    # A record made directly (not `log.info`): the caller's frame is known, no stack walk per request.
                    args = (scope["method"], route or scope["path"], status, duration_ms)
                    line = log.makeRecord(
                        log.name,
                        logging.INFO,
                        __file__,
                        0,
                        "%s %s %d %.2f ms",
                        args,
                        None,
                        extra={
                            "method": scope["method"],
                            "route": route,
                            "path": scope["path"],
                            "status": status,
                            "duration_ms": duration_ms,
                            "tenant_id": trace.tenant_id,
                            "task_id": trace.task_id,
                        },
                    )
                    log.handle(line)
