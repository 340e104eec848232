"""A child process for `test_sqlite_durability`: drives the SQLite backends and reports each step on stdout.

Usage: python sqlite_child.py {send|put} DB COUNT  |  python sqlite_child.py consume DB BATCH
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from shared.backends import Backends, open_sqlite_backends


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


async def main(mode: str, path: Path, number: int) -> None:
    backends = open_sqlite_backends(path, visibility_timeout_s=60, max_retries=3)
    try:
        await {"send": send, "put": put, "consume": consume}[mode](backends, number)
    finally:
        await backends.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))
