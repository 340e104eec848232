"""The CPython side of the Miniflare harness: the Node process (`harness.mjs`, one per test session) and the
`RemoteKV` / `RemoteQueue` pair that implement the ports by calling the Cloudflare adapters inside it.

Requests are pipelined: a reader thread hands each reply to the future of its id, so concurrent callers (and
the function-scoped event loops of pytest-asyncio) share one process.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import itertools
import json
import shutil
import subprocess
import sysconfig
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from shared.backends.base import Backends
from shared.coordination import RunnerCoordinator
from shared.errors import StorageError
from shared.ports import MAX_LIST_LIMIT, JsonObject, KeyInfo, KVWrite, ListResult
from shared.stores.coordinated import CoordinatedQuotaLedger, CoordinatedReservations
from shared.stores.quotas import KvQuotaLedger
from shared.stores.reservations import KvReservations
from shared.stores.usage_shards import KvUsageLedger
from tests.cloudflare.wire import decode, dumps, encode

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tests" / "cloudflare" / "harness.mjs"
NODE_MODULES = ROOT / "node_modules"
STARTUP_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 30.0
#: Exceptions re-raised as themselves on this side; any other type arrives as `HarnessError`.
RAISED_AS_IS: dict[str, type[Exception]] = {
    name: getattr(builtins, name) for name in ("ValueError", "TypeError", "KeyError", "LookupError", "RuntimeError")
} | {"StorageError": StorageError}


class HarnessError(Exception):
    """The harness failed, or Python inside it raised an exception type not in `RAISED_AS_IS`."""


def missing_requirement() -> str | None:
    """Why the harness cannot start here (None: it can)."""
    if shutil.which("node") is None:
        return "node is not installed"
    for package in ("miniflare", "pyodide"):
        if not (NODE_MODULES / package / "package.json").exists():
            return f"node_modules/{package} is missing: run `make test` (or `npm install`) first"
    return None


class Harness:
    """One `node harness.mjs` process: Miniflare's KV and queue, and Pyodide running the adapters over them."""

    def __init__(self, process: subprocess.Popen[str], log_path: Path) -> None:
        self._process = process
        self.log_path = log_path
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._waiting: dict[int, concurrent.futures.Future[Any]] = {}
        self._ready: concurrent.futures.Future[JsonObject] = concurrent.futures.Future()
        self._reader = threading.Thread(target=self._read_replies, name="harness-replies", daemon=True)
        self._reader.start()
        self.info = self._wait_ready()

    @classmethod
    def start(cls, log_path: Path) -> Harness:
        site_packages = sysconfig.get_paths()["purelib"]
        log = log_path.open("w", encoding="utf-8")
        process = subprocess.Popen(
            ["node", str(HARNESS), site_packages],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        log.close()  # the child holds its own descriptor
        return cls(process, log_path)

    def _wait_ready(self) -> JsonObject:
        started = time.monotonic()
        try:
            info = self._ready.result(timeout=STARTUP_TIMEOUT_S)
        except Exception as exc:
            self.stop()
            raise HarnessError(f"the harness did not start: {exc}\n{self.log_tail()}") from exc
        info["startup_s"] = time.monotonic() - started
        return info

    def _read_replies(self) -> None:
        stdout: IO[str] | None = self._process.stdout
        assert stdout is not None
        for line in stdout:
            reply = json.loads(line)
            if reply.get("ready"):
                self._ready.set_result(reply)
                continue
            future = self._waiting.pop(reply["id"], None)
            if future is not None and not future.done():
                future.set_result(reply)
        # The process is gone: nothing waiting will ever be answered.
        error = HarnessError(f"the harness exited with {self._process.wait()}\n{self.log_tail()}")
        if not self._ready.done():
            self._ready.set_exception(error)
        for future in list(self._waiting.values()):
            if not future.done():
                future.set_exception(error)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8").splitlines()[-lines:])
        except OSError:
            return ""

    def submit(self, op: str, args: JsonObject | None = None) -> concurrent.futures.Future[Any]:
        """Send one request; the future gets its result, or the exception raised inside the harness."""
        request_id = next(self._ids)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._waiting[request_id] = future
        line = dumps({"id": request_id, "op": op, "args": encode(args or {})})
        stdin = self._process.stdin
        assert stdin is not None
        with self._write_lock:
            stdin.write(line + "\n")
            stdin.flush()
        return future

    async def call(self, op: str, args: JsonObject | None = None, *, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        reply = await asyncio.wait_for(asyncio.wrap_future(self.submit(op, args)), timeout_s)
        return _result(reply)

    def call_sync(self, op: str, args: JsonObject | None = None, *, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        return _result(self.submit(op, args).result(timeout=timeout_s))

    def stop(self) -> None:
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()  # the harness disposes of Miniflare and exits
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=5)
        if self._process.stdout is not None:
            self._process.stdout.close()


def _result(reply: JsonObject) -> Any:
    if reply["ok"]:
        return decode(reply["result"])
    error = reply["error"]
    raise RAISED_AS_IS.get(error["type"], HarnessError)(f"{error['type']}: {error['message']}")


class RemoteKV:
    """`KeyValueStore` answered by `CloudflareKV` over Miniflare's KV namespace, inside the harness."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    async def get(self, key: str) -> str | None:
        value: str | None = await self.harness.call("kv.get", {"key": key})
        return value

    async def put(
        self, key: str, value: str, *, ttl_s: float | None = None, metadata: JsonObject | None = None
    ) -> None:
        await self.harness.call("kv.put", {"key": key, "value": value, "ttl_s": ttl_s, "metadata": metadata})

    async def put_many(self, writes: Sequence[KVWrite]) -> None:
        items = [{"key": w.key, "value": w.value, "ttl_s": w.ttl_s, "metadata": w.metadata} for w in writes]
        await self.harness.call("kv.put_many", {"writes": items})

    async def delete(self, key: str) -> None:
        await self.harness.call("kv.delete", {"key": key})

    async def scrub(self) -> None:
        await self.harness.call("kv.scrub")

    async def list(self, *, prefix: str = "", limit: int = MAX_LIST_LIMIT, cursor: str | None = None) -> ListResult:
        page = await self.harness.call("kv.list", {"prefix": prefix, "limit": limit, "cursor": cursor})
        keys = [KeyInfo(k["name"], k["expiration"], k["metadata"]) for k in page["keys"]]
        return ListResult(keys, list_complete=page["list_complete"], cursor=page["cursor"])

    async def ping(self) -> None:
        await self.harness.call("kv.ping")

    async def aclose(self) -> None:
        """The harness outlives every test."""


class RemoteQueue:
    """`JobQueue` answered by `CloudflareQueue` over Miniflare's queue producer, inside the harness."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    async def send(self, body: JsonObject, *, delay_s: float = 0) -> None:
        await self.harness.call("queue.send", {"body": body, "delay_s": delay_s})

    async def received(self) -> list[JsonObject]:
        """What Miniflare delivered to the harness's JS consumer since the last reset, oldest first."""
        records: list[JsonObject] = await self.harness.call("received")
        return records

    async def ping(self) -> None:
        """As `CloudflareQueue.ping`: a producer binding has nothing to probe."""

    async def aclose(self) -> None:
        """The harness outlives every test."""


class RemoteRunner:
    """The coordination port's `Runner` answered by `DurableRunner` inside the harness: each operation goes
    through the stub's RPC to the stand-in Durable Object, which runs the core on its storage (harness.mjs)."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    async def run(self, scope: str, op: str, args: JsonObject) -> JsonObject:
        answer: JsonObject = await self.harness.call("coordination.run", {"scope": scope, "op": op, "args": args})
        return answer


def remote_backends(harness: Harness, *, coordination: bool = True) -> Backends[RemoteQueue]:
    """The Cloudflare adapters in Pyodide; with `coordination` (the default, as with the binding in both wrangler
    configs) quotas and idempotency keys go through the Durable Object code, else over KV alone."""
    kv = RemoteKV(harness)
    jobs = RemoteQueue(harness)
    usage = KvUsageLedger(kv)
    if not coordination:
        quotas, reservations = KvQuotaLedger(kv), KvReservations(kv)
        return Backends(kv=kv, jobs=jobs, quotas=quotas, reservations=reservations, usage=usage, name="cloudflare")
    coordinator = RunnerCoordinator(RemoteRunner(harness))
    return Backends(
        kv=kv,
        jobs=jobs,
        quotas=CoordinatedQuotaLedger(coordinator),
        reservations=CoordinatedReservations(coordinator, kv),
        usage=usage,
        coordination=coordinator,
        name="cloudflare",
    )
