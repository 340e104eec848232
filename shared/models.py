"""Tasks, pages and crawl jobs: the single schema source for API bodies, stored records and queue messages
(`ScrapeRequest` in, `Task` stored, `TaskPublic` out, `Page`, `CrawlJob` the message, `CrawlState` the checkpoint)."""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared import urls

KB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_LIMIT = 10_000
MAX_URLS = 1000
#: (A name of its own: inside `ScrapeRequest` the field `urls` hides the module in annotations.)
MAX_URL_LENGTH = urls.MAX_URL_LENGTH
MAX_PATTERNS = 50
MAX_PATTERN_LENGTH = 500


def utcnow() -> datetime:
    return datetime.now(UTC)


class TaskStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class Format(enum.StrEnum):
    MARKDOWN = "markdown"
    TEXT = "text"
    HTML = "html"
    LINKS = "links"
    METADATA = "metadata"


class EventType(enum.StrEnum):
    STARTED = "task.started"
    PAGE = "task.page"
    COMPLETED = "task.completed"
    FAILED = "task.failed"
    CANCELLED = "task.cancelled"


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    events: list[EventType] = Field(default_factory=lambda: [EventType.COMPLETED, EventType.FAILED])

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return urls.validate_submitted_url(value)


class ScrapeRequest(BaseModel):
    """Body of `POST /scrape` (in)."""

    model_config = ConfigDict(extra="forbid")

    #: The start URL; or give `urls` instead (then `url` is set to the first of them).
    url: str = Field(default="", max_length=MAX_URL_LENGTH)
    #: Exactly these pages (at depth 0; their links only with `max_depth` > 0, which then defaults to 0).
    urls: list[Annotated[str, Field(max_length=MAX_URL_LENGTH)]] | None = Field(
        default=None, min_length=1, max_length=MAX_URLS
    )
    knowledge_base_id: Annotated[str, Field(pattern=KB_ID_PATTERN)]
    limit: int = Field(default=1, ge=1, le=MAX_LIMIT)
    max_depth: int | None = Field(default=None, ge=0, le=1000)
    include_paths: list[Annotated[str, Field(max_length=MAX_PATTERN_LENGTH)]] = Field(
        default_factory=list, max_length=MAX_PATTERNS
    )
    exclude_paths: list[Annotated[str, Field(max_length=MAX_PATTERN_LENGTH)]] = Field(
        default_factory=list, max_length=MAX_PATTERNS
    )
    allow_subdomains: bool = False
    formats: list[Format] = Field(
        default_factory=lambda: [Format.MARKDOWN, Format.LINKS, Format.METADATA], min_length=1, max_length=5
    )
    #: Drop navigation, header, footer and aside (or keep only <main>/<article>) in markdown and text.
    only_main_content: bool = True
    #: Seconds: a URL this knowledge base fetched less long ago is served from the store, with no request at all.
    max_age: int = Field(default=0, ge=0, le=365 * 86400)
    #: URLs from the site's sitemaps (robots.txt `Sitemap:` lines, `/sitemap.xml`): added to the crawl
    #: (`include`), the only URLs crawled (`only`), or not looked for (`skip`).
    sitemap: Literal["include", "only", "skip"] = "include"
    webhook: WebhookConfig | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return urls.validate_submitted_url(value) if value else value

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        return list(dict.fromkeys(urls.validate_submitted_url(value) for value in values))

    @model_validator(mode="after")
    def _one_start(self) -> ScrapeRequest:
        if self.urls is None:
            if not self.url:
                raise ValueError("give `url` or `urls`")
            return self
        if self.url and self.url != self.urls[0]:
            raise ValueError("give `url` or `urls`, not both")
        self.url = self.urls[0]
        if "limit" not in self.model_fields_set:
            self.limit = len(self.urls)
        if "max_depth" not in self.model_fields_set:
            self.max_depth = 0
        return self

    def start_urls(self) -> list[str]:
        return self.urls if self.urls is not None else [self.url]

    @field_validator("include_paths", "exclude_paths")
    @classmethod
    def _check_patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except (re.error, RecursionError, OverflowError) as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return patterns

    @field_validator("formats")
    @classmethod
    def _dedupe_formats(cls, formats: list[Format]) -> list[Format]:
        return list(dict.fromkeys(formats))


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Delivery(BaseModel):
    """Where the webhook delivery of one event stands (stored under `tenant:{id}:delivery:{event_id}`)."""

    event_id: str
    type: str
    url: str
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


class WebhookState(BaseModel):
    """A task's webhook subscription and the delivery of its lifecycle events (out)."""

    url: str
    events: list[EventType]
    deliveries: list[Delivery]


class Change(enum.StrEnum):
    """A page against its knowledge base's previous version of the same URL."""

    NEW = "new"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    #: The knowledge base held the URL and it now answers 404 or 410.
    REMOVED = "removed"


class ChangeCounts(BaseModel):
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0

    def count(self, change: Change) -> None:
        setattr(self, change.value, getattr(self, change.value) + 1)


class SitemapError(BaseModel):
    url: str
    code: str
    message: str


class SitemapReport(BaseModel):
    """What sitemap discovery found for a task: files read, URLs taken, and each file that failed."""

    files: int = 0
    urls: int = 0
    errors: list[SitemapError] = Field(default_factory=list)
    #: The URLs came from the knowledge base's discovery of less than `max_age` ago: no sitemap was fetched.
    cached: bool = False


class TaskError(BaseModel):
    code: str
    message: str


class Progress(BaseModel):
    pages_done: int = 0
    pages_failed: int = 0
    pages_skipped: int = 0


class Task(BaseModel):
    """A task as stored under `tenant:{id}:task:{task_id}` (stored)."""

    task_id: str
    tenant_id: str
    status: TaskStatus = TaskStatus.QUEUED
    request: ScrapeRequest
    progress: Progress = Field(default_factory=Progress)
    #: Pages by their change against the knowledge base (as of the last checkpoint).
    changes: ChangeCounts = Field(default_factory=ChangeCounts)
    sitemap: SitemapReport | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: TaskError | None = None
    slices: int = 0  # slices run so far (a long crawl continues in follow-up messages)
    #: While the start page is being tried again: when its first attempt began (epoch s), for its time budget.
    start_page_since: float | None = None
    #: Times a dead-lettered slice message was sent again (deliveries lost to crashes are not the slice's fault).
    revivals: int = 0

    def public(self, *, cancel_requested: bool = False, deliveries: list[Delivery] | None = None) -> TaskPublic:
        req = self.request
        webhook = None
        if req.webhook is not None and deliveries is not None:
            webhook = WebhookState(url=req.webhook.url, events=req.webhook.events, deliveries=deliveries)
        return TaskPublic(
            task_id=self.task_id,
            status=self.status,
            url=req.url,
            knowledge_base_id=req.knowledge_base_id,
            limit=req.limit,
            progress=self.progress,
            changes=self.changes,
            sitemap=self.sitemap,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            error=self.error,
            cancel_requested=cancel_requested and self.status not in TERMINAL,
            webhook=webhook,
            status_url=f"/tasks/{self.task_id}",
            pages_url=f"/tasks/{self.task_id}/pages",
            events_url=f"/tasks/{self.task_id}/events",
        )


class TaskPublic(BaseModel):
    """A task as the API shows it (out)."""

    task_id: str
    status: TaskStatus
    url: str
    knowledge_base_id: str
    limit: int
    progress: Progress
    changes: ChangeCounts
    sitemap: SitemapReport | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: TaskError | None
    cancel_requested: bool = False
    #: Present when the task subscribed a webhook and the view includes its deliveries.
    webhook: WebhookState | None = None
    status_url: str
    pages_url: str
    events_url: str


class TaskAccepted(BaseModel):
    """Body of the 202 answer to `POST /scrape` (out)."""

    task_id: str
    status: TaskStatus
    status_url: str
    created_at: datetime


class TaskList(BaseModel):
    tasks: list[TaskPublic]
    next_cursor: str | None


class PageError(BaseModel):
    code: str
    message: str


class Page(BaseModel):
    """One crawled page, stored under `tenant:{id}:task:{task_id}:page:{seq}` and served as is."""

    url: str
    final_url: str | None = None
    status_code: int | None = None
    depth: int = 0
    title: str | None = None
    description: str | None = None
    language: str | None = None
    markdown: str | None = None
    text: str | None = None
    html: str | None = None
    links: list[str] | None = None
    content_hash: str | None = None
    fetched_at: datetime = Field(default_factory=utcnow)
    error: PageError | None = None
    #: Against the knowledge base's previous version of this URL; None for a failure of a URL it never held.
    change: Change | None = None
    #: The server answered 304 to a conditional request: the content is the stored version's.
    not_modified: bool = False
    #: Served from the knowledge base's store under the request's `max_age`: no request was made.
    cached: bool = False


class DocumentVersion(BaseModel):
    """Where a knowledge base's latest version of one URL is, and what a re-crawl compares against."""

    url: str
    task_id: str
    seq: int
    change: Change
    content_hash: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    fetched_at: datetime
    first_seen_at: datetime
    changed_at: datetime
    #: What the stored page holds: a re-crawl reuses it (after a 304, or under `max_age`) only for the same.
    formats: list[Format] = Field(default_factory=list)
    only_main_content: bool = True


class Document(DocumentVersion):
    """Stored under `tenant:{id}:kb:{kb}:doc:{url_key}`: the latest version, and the one before the task that
    wrote it (`previous`), so that a slice run again compares against the same version as its first run."""

    previous: DocumentVersion | None = None

    def base_for(self, task_id: str) -> DocumentVersion | None:
        """What a page of `task_id` is compared with."""
        if self.task_id == task_id:
            return self.previous
        return DocumentVersion.model_validate(self.model_dump(exclude={"previous"}))


class PageList(BaseModel):
    pages: list[Page]
    next_cursor: str | None


class CrawlJob(BaseModel):
    """Queue message: run slice `slice` of a task's crawl (`request_id`: the submit's X-Request-ID, if any)."""

    kind: Literal["crawl"] = "crawl"
    tenant_id: str
    task_id: str
    slice: int = 0
    request_id: str | None = None


class FrontierEntry(BaseModel):
    url: str
    depth: int


class CrawlState(BaseModel):
    """The checkpoint a slice leaves for the next one (stored under `...:task:{id}:state`)."""

    #: The slice that should run next; a message for another slice is a stale duplicate.
    next_slice: int = 0
    #: URLs still to visit, in BFS order.
    frontier: list[FrontierEntry] = Field(default_factory=list)
    #: Short hashes of every URL ever put on the frontier (dedupe), see `urls.url_key`.
    seen: list[str] = Field(default_factory=list)
    #: Sequence number of the next page taken from the frontier (page keys are `page:{seq}`).
    next_seq: int = 0
    progress: Progress = Field(default_factory=Progress)
    changes: ChangeCounts = Field(default_factory=ChangeCounts)
    #: Set once the first slice has looked for sitemaps (None: not yet, or not asked for).
    sitemap: SitemapReport | None = None
