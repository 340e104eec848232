"""`scrapeq mcp`: an MCP server on stdio whose tools (scrape, crawl, task status, pages, documents) an agent
calls; it talks to the scrapeq API through `AsyncClient`, and API problems come back as tool errors."""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

import scrapeq.client.calls as calls
import scrapeq.logs as logs
import shared.models as models
from producer.knowledge import DocumentPublic
from scrapeq.client.aio import AsyncClient
from scrapeq.client.exceptions import APIConnectionError, APIError, AuthenticationError
from shared.models import Change, Page, PageError, Progress, TaskError, TaskPublic, TaskStatus

ToolFn = TypeVar("ToolFn", bound=Callable[..., Any])

#: Pages read from the API per request while filling one `get_pages` answer.
BATCH = 20
#: At most this many pages in one `get_pages` answer, however short they are.
MAX_PAGES_PER_ANSWER = 50
#: With less markdown budget than this left, an answer stops before starting the next page.
MIN_PIECE = 500
#: Calls are retried briefly (429/503, unreachable): an agent is waiting on the answer.
RETRY = calls.RetryPolicy(max_retries=2, max_wait_s=5.0, budget_s=10.0)

INSTRUCTIONS = (
    "scrapeq crawls web pages into markdown kept in knowledge bases. `scrape` one URL (waits, returns markdown); "
    "for a site, `crawl` starts a task, `task_status` follows it, `get_pages` reads its markdown in bounded chunks "
    "(follow `next_cursor`). `list_knowledge_base_documents` lists what a knowledge base holds."
)

Url = Annotated[str, Field(description="An absolute http:// or https:// URL", max_length=8192)]
KnowledgeBase = Annotated[
    str,
    Field(
        description="The knowledge base the pages are stored in; one the API key may use (letters, digits, _.-)",
        pattern=models.KB_ID_PATTERN,
    ),
]
TaskId = Annotated[str, Field(description="A task id, as `crawl` or `scrape` returned it", min_length=1, max_length=64)]
MaxChars = Annotated[
    int, Field(ge=1000, le=100_000, description="Markdown characters in one answer at most, 1000 to 100000")
]
Patterns = Annotated[list[str] | None, Field(description="Regular expressions (Python syntax) matched on URL paths")]
Cursor = Annotated[
    str | None, Field(description="`next_cursor` from the previous answer, as is; omit it for the first answer")
]


class ScrapedPage(BaseModel):
    """The answer of `scrape`."""

    task_id: str = Field(description="The task that scraped the page (usable with `get_pages`)")
    url: str
    final_url: str | None = Field(None, description="Where redirects led, if anywhere")
    status_code: int | None = Field(None, description="The HTTP status the site answered")
    title: str | None = None
    markdown: str | None = Field(None, description="The page as markdown; null when it failed")
    markdown_chars: int = Field(0, description="Length of the whole markdown, in characters")
    truncated: bool = Field(False, description="The markdown was cut at `max_chars`")
    error: PageError | None = Field(None, description="Why the page (or the task) failed: a stable code, a message")


class CrawlStarted(BaseModel):
    """The answer of `crawl`."""

    task_id: str
    status: TaskStatus
    created_at: datetime


class TaskReport(BaseModel):
    """The answer of `task_status`."""

    task_id: str
    status: TaskStatus = Field(description="queued, running, completed, failed or cancelled")
    done: bool = Field(description="The task has ended (completed, failed or cancelled): no more pages will come")
    url: str
    knowledge_base_id: str
    limit: int = Field(description="At most this many pages are crawled")
    progress: Progress = Field(description="Pages done (stored), failed, and skipped so far")
    error: TaskError | None = Field(None, description="Why the task failed, if it did")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class PageChunk(BaseModel):
    """One page in a `get_pages` answer, its markdown possibly one piece of several."""

    url: str
    final_url: str | None = None
    status_code: int | None = None
    depth: int = Field(description="Links followed from the start URL to reach the page")
    title: str | None = None
    markdown: str | None = Field(None, description="The markdown from `markdown_offset` on; null when the page failed")
    markdown_offset: int = Field(0, description="Where this piece starts in the page's markdown, in characters")
    markdown_chars: int = Field(0, description="Length of the page's whole markdown, in characters")
    truncated: bool = Field(False, description="The rest of this page's markdown comes with `next_cursor`")
    error: PageError | None = Field(None, description="Why the page failed, if it did")


class PageBatch(BaseModel):
    """The answer of `get_pages`."""

    task_id: str
    task_status: TaskStatus
    pages: list[PageChunk]
    markdown_chars: int = Field(description="Markdown characters in this answer (never above `max_chars`)")
    next_cursor: str | None = Field(
        description="Pass it back to continue; null once every page of an ended task has been returned"
    )


class DocumentEntry(BaseModel):
    """One document of a knowledge base: the latest version of one URL."""

    url: str
    title: str | None = None
    description: str | None = None
    status_code: int | None = None
    change: Change = Field(description="Against the previous version: new, changed, unchanged or removed (404/410)")
    changed_at: datetime = Field(description="When its content last changed")
    first_seen_at: datetime
    fetched_at: datetime = Field(description="When it was last fetched")
    task_id: str = Field(description="The task that stored this version")
    markdown_chars: int = Field(0, description="Length of its markdown, in characters")
    error: PageError | None = None


class DocumentBatch(BaseModel):
    """The answer of `list_knowledge_base_documents`."""

    knowledge_base_id: str
    documents: list[DocumentEntry]
    next_cursor: str | None = Field(description="Pass it back for the next documents; null after the last")


def describe(exc: APIError) -> str:
    """One line naming the problem: status, stable code, detail, the fields at fault, and what to do."""
    if isinstance(exc, APIConnectionError):
        return f"the scrapeq API could not be reached ({exc.detail}); is it running, and is the API URL right?"
    fields = "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg', '')}" for e in exc.errors)
    text = f"{exc.status} {exc.code}: {exc.detail}" + (f" ({fields})" if fields else "")
    if isinstance(exc, AuthenticationError):
        text += " - check the API key (SCRAPEQ_API_KEY or --api-key)"
    return text


@contextmanager
def problems() -> Iterator[None]:
    """API problems as tool errors: the agent reads the message, the server carries on."""
    try:
        yield
    except APIError as exc:
        raise ToolError(describe(exc)) from exc


def encode_cursor(task_id: str, api_cursor: str | None, index: int, offset: int) -> str:
    raw = json.dumps([task_id, api_cursor, index, offset], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, task_id: str) -> tuple[str | None, int, int]:
    """A `get_pages` position: the API cursor of a batch, a page's index in it, an offset in its markdown."""
    if cursor is None:
        return None, 0, 0
    try:
        owner, api_cursor, index, offset = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        valid = isinstance(api_cursor, str | None) and isinstance(index, int) and isinstance(offset, int)
    except (ValueError, TypeError, binascii.Error):
        valid = False
    if not valid or index < 0 or offset < 0:
        raise ToolError("invalid cursor: pass `next_cursor` back exactly as it was returned")
    if owner != task_id:
        raise ToolError(f"this cursor belongs to task {owner!r}, not {task_id!r}")
    return api_cursor, index, offset


def chunk_of(page: Page, offset: int, budget: int) -> PageChunk:
    text = page.markdown
    piece = None if text is None else text[offset : offset + budget]
    return PageChunk(
        markdown=piece,
        markdown_offset=offset,
        markdown_chars=len(text or ""),
        truncated=text is not None and offset + len(piece or "") < len(text),
        **page.model_dump(include={"url", "status_code", "depth", "title", "error"}),
        final_url=page.final_url if page.final_url != page.url else None,
    )


async def read_pages(client: AsyncClient, task: TaskPublic, cursor: str | None, max_chars: int) -> PageBatch:
    """Pages from `cursor` on until `max_chars` of markdown are used (the last one cut if need be)."""
    api_cursor, index, offset = decode_cursor(cursor, task.task_id)
    chunks: list[PageChunk] = []
    budget = max_chars

    def answer(more: bool) -> PageBatch:
        after = encode_cursor(task.task_id, api_cursor, index, offset) if more else None
        used = max_chars - budget
        return PageBatch(
            task_id=task.task_id, task_status=task.status, pages=chunks, markdown_chars=used, next_cursor=after
        )

    while True:
        listed = await client.page_list(task.task_id, cursor=api_cursor, limit=BATCH)
        for page in listed.pages[index:]:
            left = len(page.markdown or "") - offset
            if len(chunks) >= MAX_PAGES_PER_ANSWER or (chunks and left > 0 and budget < min(left, MIN_PIECE)):
                return answer(more=True)
            chunks.append(chunk := chunk_of(page, offset, budget))
            budget -= len(chunk.markdown or "")
            if chunk.truncated:
                offset += len(chunk.markdown or "")
                return answer(more=True)
            index, offset = index + 1, 0
        if listed.next_cursor is None:
            # A running task may still add pages after these: the cursor then waits at the end for them.
            return answer(more=task.status not in models.TERMINAL)
        api_cursor, index, offset = listed.next_cursor, 0, 0


def document_entry(doc: DocumentPublic) -> DocumentEntry:
    fields = set(DocumentEntry.model_fields) - {"markdown_chars"}
    return DocumentEntry(markdown_chars=len(doc.markdown or ""), **doc.model_dump(include=fields))


def build(client: AsyncClient) -> MCPServer:
    """The MCP server with its five tools, each a call or two of `client`."""
    server: MCPServer = MCPServer("scrapeq", instructions=INSTRUCTIONS, log_level="WARNING")

    def tool(*, read_only: bool) -> Callable[[ToolFn], ToolFn]:
        """Register a tool, its docstring dedented (Python 3.11 keeps the indentation an LLM would read)."""
        hints = ToolAnnotations(read_only_hint=read_only, destructive_hint=False, open_world_hint=not read_only)
        return lambda fn: server.tool(description=inspect.cleandoc(fn.__doc__ or ""), annotations=hints)(fn)

    @tool(read_only=False)
    async def scrape(
        url: Url,
        knowledge_base_id: KnowledgeBase,
        only_main_content: Annotated[bool, Field(description="Drop navigation, header, footer and asides")] = True,
        timeout_s: Annotated[int, Field(ge=1, le=120, description="Seconds to wait for the page, 1 to 120")] = 60,
        max_chars: MaxChars = 100_000,
    ) -> ScrapedPage:
        """Fetch one web page now and return it as markdown (also stored in the knowledge base).

        Waits up to `timeout_s` seconds. Returns the page's title, url, HTTP status code and markdown (cut at
        `max_chars` characters, then `truncated` is true: read the rest with `get_pages` and the `task_id`).
        A page that could not be fetched comes back with `error` (a code such as `http_status` or
        `robots_disallowed`, and a message) and no markdown. Links are not followed: use `crawl` for a site."""
        with problems():
            accepted = await client.submit(
                url,
                knowledge_base_id=knowledge_base_id,
                limit=1,
                max_depth=0,
                only_main_content=only_main_content,
                formats=["markdown", "metadata"],
            )
            try:
                task = await client.wait(accepted.task_id, timeout=timeout_s)
            except TimeoutError:
                raise ToolError(
                    f"timeout: the page was not scraped within {timeout_s} s; task {accepted.task_id} goes on "
                    "(follow it with task_status, read it with get_pages)"
                ) from None
            listed = await client.page_list(task.task_id, limit=1)
        if not listed.pages:
            error = task.error or TaskError(code=task.status.value, message=f"the task ended {task.status.value}")
            return ScrapedPage(task_id=task.task_id, url=url, error=PageError(**error.model_dump()))
        chunk = chunk_of(listed.pages[0], 0, max_chars)
        return ScrapedPage(task_id=task.task_id, **chunk.model_dump(include=set(ScrapedPage.model_fields)))

    @tool(read_only=False)
    async def crawl(
        url: Url,
        knowledge_base_id: KnowledgeBase,
        limit: Annotated[
            int, Field(ge=1, le=models.MAX_LIMIT, description=f"At most this many pages, 1 to {models.MAX_LIMIT}")
        ] = 10,
        max_depth: Annotated[
            int | None, Field(ge=0, le=1000, description="Links to follow from the start URL at most (0: it only)")
        ] = None,
        include_paths: Patterns = None,
        exclude_paths: Patterns = None,
    ) -> CrawlStarted:
        """Start crawling a site from `url`, following its links on the same host (breadth first); with
        `include_paths` only URL paths matching one of them are crawled, with `exclude_paths` none matching one.

        Returns at once with the `task_id` and its status (`queued`); the crawl runs in the background and
        stores each page in the knowledge base. Follow it with `task_status`, read its pages with `get_pages`."""
        with problems():
            accepted = await client.submit(
                url,
                knowledge_base_id=knowledge_base_id,
                limit=limit,
                max_depth=max_depth,
                include_paths=include_paths,
                exclude_paths=exclude_paths,
            )
        return CrawlStarted(task_id=accepted.task_id, status=accepted.status, created_at=accepted.created_at)

    @tool(read_only=True)
    async def task_status(task_id: TaskId) -> TaskReport:
        """The status of a crawl or scrape task: queued, running, completed, failed or cancelled (`done` is
        true once it has ended), its progress (pages done, failed and skipped so far), and its error if it
        failed. Poll it every few seconds while a crawl runs."""
        with problems():
            task = await client.get(task_id)
        return TaskReport(
            done=task.status in models.TERMINAL, **task.model_dump(include=set(TaskReport.model_fields) - {"done"})
        )

    @tool(read_only=True)
    async def get_pages(
        task_id: TaskId,
        cursor: Cursor = None,
        max_chars: MaxChars = 20_000,
    ) -> PageBatch:
        """The pages a task crawled, in crawl order, with their markdown: url, title, status code, markdown.

        One answer holds at most `max_chars` characters of markdown (and 50 pages); a page that does not
        fit is cut and marked `truncated`, and the next answer goes on from there. Call again with
        `next_cursor` until it is null (while the task still runs, `next_cursor` also reaches pages crawled
        later). Failed pages carry `error` and no markdown."""
        with problems():
            task = await client.get(task_id)
            return await read_pages(client, task, cursor, max_chars)

    @tool(read_only=True)
    async def list_knowledge_base_documents(
        knowledge_base_id: KnowledgeBase,
        cursor: Cursor = None,
        limit: Annotated[int, Field(ge=1, le=100, description="Documents in one answer at most, 1 to 100")] = 20,
        changed_since: Annotated[
            str | None,
            Field(description="Only documents changed after this ISO 8601 time with a zone, e.g. 2026-01-01T00:00:00Z"),
        ] = None,
    ) -> DocumentBatch:
        """The documents a knowledge base holds (the latest version of each URL it crawled): url, title,
        description, HTTP status, its last change (new, changed, unchanged, removed), when it changed and was
        fetched, the task that stored it and its markdown length. No markdown: read it with `get_pages` of
        that task, or `scrape` the URL. Call again with `next_cursor` until it is null."""
        with problems():
            listed = await client.document_list(
                knowledge_base_id, cursor=cursor, limit=limit, changed_since=changed_since
            )
        return DocumentBatch(
            knowledge_base_id=knowledge_base_id,
            documents=[document_entry(doc) for doc in listed.documents],
            next_cursor=listed.next_cursor,
        )

    return server


def serve(base_url: str | None, api_key: str | None) -> None:
    """Run the MCP server on stdin/stdout until the client hangs up (`SCRAPEQ_API_URL` / `SCRAPEQ_API_KEY` by
    default). Only the protocol goes to stdout; logs go to stderr."""
    fmt = "json" if os.environ.get("SCRAPEQ_LOG_FORMAT", "").strip().lower() == "json" else "text"
    logs.configure(os.environ.get("SCRAPEQ_LOG_LEVEL", "WARNING"), fmt)

    async def run() -> None:
        client = AsyncClient(base_url, api_key, retry=RETRY)
        async with client:
            await build(client).run_stdio_async()

    anyio.run(run)


if __name__ == "__main__":
    serve(None, None)
