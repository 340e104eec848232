"""`POST /scrape` without FastAPI's routing and dependency solving, for the requests it can take as they are."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producer import problems, routes
from producer.deps import authenticate
from shared.errors import ApiError, StorageError
from shared.models import ScrapeRequest

PATH = "/scrape"


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json"
    return False


class SubmitFastPath:
    """Serves the plain submits of `PATH` itself; every other request goes to `app` untouched.

    A submit is the API's hot path, and FastAPI's per-request machinery (routing, the dependency tree, parsing the
    body to Python objects and validating those) is a large part of it (`benchmarks/` measures the producer). This
    ASGI layer answers a `POST /scrape` whose body is JSON (`Content-Type: application/json`) and validates as a
    `ScrapeRequest`, straight from its bytes, with the route's own code (`routes.accept`: same authentication,
    checks, answers and problems). Anything else — another route, another media type, a body that does not
    validate — goes on to the app, which answers exactly as it always did (a bad body from a caller without
    credentials still gets its 401 first). The route stays declared in FastAPI, for OpenAPI and for those requests.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        if messages[-1]["type"] != "http.request":  # the client went away
            await self.app(scope, replay, send)
            return
        try:
            body = ScrapeRequest.model_validate_json(b"".join(m.get("body", b"") for m in messages))
        except ValidationError:
            await self.app(scope, replay, send)  # FastAPI words the problem, after authentication
            return
        request = Request(scope, replay)
        try:
            response = await routes.accept(body, await authenticate(request), request)
        except ApiError as exc:
            response = problems.api_problem(exc)
        except RequestValidationError as exc:
            response = problems.validation_problem(exc)
        except StorageError as exc:
            response = problems.storage_problem(exc)
        await response(scope, replay, send)
