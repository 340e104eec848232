"""A child process for `test_sqlite_durability`: drives the SQLite backends and reports each step on stdout.

Usage: python sqlite_child.py {send|put|wait} DB COUNT  |  python sqlite_child.py consume DB BATCH
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from shared.backends.base import Backends
from shared.backends.factory import open_sqlite_backends


async def send(backends: Backends, count: int) -> None:
    for n in range(count):
        await backends.jobs.send({"n": n})
        print(n, flush=True)  # only once send() has returned


async def put(backends: Backends, count: int) -> None:
    for n in range(count):
        await backends.kv.put(f"k:{n:07d}", str(n), metadata={"n": n})
        print(n, flush=True)


async def consume(backends: Backends, batch: int) -> None:
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # start together with the other consumer
    while messages := await backends.jobs.receive(max_messages=batch):
        for message in messages:
            print(message.body["n"], flush=True)
            await backends.jobs.ack(message)


async def wait(backends: Backends, count: int) -> None:
    """Wait for `count` messages one at a time, each with a long wait: reports when each arrived."""
    await backends.jobs.receive(max_messages=1, wait_s=0.01)  # starts listening for other processes
    print("ready", flush=True)
    for _ in range(count):
        [message] = await backends.jobs.receive(max_messages=1, wait_s=30)
        print(f"{message.body['n']} {time.time():.6f}", flush=True)
        await backends.jobs.ack(message)


async def main(mode: str, path: Path, number: int) -> None:
    backends = open_sqlite_backends(path, visibility_timeout_s=60, max_retries=3)
    try:
        await {"send": send, "put": put, "consume": consume, "wait": wait}[mode](backends, number)
    finally:
        await backends.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))
