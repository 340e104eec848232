"""The coordination port on Cloudflare: the Durable Object's body (the core over its storage) and the Workers' client
of the namespace binding `COORDINATION`; standard library only (it runs in Pyodide)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from shared.backends.jsvalues import is_js_error, is_null, to_js_object
from shared.coordination import RunnerCoordinator, apply
from shared.errors import StorageError

#: The namespace binding in both wrangler configs (the class is exported by the consumer Worker).
BINDING = "COORDINATION"


class DurableState:
    """`State` over a SQLite-backed Durable Object's synchronous KV API (`ctx.storage.kv`): no await inside an
    operation, so each runs whole before the object takes its next call, and its writes are durable before
    the answer leaves the object (the runtime's output gate)."""

    def __init__(self, storage: Any) -> None:
        self.kv = storage.kv

    def get(self, key: str) -> str | None:
        value = self.kv.get(key)
        return None if value is None or is_null(value) else str(value)

    def put(self, key: str, value: str) -> None:
        self.kv.put(key, value)

    def delete(self, key: str) -> None:
        self.kv.delete(key)

    def items(self, prefix: str) -> Iterator[tuple[str, str]]:
        for entry in self.kv.list(to_js_object({"prefix": prefix})):
            yield str(entry[0]), str(entry[1])


class CoordinationObject:
    """What the `Coordination` Durable Object does: `call(op, payload)` runs one operation of the core on this
    object's storage; payload and answer are JSON text (strings cross the RPC boundary unchanged)."""

    def __init__(self, storage: Any) -> None:
        self.state = DurableState(storage)

    async def call(self, op: str, payload: str) -> str:
        return json.dumps(apply(self.state, time.time(), str(op), json.loads(str(payload))), separators=(",", ":"))


class DurableRunner:
    """Runs each operation on the object named by its scope (`host:{host}`, `tenant:{id}`), by RPC to `call`."""

    def __init__(self, namespace: Any) -> None:
        self.namespace = namespace

    async def run(self, scope: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
        stub = self.namespace.get(self.namespace.idFromName(scope))
        try:
            answer = await stub.call(op, json.dumps(args, separators=(",", ":")))
        except Exception as exc:
            if not is_js_error(exc):
                raise
            raise StorageError(f"coordination {op} on {scope} failed: {exc}") from exc
        result: dict[str, Any] = json.loads(str(answer))
        return result


def durable_coordinator(env: Any) -> RunnerCoordinator | None:
    """The coordinator of a Worker's environment, or None without the binding (then KV's bounds apply)."""
    namespace = getattr(env, BINDING, None)
    if namespace is None or is_null(namespace):
        return None
    return RunnerCoordinator(DurableRunner(namespace))
