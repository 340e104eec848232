"""The route label an API answer is counted and logged under: the template the router matched (`/tasks/{task_id}`),
found afterwards for answers given before routing (the submit fast path, a 413 or a 429), or `unmatched`."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from producer import fastpath

#: The route label of a request that matched no route (unknown paths share it: a label per path would let any
#: client grow the metrics without bound).
UNMATCHED = "unmatched"


def route_label(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The template of the route that served (or would have served) the request, else `UNMATCHED`."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", UNMATCHED))
    if scope["path"] == fastpath.PATH:
        return fastpath.PATH
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match is not Match.NONE:
            return str(getattr(candidate, "path", UNMATCHED))
    return UNMATCHED
