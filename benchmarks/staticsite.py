"""The crawl target: the project's test-site fixture generated into the work dir, served by nginx on loopback."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from childproc import BENCH_DIR, ROOT, Child, wait_http

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@dataclass(frozen=True)
class Site:
    root: Path
    pages: int
    #: Pages a robots.txt-obeying crawl can reach (the fixture's /private/ section is disallowed).
    reachable: int
    html_bytes: int
    median_page_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "pages": self.pages,
            "reachable": self.reachable,
            "html_bytes": self.html_bytes,
            "median_page_bytes": self.median_page_bytes,
        }


def generate(out: Path, *, pages: int, seed: int = 1) -> Site:
    """`python -m tests.fixtures.sitegen` (deterministic for the same arguments) into a fresh `out`."""
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        sys.executable,
        "-m",
        "tests.fixtures.sitegen",
        str(out),
        "--pages",
        str(pages),
        "--seed",
        str(seed),
        "--rich",
    ]
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    sizes = [path.stat().st_size for path in out.rglob("*.html")]
    # The fixture's robots.txt disallows /private/ and nothing else; its other pages are all linked.
    private = sum(1 for _ in (out / "private").glob("*.html"))
    return Site(
        root=out,
        pages=len(sizes),
        reachable=len(sizes) - private,
        html_bytes=sum(sizes),
        median_page_bytes=int(statistics.median(sizes)),
    )


class Nginx:
    """nginx in the foreground (`daemon off`) as a child of this process, from `nginx.conf.template`."""

    def __init__(self, root: Path, *, port: int, rundir: Path) -> None:
        self.root = root
        self.port = port
        self.rundir = rundir
        self.child: Child | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        shutil.rmtree(self.rundir, ignore_errors=True)
        self.rundir.mkdir(parents=True)
        template = Template((BENCH_DIR / "nginx.conf.template").read_text(encoding="utf-8"))
        conf = self.rundir / "nginx.conf"
        conf.write_text(
            template.substitute(port=self.port, root=self.root, rundir=self.rundir),
            encoding="utf-8",
        )
        log = open(self.rundir / "stderr.log", "wb")  # kept open for the child's lifetime
        self.child = Child(
            [NGINX, "-p", str(self.rundir), "-e", str(self.rundir / "error.log"), "-c", str(conf)],
            stdout=log,
            stderr=log,
        )
        wait_http(self.base_url + "/robots.txt", timeout_s=10, child=self.child)

    def worker_cpu_s(self) -> float:
        """CPU seconds used so far by nginx's worker process (the one that serves), from /proc."""
        if self.child is None:
            return 0.0
        total = 0.0
        for pid in _children_of(self.child.pid):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])  # utime, stime
            total += ticks / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(timeout_s=10)
            self.child = None


def _children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]
