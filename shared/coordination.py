"""The coordination port (host slots, quota places, first-writer-wins keys) and its one pure core, run inside a
transaction by each implementation: SQLite locally, a Durable Object on Cloudflare; standard library only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.stores.quotas import CONCURRENT_TASKS, MAX_MARKER_CHECKS, PAGES_PER_DAY, Refusal, day_start_ms

#: A caller told to wait for a free slot (not for a spacing or a pause) asks again after this long at most.
SLOT_POLL_S = 0.1
#: Until some sharer has told a host's record its delay (from robots.txt), its starts are at least this far apart:
#: the first requests to a host (each sharer's robots.txt) are made before anyone knows its Crawl-delay.
FIRST_CONTACT_DELAY_S = 1.0
#: A delay a sharer reported is the host's for this long (robots.txt is cached for an hour), refreshed by each
#: request that reports it.
DELAY_MEMORY_S = 3600.0
#: Operations of the port, by name (the Durable Object's `call` dispatches on them).
OPS = ("acquire_host", "release_host", "reserve_quota", "release_quota", "swap_key")


@dataclass(frozen=True)
class HostTurn:
    """The answer to `acquire_host`: the slot (`granted`), or how long to wait before asking again."""

    granted: bool
    wait_s: float = 0.0


@dataclass(frozen=True)
class KeySwap:
    """The answer to `swap_key`: whether the key now holds the new value (or is gone), and what it held before."""

    done: bool
    held: str | None


@dataclass(frozen=True)
class QuotaLimits:
    """A tenant's limits as a reservation checks them (0: none)."""

    max_concurrent_tasks: int
    max_pages_per_day: int


class Coordinator(Protocol):
    """What every consumer and producer instance must agree on, whichever process or isolate it runs in."""

    async def acquire_host(
        self, host: str, holder: str, *, max_concurrency: int, delay_s: float | None, lease_s: float
    ) -> HostTurn:
        """A slot of `host` for `holder` (unique per request) if fewer than `max_concurrency` are held and the
        host's next start is due; the next start then moves the host's delay later. `delay_s` is the delay the
        caller knows (robots.txt's `Crawl-delay`, at least its floor), which becomes the host's; None: it does
        not know it yet, and the delay another sharer reported applies (else `FIRST_CONTACT_DELAY_S`). A slot
        not released within `lease_s` is free again (its holder died)."""
        ...

    async def release_host(self, host: str, holder: str | None, *, pause_s: float = 0.0) -> None:
        """Give `holder`'s slot back (None: none held); `pause_s` > 0 also keeps every start off the host for that
        long (a 429 or 503 answer). Idempotent."""
        ...

    async def reserve_quota(
        self, tenant_id: str, task_id: str, *, pages: int, limits: QuotaLimits, now: datetime
    ) -> Refusal | None:
        """Count the task against its tenant's concurrent tasks and pages of the day, or say which it would
        exceed (a concurrency refusal names the oldest holders, for the caller to free those that ended)."""
        ...

    async def release_quota(self, tenant_id: str, task_id: str, *, used_pages: int | None = None) -> None:
        """The task no longer holds a place in its tenant's concurrency (idempotent); with `used_pages`, the rest
        of its reserved pages go back to the day they were reserved on, if it is still that day."""
        ...

    async def swap_key(self, key: str, *, expected: str | None, value: str | None, ttl_s: float) -> KeySwap:
        """Compare and set: if `key` holds `expected` (None: absent or expired), make it hold `value` for
        `ttl_s` (None: delete it)."""
        ...


class State(Protocol):
    """The synchronous storage the core runs on, inside one transaction of its implementation."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def items(self, prefix: str) -> Iterator[tuple[str, str]]: ...


# --- the core: one function per operation, each a read-modify-write of `state` at `now` (epoch seconds)


def acquire_host(
    state: State, now: float, host: str, holder: str, max_concurrency: int, delay_s: float | None, lease_s: float
) -> HostTurn:
    key = f"host:{host}"
    record = _load(state, key, {"next": 0.0, "leases": {}})
    if delay_s is not None:  # what this sharer learned from robots.txt is the host's from now on
        record["delay"], record["known_until"] = max(0.0, delay_s), now + DELAY_MEMORY_S
    known = record.get("known_until", 0.0) > now
    delay = record.get("delay", 0.0) if known else FIRST_CONTACT_DELAY_S
    leases = {h: until for h, until in record["leases"].items() if until > now}
    if holder in leases:
        return HostTurn(True)  # asked again after an answer was lost: it holds the slot already
    if len(leases) >= max(1, max_concurrency):
        return HostTurn(False, max(record["next"] - now, min(SLOT_POLL_S, min(leases.values()) - now)))
    if record["next"] > now:
        return HostTurn(False, record["next"] - now)
    leases[holder] = now + lease_s
    state.put(key, _dump({**record, "next": now + delay, "leases": leases}))
    return HostTurn(True)


def release_host(state: State, now: float, host: str, holder: str | None, pause_s: float) -> None:
    key = f"host:{host}"
    record = _load(state, key, {"next": 0.0, "leases": {}})
    leases = {h: until for h, until in record["leases"].items() if until > now and h != holder}
    next_start = max(record["next"], now + pause_s) if pause_s > 0 else record["next"]
    if not leases and next_start <= now and record.get("known_until", 0.0) <= now:
        state.delete(key)  # nothing to remember
    else:
        state.put(key, _dump({**record, "next": next_start, "leases": leases}))


def reserve_quota(
    state: State, now: float, tenant_id: str, task_id: str, pages: int, limits: QuotaLimits
) -> Refusal | None:
    key = f"quota:{tenant_id}"
    usage = _load(state, key, {"active": 0, "day_ms": 0, "day_pages": 0})
    day = day_start_ms(datetime.fromtimestamp(now, UTC))
    used = usage["day_pages"] if usage["day_ms"] == day else 0
    if limits.max_pages_per_day and used + pages > limits.max_pages_per_day:
        return Refusal(PAGES_PER_DAY, used)
    active = int(usage["active"])
    if limits.max_concurrent_tasks and active >= limits.max_concurrent_tasks:
        markers = sorted(state.items(f"active:{tenant_id}:"), key=lambda item: json.loads(item[1])["at"])
        holders = tuple(name.rsplit(":", 1)[1] for name, _ in markers[:MAX_MARKER_CHECKS])
        return Refusal(CONCURRENT_TASKS, active, holders=holders)
    marker = f"active:{tenant_id}:{task_id}"
    if state.get(marker) is None:
        state.put(marker, _dump({"at": now, "pages": pages}))
        active += 1
    state.put(key, _dump({"active": active, "day_ms": day, "day_pages": used + pages}))
    return None


def release_quota(state: State, tenant_id: str, task_id: str, used_pages: int | None) -> None:
    marker = f"active:{tenant_id}:{task_id}"
    held = _load(state, marker, None)
    if held is None:
        return  # released before (or never reserved): nothing to give back twice
    state.delete(marker)
    key = f"quota:{tenant_id}"
    usage = _load(state, key, {"active": 0, "day_ms": 0, "day_pages": 0})
    usage["active"] = max(0, int(usage["active"]) - 1)
    unused = 0 if used_pages is None else max(0, int(held["pages"]) - used_pages)
    if unused and usage["day_ms"] == day_start_ms(datetime.fromtimestamp(float(held["at"]), UTC)):
        usage["day_pages"] = max(0, int(usage["day_pages"]) - unused)
    state.put(key, _dump(usage))


def swap_key(state: State, now: float, key: str, expected: str | None, value: str | None, ttl_s: float) -> KeySwap:
    name = f"key:{key}"
    record = _load(state, name, None)
    held = record["value"] if record is not None and record["until"] > now else None
    if held != expected:
        return KeySwap(False, held)
    if value is None:
        state.delete(name)
    else:
        state.put(name, _dump({"value": value, "until": now + ttl_s}))
    return KeySwap(True, held)


def apply(state: State, now: float, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """One operation by name with JSON arguments, answered as JSON: how a Durable Object's `call` runs them."""
    if op == "acquire_host":
        delay = args.get("delay_s")
        turn = acquire_host(state, now, args["host"], args["holder"], int(args["max_concurrency"]),
                            None if delay is None else float(delay), float(args["lease_s"]))  # fmt: skip
        return {"granted": turn.granted, "wait_s": turn.wait_s}
    if op == "release_host":
        release_host(state, now, args["host"], args.get("holder"), float(args.get("pause_s") or 0.0))
        return {}
    if op == "reserve_quota":
        limits = QuotaLimits(int(args["max_concurrent_tasks"]), int(args["max_pages_per_day"]))
        refusal = reserve_quota(
            state, float(args["now"]), args["tenant_id"], args["task_id"], int(args["pages"]), limits
        )
        return {"refusal": None if refusal is None else [refusal.quota, refusal.used, list(refusal.holders)]}
    if op == "release_quota":
        used = args.get("used_pages")
        release_quota(state, args["tenant_id"], args["task_id"], None if used is None else int(used))
        return {}
    if op == "swap_key":
        swap = swap_key(state, now, args["key"], args.get("expected"), args.get("value"), float(args["ttl_s"]))
        return {"done": swap.done, "held": swap.held}
    raise ValueError(f"unknown coordination operation {op!r}")


def _load(state: State, key: str, default: Any) -> Any:
    raw = state.get(key)
    return default if raw is None else json.loads(raw)


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# --- the port over any runner of the core


class Runner(Protocol):
    """Runs one core operation in one transaction of the object (or database) `scope` names."""

    async def run(self, scope: str, op: str, args: dict[str, Any]) -> dict[str, Any]: ...


def scope_of_key(key: str) -> str:
    """The object a first-writer-wins key lives in: its tenant's (`tenant:{t}:...`), else a shared one."""
    parts = key.split(":", 2)
    return f"tenant:{parts[1]}" if len(parts) == 3 and parts[0] == "tenant" else "keys"


class RunnerCoordinator:
    """`Coordinator` over a `Runner`: one object per host (its slots and next start), one per tenant (its quota
    places and its keys). Every method is one round trip to one object."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def acquire_host(
        self, host: str, holder: str, *, max_concurrency: int, delay_s: float | None, lease_s: float
    ) -> HostTurn:
        args = {"host": host, "holder": holder, "max_concurrency": max_concurrency, "delay_s": delay_s,
                "lease_s": lease_s}  # fmt: skip
        answer = await self.runner.run(f"host:{host}", "acquire_host", args)
        return HostTurn(bool(answer["granted"]), float(answer["wait_s"]))

    async def release_host(self, host: str, holder: str | None, *, pause_s: float = 0.0) -> None:
        await self.runner.run(f"host:{host}", "release_host", {"host": host, "holder": holder, "pause_s": pause_s})

    async def reserve_quota(
        self, tenant_id: str, task_id: str, *, pages: int, limits: QuotaLimits, now: datetime
    ) -> Refusal | None:
        args = {
            "tenant_id": tenant_id,
            "task_id": task_id,
            "pages": pages,
            "now": now.timestamp(),
            "max_concurrent_tasks": limits.max_concurrent_tasks,
            "max_pages_per_day": limits.max_pages_per_day,
        }
        refusal = (await self.runner.run(f"tenant:{tenant_id}", "reserve_quota", args))["refusal"]
        return None if refusal is None else Refusal(str(refusal[0]), int(refusal[1]), tuple(refusal[2]))

    async def release_quota(self, tenant_id: str, task_id: str, *, used_pages: int | None = None) -> None:
        args = {"tenant_id": tenant_id, "task_id": task_id, "used_pages": used_pages}
        await self.runner.run(f"tenant:{tenant_id}", "release_quota", args)

    async def swap_key(self, key: str, *, expected: str | None, value: str | None, ttl_s: float) -> KeySwap:
        args = {"key": key, "expected": expected, "value": value, "ttl_s": ttl_s}
        answer = await self.runner.run(scope_of_key(key), "swap_key", args)
        return KeySwap(bool(answer["done"]), answer["held"])


class MemoryState:
    """`State` in a dict: the memory backend's, and a Durable Object stand-in's in tests."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def put(self, key: str, value: str) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def items(self, prefix: str) -> Iterator[tuple[str, str]]:
        return iter([(k, v) for k, v in self.values.items() if k.startswith(prefix)])


class MemoryRunner:
    """The core on one `MemoryState` of this process: exact, as nothing awaits inside an operation."""

    def __init__(self, clock: Any) -> None:
        self.state = MemoryState()
        self.clock = clock

    async def run(self, scope: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
        return apply(self.state, self.clock(), op, args)
