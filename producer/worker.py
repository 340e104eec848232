"""Cloudflare Worker entry of the producer: the FastAPI app behind the Workers ASGI adapter.

Only this module (and `consumer/worker.py`) touches the Workers runtime; everything it wires is plain
CPython-tested code. The app is built once per isolate, on the first request: nothing runs at import time
that would need entropy or bindings (the memory snapshot is taken after import).
"""

from __future__ import annotations

from typing import Any

from workers import WorkerEntrypoint  # type: ignore[import-not-found]

from producer.app import create_app
from shared.backends.cloudflare import cloudflare_backends, settings_from_env

_app: Any = None


def app_for(env: Any) -> Any:
    """The isolate's FastAPI app over the Worker's KV namespace and queue producer binding."""
    global _app
    if _app is None:
        _app = create_app(settings_from_env(env), backends=cloudflare_backends(env))
    return _app


class Default(WorkerEntrypoint):  # type: ignore[misc]
    async def fetch(self, request: Any) -> Any:
        import asgi  # type: ignore[import-not-found]  # the runtime's ASGI adapter (workers.asgi)

        return await asgi.fetch(app_for(self.env), request.js_object, self.env)
