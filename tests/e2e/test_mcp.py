"""`scrapeq mcp` driven by the MCP SDK's own client over stdio, against a real `scrapeq dev` on loopback: its
tools listed, a crawl followed and read in bounded chunks, one page scraped, and every problem a tool error."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from tests.e2e.conftest import GENEROUS_LIMITS, Cli, free_port
from tests.fixtures.versioned import Version, VersionedSite

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {"scrape", "crawl", "task_status", "get_pages", "list_knowledge_base_documents"}
SERVER = ["-m", "scrapeq", "mcp"]
PAGES = 6
#: Each article page's markdown is about this long: several `get_pages` answers at the smallest budget.
ARTICLE_WORDS = 400


@dataclass
class Service:
    base: str
    key: str
    site: VersionedSite
    logs: Path


@dataclass
class Session:
    """A connected MCP client, and every stream problem (a stdout line that is not a protocol message)."""

    client: Client
    stream_errors: list[Exception] = field(default_factory=list)

    async def call(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        return await self.client.call_tool(name, arguments)

    async def ok(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await self.call(name, arguments)
        assert not result.is_error, text_of(result)
        content: dict[str, Any] | None = result.structured_content
        assert content is not None
        return content

    async def error(self, name: str, arguments: dict[str, Any]) -> str:
        result = await self.call(name, arguments)
        assert result.is_error, result
        return text_of(result)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def article(n: int) -> str:
    words = " ".join(f"word{n}x{i}" for i in range(ARTICLE_WORDS))
    return f"<h1>Article {n}</h1><p>article {n} begins. {words} article {n} ends.</p>"


def site_pages() -> dict[str, Version]:
    links = "".join(f'<a href="/a{n}.html">a{n}</a> ' for n in range(PAGES - 1))
    home = f"<html><head><title>Home</title></head><body><main><p>the home page</p>{links}</main></body></html>"
    served = {"/index.html": Version(home)}
    for n in range(PAGES - 1):
        served[f"/a{n}.html"] = Version(
            f"<html><head><title>A{n}</title></head><body><main>{article(n)}</main></body></html>"
        )
    served["/single.html"] = Version(
        "<html><head><title>Single</title></head><body><nav>menu menu</nav><main><h1>Just one</h1>"
        "<p>a page scraped on its own</p></main></body></html>"
    )
    return served


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("mcp")
    cli = Cli(tmp / "data", **GENEROUS_LIMITS)
    key = cli.new_key("mcp", "docs")
    with VersionedSite() as site:
        site.pages = site_pages()
        base = cli.start_http("dev", log=tmp / "dev.log")
        try:
            yield Service(base, key, site, tmp)
        finally:
            cli.stop_all()


@asynccontextmanager
async def mcp_session(service: Service, *, base: str | None = None, key: str | None = None) -> AsyncIterator[Session]:
    """`scrapeq mcp` as an MCP client spawns it: a subprocess on stdio, configured by its environment."""
    env = {"SCRAPEQ_API_URL": base or service.base, "SCRAPEQ_API_KEY": key or service.key}
    params = StdioServerParameters(command=sys.executable, args=SERVER, env=env, cwd=ROOT)
    errors: list[Exception] = []

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            errors.append(message)

    log = service.logs / f"mcp-{time.monotonic_ns()}.log"
    with log.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), message_handler=on_message) as client:
            session = Session(client, errors)
            yield session
    assert errors == [], "the server wrote something else than protocol messages to stdout"
    assert "Traceback" not in log.read_text(), log.read_text()


async def crawled_task(session: Session, service: Service) -> str:
    started = await session.ok("crawl", {"url": service.site.url("/index.html"), "knowledge_base_id": "docs"})
    assert started["status"] == "queued" and started["task_id"]
    deadline = time.monotonic() + 60
    while True:
        status = await session.ok("task_status", {"task_id": started["task_id"]})
        if status["done"]:
            break
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.2)
    assert status["status"] == "completed", status
    assert status["progress"] == {"pages_done": PAGES, "pages_failed": 0, "pages_skipped": 0}
    assert status["error"] is None and status["knowledge_base_id"] == "docs"
    return str(started["task_id"])


async def test_the_tools_are_listed_with_descriptions_and_schemas(service: Service) -> None:
    async with mcp_session(service) as session:
        tools = {tool.name: tool for tool in (await session.client.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and len(tool.description) > 80, tool.name
            assert "\n " not in tool.description, f"{tool.name}: its description keeps the docstring's indentation"
            assert tool.input_schema["type"] == "object" and tool.input_schema["properties"], tool.name
            assert tool.output_schema is not None, tool.name
            for name, schema in tool.input_schema["properties"].items():
                assert schema.get("description"), f"{tool.name}.{name} has no description"
        assert tools["scrape"].input_schema["required"] == ["url", "knowledge_base_id"]
        timeout = tools["scrape"].input_schema["properties"]["timeout_s"]
        assert (timeout["default"], timeout["minimum"], timeout["maximum"]) == (60, 1, 120)
        budget = tools["get_pages"].input_schema["properties"]["max_chars"]
        assert (budget["default"], budget["minimum"], budget["maximum"]) == (20_000, 1000, 100_000)
        assert tools["crawl"].input_schema["properties"]["limit"]["default"] == 10
        assert tools["task_status"].input_schema["required"] == ["task_id"]


async def test_crawl_status_pages_in_bounded_chunks_and_the_documents(service: Service) -> None:
    async with mcp_session(service) as session:
        task_id = await crawled_task(session, service)

        whole = await session.ok("get_pages", {"task_id": task_id, "max_chars": 100_000})
        assert whole["next_cursor"] is None and whole["task_status"] == "completed"
        by_url = {page["url"]: page for page in whole["pages"]}
        assert set(by_url) == {service.site.url("/index.html")} | {
            service.site.url(f"/a{n}.html") for n in range(PAGES - 1)
        }
        home = by_url[service.site.url("/index.html")]
        assert home["title"] == "Home" and "the home page" in home["markdown"] and home["status_code"] == 200
        for n in range(PAGES - 1):
            page = by_url[service.site.url(f"/a{n}.html")]
            assert page["title"] == f"A{n}" and not page["truncated"]
            assert f"article {n} begins" in page["markdown"] and f"article {n} ends" in page["markdown"]
            assert page["markdown_chars"] == len(page["markdown"]) > 2000
        assert whole["markdown_chars"] == sum(len(page["markdown"]) for page in whole["pages"])

        # The smallest budget: many answers, none above it, pages cut and continued where they were cut.
        pieces: dict[str, str] = {}
        cursor, answers = None, 0
        while True:
            answer = await session.ok("get_pages", {"task_id": task_id, "max_chars": 1000, "cursor": cursor})
            answers += 1
            sent = sum(len(page["markdown"] or "") for page in answer["pages"])
            assert sent == answer["markdown_chars"] <= 1000 and answer["pages"]
            for page in answer["pages"]:
                assert page["markdown_offset"] == len(pieces.get(page["url"], ""))
                pieces[page["url"]] = pieces.get(page["url"], "") + page["markdown"]
                assert page["truncated"] == (len(pieces[page["url"]]) < page["markdown_chars"])
            cursor = answer["next_cursor"]
            if cursor is None:
                break
            assert answers < 200
        assert pieces == {url: page["markdown"] for url, page in by_url.items()}
        assert answers >= whole["markdown_chars"] // 1000

        listed = await session.ok("list_knowledge_base_documents", {"knowledge_base_id": "docs", "limit": 4})
        documents = listed["documents"]
        assert len(documents) == 4 and listed["next_cursor"]
        rest = await session.ok(
            "list_knowledge_base_documents", {"knowledge_base_id": "docs", "cursor": listed["next_cursor"]}
        )
        documents += rest["documents"]
        assert rest["next_cursor"] is None
        crawled = {doc["url"]: doc for doc in documents if doc["task_id"] == task_id}
        assert set(crawled) == set(by_url)
        assert {doc["change"] for doc in crawled.values()} == {"new"}
        assert crawled[service.site.url("/a0.html")]["title"] == "A0"
        assert (
            crawled[service.site.url("/a0.html")]["markdown_chars"]
            == by_url[service.site.url("/a0.html")]["markdown_chars"]
        )
        later = await session.ok(
            "list_knowledge_base_documents", {"knowledge_base_id": "docs", "changed_since": "2999-01-01T00:00:00Z"}
        )
        assert later["documents"] == [] and later["next_cursor"] is None


async def test_scrape_returns_one_page_as_markdown(service: Service) -> None:
    async with mcp_session(service) as session:
        url = service.site.url("/single.html")
        page = await session.ok("scrape", {"url": url, "knowledge_base_id": "docs", "timeout_s": 30})
        assert page["url"] == url and page["title"] == "Single" and page["status_code"] == 200
        assert "Just one" in page["markdown"] and "a page scraped on its own" in page["markdown"]
        assert "menu" not in page["markdown"] and page["error"] is None and not page["truncated"]
        status = await session.ok("task_status", {"task_id": page["task_id"]})
        assert status["status"] == "completed" and status["progress"]["pages_done"] == 1

        with_nav = await session.ok("scrape", {"url": url, "knowledge_base_id": "docs", "only_main_content": False})
        assert "menu" in with_nav["markdown"]

        missing = await session.ok("scrape", {"url": service.site.url("/nowhere.html"), "knowledge_base_id": "docs"})
        assert missing["error"]["code"] == "http_status" and "404" in missing["error"]["message"], missing
        assert missing["markdown"] is None and missing["task_id"]

        cut = await session.ok(
            "scrape", {"url": service.site.url("/a1.html"), "knowledge_base_id": "docs", "max_chars": 1000}
        )
        assert cut["truncated"] and len(cut["markdown"]) == 1000 < cut["markdown_chars"]
        assert cut["markdown"].startswith("# Article 1")


async def test_scrape_waits_only_as_long_as_it_is_told(service: Service) -> None:
    with VersionedSite(delay_s=5.0) as slow:
        slow.pages = {"/slow.html": Version("<html><body><main><p>slow</p></main></body></html>")}
        async with mcp_session(service) as session:
            started = time.monotonic()
            message = await session.error(
                "scrape", {"url": slow.url("/slow.html"), "knowledge_base_id": "docs", "timeout_s": 1}
            )
            assert time.monotonic() - started < 4.0, "the wait was not bounded by timeout_s"
            assert "timeout" in message and "task_status" in message
            task_id = message.split("task ")[-1].split()[0]
            status = await session.ok("task_status", {"task_id": task_id})
            assert status["task_id"] == task_id and status["url"] == slow.url("/slow.html")


async def test_problems_are_tool_errors_and_the_server_keeps_answering(service: Service) -> None:
    async with mcp_session(service) as session:
        not_a_url = await session.error("scrape", {"url": "not a url", "knowledge_base_id": "docs"})
        assert "422" in not_a_url and "validation_error" in not_a_url and "url" in not_a_url
        ftp = await session.error("crawl", {"url": "ftp://x", "knowledge_base_id": "docs"})
        assert "422" in ftp and "http or https" in ftp
        unknown = await session.error("task_status", {"task_id": "no-such-task"})
        assert "404" in unknown, unknown
        assert "404" in await session.error("get_pages", {"task_id": "no-such-task"})
        other_kb = await session.error("crawl", {"url": service.site.url("/index.html"), "knowledge_base_id": "nope"})
        assert "403" in other_kb, other_kb
        bad_regex = await session.error(
            "crawl", {"url": service.site.url("/index.html"), "knowledge_base_id": "docs", "include_paths": ["("]}
        )
        assert "422" in bad_regex and "include_paths" in bad_regex
        # Arguments outside the schema's bounds are refused before any request.
        assert "timeout_s" in await session.error(
            "scrape", {"url": service.site.url("/single.html"), "knowledge_base_id": "docs", "timeout_s": 121}
        )
        assert "max_chars" in await session.error("get_pages", {"task_id": "t", "max_chars": 10})

        page = await session.ok("scrape", {"url": service.site.url("/single.html"), "knowledge_base_id": "docs"})
        assert "a page scraped on its own" in page["markdown"]
        assert "invalid cursor" in await session.error("get_pages", {"task_id": page["task_id"], "cursor": "garbage"})
        first = await session.ok("get_pages", {"task_id": page["task_id"]})
        assert first["next_cursor"] is None and len(first["pages"]) == 1


async def test_a_bad_key_and_an_unreachable_service_are_tool_errors(service: Service) -> None:
    async with mcp_session(service, key="sq_not_a_real_key") as session:
        message = await session.error("task_status", {"task_id": "whatever"})
        assert "401" in message and "API key" in message, message
        assert "401" in await session.error("list_knowledge_base_documents", {"knowledge_base_id": "docs"})
    async with mcp_session(service, base=f"http://127.0.0.1:{free_port()}") as session:
        message = await session.error("crawl", {"url": service.site.url("/index.html"), "knowledge_base_id": "docs"})
        assert "could not be reached" in message, message
        assert "could not be reached" in await session.error("task_status", {"task_id": "whatever"})


def test_stdout_carries_only_protocol_messages(service: Service) -> None:
    """Read raw: whatever the server writes to stdout, even at exit, is one JSON-RPC message a line."""
    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    requests: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    env = {**os.environ, "SCRAPEQ_API_URL": service.base, "SCRAPEQ_API_KEY": service.key, "SCRAPEQ_LOG_LEVEL": "DEBUG"}
    answers = []
    with subprocess.Popen(
        [sys.executable, *SERVER], env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as server:
        assert server.stdin is not None and server.stdout is not None
        try:
            for request in requests:
                server.stdin.write(json.dumps(request) + "\n")
                server.stdin.flush()
                if "id" in request:  # its answer, before the next request (and stdin's end) is sent
                    answers.append(json.loads(server.stdout.readline()))
            server.stdin.close()
            # Whatever else it writes, up to its exit, must be protocol messages too.
            answers += [json.loads(line) for line in server.stdout.read().splitlines()]
            assert server.wait(timeout=30) == 0
        finally:
            if server.poll() is None:
                server.kill()
    assert [answer.get("jsonrpc") for answer in answers] == ["2.0", "2.0"]
    assert answers[0]["id"] == 1 and answers[0]["result"]["serverInfo"]["name"] == "scrapeq"
    assert answers[1]["id"] == 2 and {tool["name"] for tool in answers[1]["result"]["tools"]} == TOOLS
