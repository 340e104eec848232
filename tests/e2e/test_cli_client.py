"""`scrapeq crawl`, `tasks`, `task`, `pages`, `cancel` against a real `scrapeq dev`: the progress bar in a
pseudo-terminal, plain lines in a pipe, `--json`, `--out`, Ctrl-C leaving the task running, the exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pexpect
import pytest

from tests.e2e.conftest import GENEROUS_LIMITS, Cli, free_port, poll_task
from tests.fixtures.versioned import Version, VersionedSite

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PAGES = 40
#: Seconds each answer of the site takes: with 2 pages at a time, a crawl of 40 lasts about 2 s.
DELAY_S = 0.1


@dataclass
class Service:
    base: str
    key: str
    site: VersionedSite

    def env(self, **extra: str) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPEQ_")}
        return {**environ, "SCRAPEQ_API_URL": self.base, "SCRAPEQ_API_KEY": self.key, **extra}

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scrapeq", *args],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=10)


def site_pages() -> dict[str, Version]:
    links = "".join(f'<a href="/docs/p{n}.html">p{n}</a>' for n in range(PAGES * 2))
    served = {"/index.html": Version(f"<html><head><title>Home</title></head><body><main>{links}</main></body></html>")}
    for n in range(PAGES * 2):
        title = 'P0: a "quoted" title' if n == 0 else f"P{n}"
        body = f"<h1>Page {n}</h1><p>the text of page number {n}</p>"
        served[f"/docs/p{n}.html"] = Version(f"<html><head><title>{title}</title></head><body>{body}</body></html>")
    return served


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("cli-client")
    cli = Cli(tmp / "data", SCRAPEQ_CRAWL_CONCURRENCY="2", **GENEROUS_LIMITS)
    key = cli.new_key("cli", "docs")
    with VersionedSite(delay_s=DELAY_S) as site:
        site.pages = site_pages()
        base = cli.start_http("dev", log=tmp / "dev.log")
        try:
            yield Service(base, key, site)
        finally:
            cli.stop_all()


def crawl_args(service: Service, *extra: str, limit: int = PAGES) -> list[str]:
    return ["crawl", service.site.url("/index.html"), "--kb", "docs", "--limit", str(limit), *extra]


def test_in_a_terminal_the_progress_bar_advances_and_finishes_at_the_limit(service: Service) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "scrapeq", *crawl_args(service, "--wait")],
        env={**service.env(), "TERM": "xterm-256color", "COLUMNS": "120"},
        dimensions=(30, 120),
        encoding="utf-8",
        timeout=60,
    )
    child.expect(pexpect.EOF)
    child.close()
    screen = child.before
    assert child.exitstatus == 0, screen
    # rich redraws the bar in place: every frame shows "done/limit".
    shown = [int(done) for done in re.findall(rf"(\d+)/{PAGES}\b", screen)]
    assert shown == sorted(shown), shown
    assert any(0 < done < PAGES for done in shown), shown  # seen part way, not only at the end
    assert shown[-1] == PAGES
    assert "\x1b[" in screen  # drawn with terminal control sequences, not printed as lines
    assert re.search(rf"completed: done {PAGES}, failed 0, skipped 0", screen)


def test_without_a_terminal_it_prints_plain_progress_lines(service: Service) -> None:
    done = service.run(*crawl_args(service, "--wait"))
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"task_id: [0-9a-f]{32}", lines[0])
    progress = [line for line in lines if " running: " in line]
    assert progress, done.stdout  # about 2 s of crawl, a line a second
    for line in progress:
        assert re.fullmatch(
            rf"task [0-9a-f]{{32}} running: \d+/{PAGES} pages \(done \d+, failed 0, skipped 0\), [\d.]+ pages/s", line
        )
    assert re.fullmatch(rf"task [0-9a-f]{{32}} completed: done {PAGES}, failed 0, skipped 0 in [\d.]+ s", lines[-1])


def test_json_prints_one_object(service: Service) -> None:
    done = service.run(*crawl_args(service, "--wait", "--json", limit=5))
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout)  # the whole of stdout: one object, no progress around it
    assert task["status"] == "completed" and task["progress"]["pages_done"] == 5
    submitted = service.run(*crawl_args(service, "--json", limit=1))
    assert submitted.returncode == 0
    accepted = json.loads(submitted.stdout)
    assert accepted["status"] == "queued" and re.fullmatch(r"[0-9a-f]{32}", accepted["task_id"])


def test_out_dir_writes_one_markdown_file_per_page(service: Service, tmp_path: Path) -> None:
    out = tmp_path / "pages"
    done = service.run(*crawl_args(service, "--max-depth", "1", "--out", str(out), limit=12))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"wrote 12 pages to {out}"
    files = sorted(out.iterdir())
    assert len(files) == 12
    assert all(re.fullmatch(r"\d{5}-127\.0\.0\.1-docs-p\d+\.md|00000-127\.0\.0\.1-index\.md", f.name) for f in files)
    first = files[1].read_text()
    # Front matter of JSON strings (valid YAML): quotes and colons in a title cannot break it.
    assert first.startswith(
        '---\nurl: "' + service.site.url("/docs/p0.html") + '"\ntitle: "P0: a \\"quoted\\" title"\n'
    )
    assert "the text of page number 0" in first
    # The same pages again, from the task id: `scrapeq pages ID --out`, and as JSON lines.
    task_id = json.loads(service.run("tasks", "--json", "--limit", "1").stdout)["tasks"][0]["task_id"]
    again = tmp_path / "again"
    assert service.run("pages", task_id, "--out", str(again)).returncode == 0
    assert sorted(f.name for f in again.iterdir()) == [f.name for f in files]
    lines = tmp_path / "pages.jsonl"
    assert service.run("pages", task_id, "--out", str(lines)).returncode == 0
    assert len([json.loads(line) for line in lines.read_text().splitlines()]) == 12


def test_tasks_task_and_cancel(service: Service) -> None:
    accepted = json.loads(service.run(*crawl_args(service, "--json", limit=70)).stdout)
    task_id = accepted["task_id"]
    cancelled = service.run("cancel", task_id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    answer = json.loads(cancelled.stdout)
    assert answer["status"] == "cancelled" or answer["cancel_requested"] is True, answer
    ended = service.run("task", task_id, "--wait", "--json")
    assert ended.returncode == 1  # the task ended, but did not complete
    assert json.loads(ended.stdout)["status"] == "cancelled"
    listed = service.run("tasks", "--status", "cancelled")
    assert listed.returncode == 0 and re.search(rf"^{task_id}  cancelled  docs  done \d+", listed.stdout, re.M)
    shown = service.run("task", task_id)
    assert shown.returncode == 0 and f"task_id:        {task_id}" in shown.stdout
    assert "status:         cancelled" in shown.stdout


def test_ctrl_c_stops_following_and_leaves_the_task_running(service: Service) -> None:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "scrapeq", *crawl_args(service, "--wait", limit=70)],
        env={**service.env(), "TERM": "dumb"},
        encoding="utf-8",
        timeout=30,
    )
    child.expect(r"task_id: ([0-9a-f]{32})")
    task_id = child.match.group(1)
    time.sleep(1.0)
    child.sendintr()
    child.expect(f"the task keeps running. Cancel it: scrapeq cancel {task_id}")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    with service.api() as api:
        task = poll_task(api, task_id, lambda t: t["status"] in ("completed", "failed", "cancelled"))
    assert task["status"] == "completed" and task["progress"]["pages_done"] == 70  # nobody cancelled it


def test_exit_codes_for_refusals_and_an_unreachable_service(service: Service) -> None:
    bad_key = service.run(*crawl_args(service), SCRAPEQ_API_KEY="sq_nope")
    assert bad_key.returncode == 2 and bad_key.stderr.startswith("scrapeq: error: 401 ")
    bad_url = service.run("crawl", "ftp://example.com/", "--kb", "docs")
    assert bad_url.returncode == 2 and "422" in bad_url.stderr and "url" in bad_url.stderr
    unknown = service.run("task", "0" * 32)
    assert unknown.returncode == 2 and "404" in unknown.stderr
    assert "Traceback" not in bad_key.stderr + bad_url.stderr + unknown.stderr
    nowhere = service.run("tasks", SCRAPEQ_API_URL=f"http://127.0.0.1:{free_port()}")
    assert nowhere.returncode == 3 and "cannot reach the service" in nowhere.stderr
