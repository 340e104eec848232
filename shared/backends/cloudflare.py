"""Cloudflare's KV, queue producer and Rate Limiting bindings behind the ports, and the queue batch dispatch;
standard library only, as Pyodide without pydantic loads it in the contract tests (`jsvalues` converts).
"""

# A binding comes in two shapes. workers-runtime-sdk ≥ 1.4 wraps KV, queues and queue batches: results are
# already Python (`None` for null, `JsDict` bodies) and arguments are converted for us. Without the wrapper (the
# runtime's frozen SDK, the Miniflare harness of the contract tests) results are `JsProxy`s or `jsnull`, nested
# nulls survive `to_py()` as `jsnull`, and a dict argument must become a plain JS Object, not a Map. So every
# value read from a binding goes through `to_py`, and every object handed to one is built by `to_js_object`,
# which the wrapper passes through untouched.
#
# Only the standard library and stdlib-only `shared` modules are imported (Pyodide without pydantic runs this
# module in the contract tests); on CPython the conversions are the identity and the adapters run over plain
# Python fakes.

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from shared.backends.base import Backends
from shared.backends.durable import durable_coordinator
from shared.backends.jsvalues import is_js_error, is_null, to_js_object, to_py
from shared.backends.kvlimits import (
    MAX_DELAY_S,
    check_delay,
    check_key,
    check_list_limit,
    check_value,
    encode_body,
    encode_metadata,
    expiry_for,
)
from shared.errors import StorageError
from shared.ports import MAX_LIST_LIMIT, JsonObject, KeyInfo, KVWrite, ListResult, Message, Reservations
from shared.ratelimit import RateDecision, RatePolicy
from shared.retry import backoff_s
from shared.stores.coordinated import CoordinatedQuotaLedger, CoordinatedReservations
from shared.stores.quotas import KvQuotaLedger, QuotaLedger
from shared.stores.reservations import KvReservations
from shared.stores.usage_shards import KvUsageLedger

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)

Handle = Callable[[str, Message], Awaitable[float | None]]
"""`(queue name, message) -> seconds to wait before a retry, or None to ack`."""

#: Backoff after the handler itself raised, as the local worker does (`consumer.local`).
ERROR_RETRY_BASE_S = 5.0
ERROR_RETRY_MAX_S = 300.0


#: Workers KV takes at most one write per second to a key and answers 429 beyond; such a write is tried again.
RATE_LIMITED_RETRIES_S = (1.0, 2.0, 4.0)


async def _call(what: str, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Call a binding method; its JS errors, thrown or rejected (429s, outages), become `StorageError`.

    A 429 (two writes to one key within a second, e.g. a slice ending just after the task started) is
    retried after a growing pause before it counts as a failure.
    """
    for pause_s in (*RATE_LIMITED_RETRIES_S, None):
        try:
            return await method(*args)
        except Exception as exc:
            if not is_js_error(exc):
                raise
            if pause_s is None or "429" not in str(exc):
                raise StorageError(f"{what} failed: {exc}") from exc
            log.info("%s rate limited; trying again in %.0f s", what, pause_s)
            await asyncio.sleep(pause_s)


# --- KV and the queue producer


def _put_args(key: str, value: str, ttl_s: float | None, metadata: JsonObject | None) -> tuple[Any, ...]:
    """The arguments of the binding's `put`, after the local backends' checks (key, value, TTL, metadata)."""
    check_key(key)
    check_value(value)
    options: JsonObject = {}
    if ttl_s is not None:
        expiry_for(ttl_s, 0)  # the local backends' refusals: under a minute, NaN, infinite
        options["expirationTtl"] = math.ceil(ttl_s)  # whole seconds; rounding up keeps it ≥ 60
    meta = encode_metadata(metadata)
    if meta is not None:
        options["metadata"] = json.loads(meta)  # exactly what was size-checked: JSON types only
    return (key, value, to_js_object(options)) if options else (key, value)


class CloudflareKV:
    """`KeyValueStore` over a Workers KV namespace binding, refusing what the local backends refuse."""

    def __init__(self, binding: Any) -> None:
        self._binding = binding

    async def get(self, key: str) -> str | None:
        check_key(key)
        value = to_py(await _call("KV get", self._binding.get, key))
        if value is not None and not isinstance(value, str):
            raise StorageError(f"KV get returned {type(value).__name__}, not text")
        return value

    async def put(
        self, key: str, value: str, *, ttl_s: float | None = None, metadata: JsonObject | None = None
    ) -> None:
        await _call("KV put", self._binding.put, *_put_args(key, value, ttl_s, metadata))

    async def put_many(self, writes: Sequence[KVWrite]) -> None:
        """Parallel puts (KV has no multi-key write); every write is checked before the first is sent."""
        calls = [_put_args(w.key, w.value, w.ttl_s, w.metadata) for w in writes]
        await asyncio.gather(*(_call("KV put", self._binding.put, *args) for args in calls))

    async def delete(self, key: str) -> None:
        check_key(key)
        await _call("KV delete", self._binding.delete, key)

    async def scrub(self) -> None:
        """Workers KV drops deleted values itself (within its propagation window)."""

    async def list(self, *, prefix: str = "", limit: int = MAX_LIST_LIMIT, cursor: str | None = None) -> ListResult:
        check_list_limit(limit)
        options: JsonObject = {"limit": limit}
        if prefix:
            options["prefix"] = prefix
        if cursor is not None:
            options["cursor"] = cursor
        return list_result(await _call("KV list", self._binding.list, to_js_object(options)))

    async def ping(self) -> None:
        """A read of a key that need not exist: cheap, and it fails if the namespace cannot be reached."""
        await _call("KV ping", self._binding.get, "scrapeq:ping")

    async def aclose(self) -> None:
        """The runtime owns the binding."""


def list_result(raw: Any) -> ListResult:
    """A KV `list` answer as a `ListResult`: the cursor is absent on the last page, and a page may be short or
    even empty while `list_complete` is still false."""
    page = to_py(raw)
    keys = [
        KeyInfo(
            name=item["name"],
            expiration=None if item.get("expiration") is None else float(item["expiration"]),
            metadata=item.get("metadata"),
        )
        for item in page.get("keys") or []
    ]
    if page.get("list_complete", True):
        return ListResult(keys, list_complete=True)
    cursor = page.get("cursor")
    if not cursor:  # the rest of the listing would be silently lost
        raise StorageError("KV list returned an incomplete page without a cursor")
    return ListResult(keys, list_complete=False, cursor=str(cursor))


class CloudflareQueue:
    """`JobQueue` over a queue producer binding; the runtime pushes batches to the consumer Worker instead."""

    def __init__(self, binding: Any) -> None:
        self._binding = binding

    async def send(self, body: JsonObject, *, delay_s: float = 0) -> None:
        text = encode_body(body)
        check_delay(delay_s)
        # JSON explicitly: the size limit is checked on the JSON text, and a consumer on any compat date reads it.
        options: JsonObject = {"contentType": "json"}
        if delay_s > 0:
            options["delaySeconds"] = math.ceil(delay_s)  # never earlier than asked
        await _call("queue send", self._binding.send, to_js_object(json.loads(text)), to_js_object(options))

    async def ping(self) -> None:
        """A producer binding offers no cheap probe; sends report their own failures."""

    async def aclose(self) -> None:
        """The runtime owns the binding."""


def cloudflare_backends(env: Any) -> Backends[CloudflareQueue]:
    """The Worker's `KV` namespace and `JOBS` producer; no dead-letter receiver (Cloudflare delivers those).

    With the `COORDINATION` Durable Object namespace bound, quotas and idempotency keys are exact (the tenant's
    object) and politeness holds across isolates (the host's object); without it, KV's documented bounds apply.
    """
    kv = CloudflareKV(env.KV)
    jobs = CloudflareQueue(env.JOBS)
    usage = KvUsageLedger(kv)
    coordination = durable_coordinator(env)
    if coordination is None:
        quotas: QuotaLedger = KvQuotaLedger(kv)
        reservations: Reservations = KvReservations(kv)
    else:
        quotas, reservations = CoordinatedQuotaLedger(coordination), CoordinatedReservations(coordination, kv)
    return Backends(kv=kv, jobs=jobs, quotas=quotas, reservations=reservations, usage=usage,
                    coordination=coordination, name="cloudflare")  # fmt: skip


def settings_from_env(env: Any) -> Settings:
    """Settings from the Worker's `SCRAPEQ_*` vars (strings); absent ones keep their defaults."""
    from shared.settings import PREFIX, Settings  # pydantic: kept out of this module's import (see docstring)

    values: dict[str, Any] = {}
    for field in Settings.model_fields:
        name = PREFIX + field.upper()
        value = to_py(getattr(env, name, None))
        if value is not None:
            values[name] = value
    return Settings.from_mapping(values)


# --- the Rate Limiting binding


#: The rate limiter bindings of the producer Worker (`[[ratelimits]]` in wrangler.toml), by the limit they serve.
RATE_LIMIT_BINDINGS = {"ip": "RATE_LIMIT_IP", "key": "RATE_LIMIT_KEY", "tenant": "RATE_LIMIT_TENANT"}
#: Their `simple.period`: Cloudflare takes 10 or 60 s only.
RATE_LIMIT_PERIOD_S = 10


class CloudflareRateLimiter:
    """`RateLimiter` over a Workers Rate Limiting binding: `limit({key})` → `{success}`, counted per Cloudflare
    location over fixed windows of `period_s`, with the limit configured on the binding (not the policy's).

    It fails open: a limiter that cannot be reached must not take the API down with it.
    """

    def __init__(self, binding: Any, *, period_s: int = RATE_LIMIT_PERIOD_S) -> None:
        self._binding = binding
        self.period_s = period_s

    async def take(self, subject: str, policy: RatePolicy) -> RateDecision:
        try:
            outcome = to_py(await _call("rate limit", self._binding.limit, to_js_object({"key": subject})))
        except StorageError:
            log.warning("rate limiter %s unreachable; letting the request through", policy.name, exc_info=True)
            return RateDecision(policy, allowed=True, remaining=None, reset_s=0)
        success = outcome.get("success") if isinstance(outcome, dict) else getattr(outcome, "success", None)
        if success is False:
            # A fixed window: a retry after one period certainly falls into a fresh one.
            return RateDecision(policy, allowed=False, remaining=0, reset_s=self.period_s)
        return RateDecision(policy, allowed=True, remaining=None, reset_s=0)


def cloudflare_rate_limiters(env: Any) -> dict[str, CloudflareRateLimiter]:
    """The Worker's rate limiter bindings that exist, by limit name (`ip`, `key`, `tenant`)."""
    found = {}
    for name, binding_name in RATE_LIMIT_BINDINGS.items():
        binding = getattr(env, binding_name, None)
        if not is_null(binding):
            found[name] = CloudflareRateLimiter(binding)
    return found


# --- the queue consumer


async def dispatch_batch(batch: Any, handle: Handle) -> None:
    """Run `handle` on every message of a queue batch at once, then ack or retry each message by itself.

    Never raises for one message's failure: a batch handler that throws makes Cloudflare retry every message
    not yet acked, so one poison message would re-run its siblings' work.
    """
    queue = str(to_py(batch.queue))
    await asyncio.gather(*(_dispatch_one(queue, raw, handle) for raw in batch.messages))


async def _dispatch_one(queue: str, raw: Any, handle: Handle) -> None:
    extra: dict[str, Any] = {"queue": queue}
    attempts = 1
    try:
        message_id = extra["message_id"] = str(to_py(raw.id))
        attempts = extra["attempts"] = int(to_py(raw.attempts))
        body = to_py(raw.body)
        if not isinstance(body, dict):
            log.error("dropping a message whose body is %s, not an object", type(body).__name__, extra=extra)
            _settle(raw, None, extra)
            return
        delay_s = await handle(queue, Message(id=message_id, body=dict(body), attempts=attempts))
    except Exception:
        log.exception("message failed (attempt %d)", attempts, extra=extra)
        delay_s = backoff_s(attempts, base_s=ERROR_RETRY_BASE_S, max_s=ERROR_RETRY_MAX_S)
    _settle(raw, delay_s, extra)


def _settle(raw: Any, delay_s: float | None, extra: dict[str, Any]) -> None:
    try:
        if delay_s is None:
            raw.ack()
        else:
            # One options object, built like every other: JS reads `retry(options)`, the SDK wrapper passes
            # a JsProxy through, and a Python fake sees a dict.
            raw.retry(to_js_object({"delaySeconds": retry_delay_s(delay_s)}))
    except Exception:  # the other messages of the batch must still be settled
        log.exception("could not %s message", "ack" if delay_s is None else "retry", extra=extra)


def retry_delay_s(seconds: float) -> int:
    """A retry delay as Cloudflare takes it: whole seconds, rounded up, within 0..43200."""
    if not seconds > 0:  # negative, zero or NaN: at once
        return 0
    if seconds >= MAX_DELAY_S:
        return MAX_DELAY_S
    return math.ceil(seconds)
