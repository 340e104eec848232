"""Every API answer counted by route template, method and status, with its time (pure ASGI, for the hot path)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producer import fastpath
from shared import telemetry

#: The route label of a request that matched no route (unknown paths share it: a label per path would let any
#: client grow the metrics without bound).
UNMATCHED = "unmatched"


class RequestMetricsMiddleware:
    """Outermost layer: times each HTTP request from its start to its last body byte and hands route template,
    method, status and seconds to the process's `telemetry` recorder (a no-op unless one is installed).

    The template is the one the router matched (`scope["route"]`, set in place by Starlette); a request answered
    before routing (the submit fast path, a 413 or a 429) gets it by matching `routes` afterwards.
    """

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self._template(scope)
            telemetry.recorder().request(route, scope["method"], status, time.perf_counter() - began)

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", UNMATCHED))
        if scope["path"] == fastpath.PATH:
            return fastpath.PATH
        for candidate in self.routes:
            match, _ = candidate.matches(scope)
            if match is not Match.NONE:
                return str(getattr(candidate, "path", UNMATCHED))
        return UNMATCHED
