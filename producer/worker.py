"""Cloudflare Worker entry of the producer: the FastAPI app behind the Workers ASGI adapter."""

from __future__ import annotations

import time
from typing import Any

from workers import WorkerEntrypoint  # type: ignore[import-not-found]

from producer.app import create_app
from shared import logformat
from shared.backends import analytics
from shared.backends.cloudflare import cloudflare_backends, cloudflare_rate_limiters, settings_from_env
from shared.ratelimit import LayeredLimiter, Limiters, RateLimiter
from shared.settings import Settings

#: Set by Cloudflare to the address the request came from; a client cannot forge it.
CLIENT_IP_HEADER = "CF-Connecting-IP"
#: A KV write may take ~60 s to show in listings elsewhere; quota checkpoints stay well behind that.
KV_SETTLE_S = 120.0

_app: Any = None


def app_for(env: Any) -> Any:
    """The isolate's FastAPI app over the Worker's KV namespace, queue producer and rate limiter bindings."""
    global _app
    if _app is None:
        settings = settings_from_env(env)
        logformat.install(settings.log_level, settings.log_format)  # console output becomes Workers Logs
        analytics.install_from_env(env)  # operator metrics as Analytics Engine data points, if bound
        settled = max(settings.quota_settle_s, KV_SETTLE_S)
        settings = settings.model_copy(update={"client_ip_header": CLIENT_IP_HEADER, "quota_settle_s": settled})
        _app = create_app(settings, backends=cloudflare_backends(env), limiters=limiters_for(env, settings))
    return _app


def limiters_for(env: Any, settings: Settings) -> Limiters:
    """Each limit is an in-process bucket (this isolate's share; it knows what is left and applies tenant
    overrides), backed by the Rate Limiting binding of that limit where the Worker has one (every isolate of
    the Cloudflare location together)."""
    local = Limiters.local(clock=time.monotonic, max_buckets=settings.rate_limit_max_buckets)
    bindings = cloudflare_rate_limiters(env)

    def layered(name: str, bucket: RateLimiter) -> RateLimiter:
        binding = bindings.get(name)
        return bucket if binding is None else LayeredLimiter(bucket, binding)

    return Limiters(ip=layered("ip", local.ip), key=layered("key", local.key), tenant=layered("tenant", local.tenant))


class Default(WorkerEntrypoint):  # type: ignore[misc]
    """Only this module (and `consumer/worker.py`) touches the Workers runtime; everything it wires is plain
    CPython-tested code. The app is built once per isolate, on the first request: nothing runs at import time
    that would need entropy or bindings (the memory snapshot is taken after import).
    """

    async def fetch(self, request: Any) -> Any:
        import asgi  # type: ignore[import-not-found]  # the runtime's ASGI adapter (workers.asgi)

        return await asgi.fetch(app_for(self.env), request.js_object, self.env)
