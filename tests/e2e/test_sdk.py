"""The Python SDK against a real `scrapeq dev` on loopback: every method, a typed error per problem kind, 429s
retried, `wait` following the event feed, `pages` and `documents` across cursor pages, sync and async alike."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scrapeq.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
)
from tests.e2e.conftest import GENEROUS_LIMITS, Cli
from tests.fixtures.versioned import Version, VersionedSite

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

README = Path(__file__).resolve().parents[2] / "README.md"
PAGES = 12


@dataclass
class Service:
    base: str
    key: str
    #: A key of another tenant, allowed only the knowledge base "other".
    other_key: str
    #: A key whose tenant may make 2 requests a second.
    slow_key: str
    site: VersionedSite


def site_pages() -> dict[str, Version]:
    links = "".join(f'<a href="/p{n}.html">p{n}</a>' for n in range(PAGES - 1))
    served = {"/index.html": Version(f"<html><head><title>Home</title></head><body><main>{links}</main></body></html>")}
    for n in range(PAGES - 1):
        body = f"<h1>Page {n}</h1><p>text of page {n}</p>"
        served[f"/p{n}.html"] = Version(
            f"<html><head><title>P{n}</title></head><body><main>{body}</main></body></html>"
        )
    return served


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("sdk")
    cli = Cli(tmp / "data", **GENEROUS_LIMITS)
    key = cli.new_key("sdk", "docs")
    other = cli.new_key("sdk-other", "other")
    slow_tenant = cli.json("tenant", "create", "sdk-slow", "--kb", "docs")
    slow_id = str(slow_tenant["tenant_id"])
    updated = cli.run("tenant", "update", "--tenant", slow_id, "--rate-limit-per-s", "2", "--rate-limit-burst", "2")
    assert updated.returncode == 0, updated.stderr
    slow = str(cli.json("key", "create", "--tenant", slow_id)["api_key"])
    with VersionedSite() as site:
        site.pages = site_pages()
        base = cli.start_http("dev", log=tmp / "dev.log")
        try:
            yield Service(base, key, other, slow, site)
        finally:
            cli.stop_all()


def test_submit_wait_pages_and_the_knowledge_base(service: Service) -> None:
    requests: list[str] = []
    with Client(service.base, service.key) as client:
        client._http.event_hooks["request"].append(lambda r: requests.append(r.url.path))
        accepted = client.submit(service.site.url("/index.html"), knowledge_base_id="docs", limit=PAGES)
        assert accepted.status.value == "queued"
        task = client.wait(accepted.task_id, timeout=60)
        returned = time.time()
        assert task.status.value == "completed" and task.progress.pages_done == PAGES
        assert task.finished_at is not None and returned - task.finished_at.timestamp() < 1.0
        # wait followed the feed: a handful of long polls, not a fixed poll every few milliseconds.
        assert requests.count(f"/tasks/{accepted.task_id}/events") <= 5

        requests.clear()
        pages = client.pages(task.task_id, page_size=5)
        first = next(pages)
        assert first.url == service.site.url("/index.html") and requests.count(f"/tasks/{task.task_id}/pages") == 1
        rest = list(pages)
        assert len(rest) == PAGES - 1 and requests.count(f"/tasks/{task.task_id}/pages") == 3  # 5 + 5 + 2
        assert all(page.markdown for page in [first, *rest])
        # One cursor page at a time, for callers that keep the cursor themselves.
        head = client.page_list(task.task_id, limit=5)
        tail = client.page_list(task.task_id, cursor=head.next_cursor, limit=100)
        assert [p.url for p in head.pages + tail.pages] == [p.url for p in [first, *rest]]
        assert tail.next_cursor is None

        listed = client.tasks(knowledge_base_id="docs")
        assert task.task_id in [t.task_id for t in listed.tasks]
        feed = client.events(task.task_id)
        assert feed["events"][-1]["type"] == "task.completed"

        kbs = {kb.knowledge_base_id: kb for kb in client.knowledge_bases().knowledge_bases}
        assert kbs["docs"].documents == PAGES
        documents = list(client.documents("docs", page_size=5))
        assert len(documents) == PAGES and {d.change.value for d in documents} == {"new"}
        some = client.document_list("docs", limit=5)
        more = client.document_list("docs", cursor=some.next_cursor, limit=100)
        assert [d.url for d in some.documents + more.documents] == [d.url for d in documents]
        erased = client.erase_document("docs", service.site.url("/p0.html"))
        assert erased.documents == 1
        assert len(list(client.documents("docs"))) == PAGES - 1

        # Resubmitting with the same Idempotency-Key answers the same task.
        again = client.submit(service.site.url("/index.html"), knowledge_base_id="docs", idempotency_key="k1")
        replay = client.submit(service.site.url("/index.html"), knowledge_base_id="docs", idempotency_key="k1")
        assert again.task_id == replay.task_id
        cancelled = client.cancel(again.task_id)
        assert cancelled.task_id == again.task_id
        assert client.wait(again.task_id, timeout=30).status.value in {"cancelled", "completed"}
        assert client.erase_knowledge_base("docs").tasks >= 2
        assert client.knowledge_bases().knowledge_bases[0].documents == 0


def test_each_problem_kind_is_a_typed_error(service: Service) -> None:
    with Client(service.base, "sq_not_a_key") as client, pytest.raises(AuthenticationError) as unknown:
        client.tasks()
    assert unknown.value.status == 401 and unknown.value.code
    with Client(service.base, service.other_key) as client:
        with pytest.raises(PermissionDeniedError) as denied:
            client.submit(service.site.url("/index.html"), knowledge_base_id="docs")
        assert denied.value.status == 403
        with pytest.raises(NotFoundError) as missing:
            client.get("0" * 32)
        assert missing.value.status == 404
        with pytest.raises(InvalidRequestError) as invalid:
            client.submit(service.site.url("/"), knowledge_base_id="other", limit=0, sitemap="sometimes")
        assert invalid.value.status == 422
        fields = {tuple(error["loc"])[-1] for error in invalid.value.errors}
        assert {"limit", "sitemap"} <= fields, invalid.value.errors


def test_a_429_is_retried_after_its_retry_after_and_raised_when_the_budget_is_spent(service: Service) -> None:
    statuses: list[int] = []
    with Client(service.base, service.slow_key) as client:
        client._http.event_hooks["response"].append(lambda r: statuses.append(r.status_code))
        for _ in range(4):
            client.knowledge_bases()  # 2 a second: some of these meet a 429 and are sent again
    assert 429 in statuses and statuses[-1] == 200
    with Client(service.base, service.slow_key, retry=RetryPolicy(max_retries=0)) as client:
        with pytest.raises(RateLimitError) as limited:
            for _ in range(5):
                client.knowledge_bases()
    assert limited.value.status == 429 and limited.value.retry_after_s is not None


def test_the_async_client_does_the_same(service: Service) -> None:
    async def run() -> None:
        async with AsyncClient(service.base, service.key) as client:
            accepted = await client.submit(service.site.url("/index.html"), knowledge_base_id="docs", limit=PAGES)
            task = await client.wait(accepted.task_id, timeout=60)
            assert task.finished_at is not None and time.time() - task.finished_at.timestamp() < 1.0
            pages = [page async for page in client.pages(task.task_id, page_size=5)]
            assert len(pages) == PAGES
            assert len([d async for d in client.documents("docs", page_size=5)]) == PAGES
            head = await client.page_list(task.task_id, limit=5)
            assert len(head.pages) == 5 and head.next_cursor is not None
            assert len((await client.document_list("docs", limit=PAGES)).documents) == PAGES
            assert (await client.tasks(knowledge_base_id="docs")).tasks[0].task_id == task.task_id
            assert (await client.events(task.task_id))["events"][-1]["type"] == "task.completed"
            with pytest.raises(NotFoundError):
                await client.get("0" * 32)
        async with AsyncClient(service.base, "sq_not_a_key") as client:
            with pytest.raises(AuthenticationError):
                await client.knowledge_bases()

    asyncio.run(run())


def test_the_readme_example_runs(
    service: Service, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = README.read_text()
    section = text.split("### Python SDK", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, "the README's Python SDK section has no python example"
    monkeypatch.setenv("SCRAPEQ_API_URL", service.base)
    monkeypatch.setenv("SCRAPEQ_API_KEY", service.key)
    source = code.group(1).replace("https://example.com/", service.site.url("/index.html"))
    exec(compile(source, "README example", "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    assert "completed" in printed and "Page 3" in printed
    assert httpx.get(service.base + "/health").status_code == 200
