"""The Python half of the Miniflare harness, run inside Pyodide (never on CPython): the RPC ops over the Cloudflare
adapters, and the scenarios too involved for one op (a queue batch, a page fetch through `Fetcher`).

`harness.mjs` registers the JS module `scrapeq_harness` (a Worker env of Miniflare's KV namespace and queue
producer per test, a factory of JS queue batches, Node's `fetch`) and calls `dispatch` with each request line.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import sys
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import scrapeq_harness as harness  # type: ignore[import-not-found]  # registered by harness.mjs

from shared.backends.base import Backends
from shared.backends.cloudflare import CloudflareQueue, CloudflareRateLimiter, cloudflare_backends, dispatch_batch
from shared.coordination import RunnerCoordinator
from shared.ports import KVWrite, Message
from shared.ratelimit import RatePolicy
from tests.cloudflare.wire import decode, dumps, encode

Op = Callable[[dict[str, Any]], Awaitable[Any]]

backends: Backends[CloudflareQueue] | None = None
rate_limiter: CloudflareRateLimiter | None = None


def _backends() -> Backends[CloudflareQueue]:
    if backends is None:
        raise RuntimeError("call `reset` first")
    return backends


async def dispatch(line: str) -> str:
    """One request line → one reply line; errors travel as their type name and message."""
    request_id = None
    try:
        request = json.loads(line)
        request_id = request.get("id")
        op = OPS.get(request["op"])
        if op is None:
            raise LookupError(f"unknown op {request['op']!r}")
        result = await op(decode(request.get("args") or {}))
        return dumps({"id": request_id, "ok": True, "result": encode(result)})
    except Exception as exc:
        return dumps({"id": request_id, "ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}})


# --- one adapter call each


async def kv_get(args: dict[str, Any]) -> Any:
    return await _backends().kv.get(args["key"])


async def kv_put(args: dict[str, Any]) -> Any:
    await _backends().kv.put(args["key"], args["value"], ttl_s=args.get("ttl_s"), metadata=args.get("metadata"))


async def kv_put_many(args: dict[str, Any]) -> Any:
    await _backends().kv.put_many([KVWrite(**write) for write in args["writes"]])


async def coordination_run(args: dict[str, Any]) -> Any:
    """One operation of the port through `DurableRunner`: the stub's RPC, the object, the core, its storage."""
    coordination = _backends().coordination
    assert isinstance(coordination, RunnerCoordinator)
    return await coordination.runner.run(args["scope"], args["op"], args["args"])


async def kv_delete(args: dict[str, Any]) -> Any:
    await _backends().kv.delete(args["key"])


async def kv_scrub(args: dict[str, Any]) -> Any:
    await _backends().kv.scrub()


async def kv_list(args: dict[str, Any]) -> Any:
    page = await _backends().kv.list(**args)
    keys = [{"name": k.name, "expiration": k.expiration, "metadata": k.metadata} for k in page.keys]
    return {"keys": keys, "list_complete": page.list_complete, "cursor": page.cursor}


async def kv_ping(args: dict[str, Any]) -> Any:
    await _backends().kv.ping()


async def queue_send(args: dict[str, Any]) -> Any:
    await _backends().jobs.send(args["body"], delay_s=args.get("delay_s", 0))


async def received(args: dict[str, Any]) -> Any:
    """What Miniflare delivered to the JS consumer so far: body, attempts, receive time (epoch ms)."""
    return json.loads(await harness.received())


async def rate_limit_take(args: dict[str, Any]) -> Any:
    """One request of `subject` through the Rate Limiting binding's adapter."""
    if rate_limiter is None:
        raise RuntimeError("call `reset` first")
    policy = RatePolicy(args.get("policy", "key"), rate_per_s=1, burst=3)
    decision = await rate_limiter.take(args["subject"], policy)
    return {"allowed": decision.allowed, "remaining": decision.remaining, "reset_s": decision.reset_s}


async def reset(args: dict[str, Any]) -> Any:
    """The adapters over a Worker env with an empty KV namespace, and no deliveries: each test starts anew."""
    global backends, rate_limiter
    env = await harness.freshEnv()
    backends = cloudflare_backends(env)
    rate_limiter = CloudflareRateLimiter(env.RATE_LIMIT, period_s=60)


async def info(args: dict[str, Any]) -> Any:
    return {"python": sys.version, "platform": sys.platform}


async def run(args: dict[str, Any]) -> Any:
    return await SCENARIOS[args["scenario"]](args.get("args") or {})


# --- scenarios


async def scenario_batch(args: dict[str, Any]) -> Any:
    """`dispatch_batch` over a JS batch whose messages record their ack/retry calls; each message's
    `decision` says what the handler does: "ack", a number of seconds to retry after, or "raise"."""
    specs = args["messages"]
    decisions = {spec["id"]: spec["decision"] for spec in specs}
    batch = harness.makeBatch(args["queue"], json.dumps([{k: s[k] for k in ("id", "body", "attempts")} for s in specs]))
    seen: list[dict[str, Any]] = []
    active = [0, 0]  # in flight now, most at once

    async def handle(queue: str, message: Message) -> float | None:
        seen.append({"queue": queue, "id": message.id, "attempts": message.attempts, "body": message.body})
        seen[-1]["types"] = {"attempts": type(message.attempts).__name__, "body": type_tree(message.body)}
        active[0] += 1
        active[1] = max(active)
        await asyncio.sleep(0.05)  # a sequential dispatch would never have two in flight
        active[0] -= 1
        decision = decisions[message.id]
        if decision == "raise":
            raise RuntimeError(f"scripted failure of {message.id}")
        return None if decision == "ack" else float(decision)

    await dispatch_batch(batch, handle)
    calls = json.loads(batch.callsJson())
    return {"seen": seen, "calls": calls, "max_in_flight": active[1]}


def type_tree(value: Any) -> Any:
    """The Python type names inside a value, to prove no JsProxy or jsnull reached the handler."""
    if isinstance(value, dict):
        return {key: type_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [type_tree(item) for item in value]
    return type(value).__name__


async def scenario_fetch(args: dict[str, Any]) -> Any:
    """One page through `Fetcher` over `JsFetchTransport` and Node's fetch, as the consumer Worker wires it."""
    import httpx

    from consumer.fetch.fetcher import Fetcher
    from consumer.fetch.js_transport import JsFetchTransport
    from shared.errors import FetchError
    from shared.guard import AddressPolicy

    fetched: list[str] = []

    async def loopback_fetch(url: str, init: Any) -> Any:
        fetched.append(url)
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
            # A safety net, not the guard under test: this harness never sends traffic off the machine.
            raise RuntimeError(f"the harness only fetches loopback URLs, not {url}")
        return await harness.fetch(url, init)

    policy = AddressPolicy([ipaddress.ip_network(net) for net in args.get("allow", [])])
    settings = SimpleNamespace(
        fetch_total_timeout_s=args.get("total_timeout_s", 10.0),
        fetch_max_redirects=args.get("max_redirects", 5),
        fetch_max_body_bytes=args.get("max_body_bytes", 1024 * 1024),
    )
    transport = JsFetchTransport(loopback_fetch, policy=policy)
    headers = {"User-Agent": args.get("user_agent", "scrapeq-test")}
    started = time.monotonic()
    async with httpx.AsyncClient(transport=transport, headers=headers, trust_env=False) as client:
        fetcher = Fetcher(client, settings=settings)  # type: ignore[arg-type]  # the fetch_* fields suffice
        try:
            result = await fetcher.fetch(args["url"])
        except FetchError as exc:
            return {"error": exc.code, "message": str(exc), "fetched": fetched, "elapsed_s": time.monotonic() - started}
    return {
        "final_url": result.final_url,
        "status_code": result.status_code,
        "redirects": result.redirects,
        "content_type": result.content_type,
        "headers": result.headers,
        "body_b64": base64.b64encode(result.body).decode("ascii"),
        "fetched": fetched,
        "elapsed_s": time.monotonic() - started,
    }


async def scenario_usage(args: dict[str, Any]) -> Any:
    """The Worker's own usage ledger (`cloudflare_backends`) and a second writer, racing `adds` adds each in
    Pyodide over Miniflare's KV; what a third ledger reads back, and how many KV writes it took."""
    from datetime import UTC, datetime, timedelta

    from shared.stores.usage_shards import KvUsageLedger

    at = datetime.fromisoformat(args["hour"]).replace(tzinfo=UTC)
    writers = [_backends().usage, KvUsageLedger(_backends().kv)]
    counts = {"pages_stored": 1, "error:timeout": 1}
    await asyncio.gather(*(writers[n % 2].add("tn_pyodide", counts, at=at) for n in range(2 * args["adds"])))
    hours = await KvUsageLedger(_backends().kv).hours("tn_pyodide", at, at + timedelta(hours=1))
    listed = await _backends().kv.list(prefix="tenant:tn_pyodide:usage:")
    return {"hours": {hour.isoformat(): c for hour, c in hours.items()}, "keys": len(listed.keys)}


OPS: dict[str, Op] = {
    "kv.get": kv_get,
    "kv.put": kv_put,
    "kv.put_many": kv_put_many,
    "coordination.run": coordination_run,
    "kv.delete": kv_delete,
    "kv.scrub": kv_scrub,
    "kv.list": kv_list,
    "kv.ping": kv_ping,
    "queue.send": queue_send,
    "ratelimit.take": rate_limit_take,
    "received": received,
    "reset": reset,
    "info": info,
    "run": run,
}
SCENARIOS: dict[str, Op] = {"batch": scenario_batch, "fetch": scenario_fetch, "usage": scenario_usage}
