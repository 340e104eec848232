"""Child processes measured by the kernel (CPU and peak RSS from `wait4`), free loopback ports, JSON results.

Standard library only: the scripts that import it run in the project's venv, the peers' venv and under
`run.py`, so nothing here may depend on either side.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent


@dataclass(frozen=True)
class Usage:
    """What the kernel accounted to one finished child: exit status, CPU seconds, peak resident set."""

    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_kb: int

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "returncode": self.returncode,
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "user_s": round(self.user_s, 4),
            "sys_s": round(self.sys_s, 4),
            "max_rss_kb": self.max_rss_kb,
        }


class Child:
    """A child process whose CPU time and peak RSS are read with `os.wait4` when it ends (never `Popen.wait`,
    which would reap it and lose the accounting)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdout: IO[Any] | int | None = None,
        stderr: IO[Any] | int | None = None,
    ) -> None:
        self.argv = list(argv)
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(
            self.argv,
            env=None if env is None else dict(env),
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # a Ctrl-C of the orchestrator is handled by it, not sent to every child
        )
        self.usage: Usage | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> Usage | None:
        """The usage if the child has ended (reaping it), else None."""
        if self.usage is None:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self._reaped(status, rusage)
        return self.usage

    def wait(self, timeout_s: float | None = None, *, grace_s: float = 10.0) -> Usage:
        """Wait for the end, reap, and return the usage. After `timeout_s`: SIGTERM (so a measurement script
        stops its own children), and SIGKILL `grace_s` later."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        escalation = [signal.SIGTERM, signal.SIGKILL]
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                self.signal(escalation.pop(0))
                deadline = time.monotonic() + grace_s if escalation else None
            time.sleep(0.02)
        assert self.usage is not None
        return self.usage

    def stop(self, timeout_s: float = 30.0) -> Usage:
        """SIGTERM, then wait (SIGKILL after `timeout_s`)."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout_s, grace_s=0)

    def signal(self, sig: int) -> None:
        if self.usage is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def _reaped(self, status: int, rusage: Any) -> None:
        self.usage = Usage(
            returncode=os.waitstatus_to_exitcode(status),
            wall_s=time.perf_counter() - self.started,
            user_s=rusage.ru_utime,
            sys_s=rusage.ru_stime,
            max_rss_kb=rusage.ru_maxrss,  # kilobytes on Linux
        )
        self.popen.returncode = self.usage.returncode  # so Popen's finaliser does not try to reap it again


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that `finally` blocks stop this script's own children."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, *, timeout_s: float = 30.0, child: Child | None = None) -> None:
    """Poll `url` until it answers (any status below 500); fail early if `child` died."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            pass
        if child is not None and child.poll() is not None:
            raise RuntimeError(f"{child.argv[0]} exited with {child.usage} before {url} answered")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s} s")
        time.sleep(0.05)


def clean_env(**overrides: str) -> dict[str, str]:
    """This environment without any `SCRAPEQ_*` variable of the caller's shell, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPEQ_")}
    env.update(overrides)
    return env


def emit(result: Mapping[str, Any]) -> None:
    """A measurement script's result: one JSON object as the last line on stdout."""
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()


def crawl_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments every crawler of the crawl rows takes (`--start`, `--limit`, `--concurrency`); each adds
    where its output goes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--start", required=True, help="the site's first page")
    parser.add_argument("--limit", type=int, default=2000, help="pages at most")
    parser.add_argument("--concurrency", type=int, default=16, help="requests at once (all to the one host)")
    return parser
