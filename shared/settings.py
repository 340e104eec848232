"""Configuration: one settings class, read from `SCRAPEQ_*` variables (or a `.env` file, or a Worker's bindings)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PREFIX = "SCRAPEQ_"


class Settings(BaseSettings):
    """Every knob of the service. Units are in the names; defaults are production values."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore", frozen=True)

    # --- where things live
    data_dir: Path = Path("./.scrapeq")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"
    #: `text` (a line with key=value fields) or `json` (one object per line, for log search).
    log_format: Literal["text", "json"] = "text"

    # --- network guard
    #: CIDRs exempt from the guard (tests, intranets). Comma-separated in the environment.
    allow_private_networks: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    user_agent: str = "scrapeq/0.1 (+https://github.com/scrapeq/scrapeq)"

    # --- fetching one page
    #: What moves the bytes in a local consumer: aiohttp (cheap per page) or httpx's own httpcore. Same guard.
    fetch_engine: Literal["aiohttp", "httpx"] = "aiohttp"
    fetch_connect_timeout_s: float = Field(default=10.0, gt=0)
    fetch_read_timeout_s: float = Field(default=20.0, gt=0)
    #: Deadline for one page, all redirect hops and the whole body included.
    fetch_total_timeout_s: float = Field(default=30.0, gt=0)
    #: A page's whole time from its first request: every attempt (429/503 retries, redeliveries of the start
    #: page) and the waits between them. Waiting for the host's politeness slot before it starts is not counted.
    page_budget_s: float = Field(default=60.0, gt=0, le=3600)
    fetch_max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    fetch_max_redirects: int = Field(default=10, ge=0)
    fetch_max_url_length: int = Field(default=2083, gt=0)
    fetch_max_links_per_page: int = Field(default=2000, gt=0)

    # --- crawling
    #: Pages fetched at once within one crawl slice.
    crawl_concurrency: int = Field(default=16, ge=1, le=256)
    #: A slice stops after this many pages or seconds, checkpoints, and continues in a follow-up message.
    slice_max_pages: int = Field(default=200, ge=1)
    slice_max_s: float = Field(default=60.0, gt=0)
    #: Frontier cap per task, as a multiple of `limit` (bounds checkpoint size on crawl traps).
    frontier_max_factor: int = Field(default=20, ge=1)
    #: How often a running crawl looks for a cancel request.
    cancel_check_interval_s: float = Field(default=0.5, ge=0)
    #: How often a running crawl publishes its progress between checkpoints (one KV write each: ≥ 1 s on
    #: Workers KV, whose limit is one write a second per key).
    progress_interval_s: float = Field(default=1.0, ge=0)
    robots_cache_ttl_s: float = Field(default=3600.0, ge=0)

    # --- politeness and the port rule (consumer; README "Crawl rules"). Per consumer process, not global.
    #: Ports a fetch may use on public addresses; inside `allow_private_networks` every port is allowed.
    fetch_allowed_ports: Annotated[tuple[int, ...], NoDecode] = (80, 443)
    #: Requests one consumer process has open to one host at once, over all its tasks and tenants.
    host_max_concurrency: int = Field(default=4, ge=1, le=256)
    #: Least time between the starts of two requests to one host; a robots.txt `Crawl-delay` raises it.
    host_min_delay_s: float = Field(default=0.0, ge=0)
    #: Cap on a host's `Crawl-delay` and on the pause a 429/503 (`Retry-After`) imposes on it.
    host_max_delay_s: float = Field(default=10.0, ge=0)
    #: Whose gate a host's limits above hold for: `process` (each consumer process its own: N processes may send
    #: N times the limit), `shared` (every process and isolate, through the coordination port: the SQLite file, or
    #: the host's Durable Object), `auto` (shared on Cloudflare, per process locally).
    host_gate: Literal["auto", "process", "shared"] = "auto"
    #: Times a page answered 429 or 503 is tried again (after `Retry-After` or a backoff) within its visit.
    page_retries: int = Field(default=2, ge=0, le=10)

    # --- queue
    queue_visibility_timeout_s: float = Field(default=300.0, gt=0)
    queue_max_retries: int = Field(default=3, ge=0, le=100)
    #: Times a task's current slice is sent again after its message was dead-lettered (each time with
    #: `queue_max_retries` more deliveries), before the task fails with `retries_exhausted`.
    queue_max_revivals: int = Field(default=3, ge=0, le=100)
    queue_retry_base_s: float = Field(default=5.0, ge=0)
    queue_retry_max_s: float = Field(default=3600.0, ge=0, le=43_200)
    #: Name of the dead-letter queue on Cloudflare: its messages fail their tasks instead of running.
    dead_letter_queue: str = "scrapeq-jobs-dlq"
    #: Slices (messages) one worker process runs at once.
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    #: On SIGTERM/SIGINT a worker starts no page; pages still in flight after this many seconds are abandoned
    #: and, with the pages not yet committed, handed back in a checkpoint that another worker continues at once.
    shutdown_grace_s: float = Field(default=5.0, ge=0, le=600)

    # --- webhooks and events
    #: First retry delay; later ones grow 4× each (jittered), capped at 12 h.
    webhook_backoff_s: float = Field(default=30.0, ge=0)
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    #: One attempt's deadline, connection and answer included.
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=10)
    #: How long events and delivery records are kept (the event feed's reach).
    event_retention_s: float = Field(default=30 * 24 * 3600, ge=60)
    #: The longest an event feed's long poll (`?wait=`) holds a request: a proxy's idle timeout may want less.
    feed_max_wait_s: float = Field(default=30.0, ge=0, le=30)

    # --- API
    max_request_body_bytes: int = Field(default=64 * 1024, gt=0)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    #: Per-key token bucket: sustained requests per second and burst size.
    rate_limit_per_s: float = Field(default=10.0, gt=0)
    rate_limit_burst: int = Field(default=50, ge=1)

    # --- abusive clients: rate limits per tenant and per client address, quotas (README "Limits and quotas")
    #: Token bucket of a tenant, all its keys together (a tenant's own `limits` replace it and the per-key one).
    tenant_rate_limit_per_s: float = Field(default=20.0, gt=0)
    tenant_rate_limit_burst: int = Field(default=100, ge=1)
    #: Token bucket per client address (an IPv6 /64), applied before authentication.
    ip_rate_limit_per_s: float = Field(default=20.0, gt=0)
    ip_rate_limit_burst: int = Field(default=100, ge=1)
    #: Buckets each in-process limiter keeps; beyond, the least recently used are forgotten (memory bound).
    rate_limit_max_buckets: int = Field(default=20_000, ge=100)
    #: The request header a proxy in front of the API puts the client's address in (its last entry is used),
    #: e.g. `X-Forwarded-For`. Empty: the connection's peer. Never set it when clients can reach the API
    #: directly: they would choose their own address. A Worker always uses `CF-Connecting-IP`.
    client_ip_header: str = ""
    #: Default quotas of a tenant: tasks queued or running at once, and pages reserved per UTC day. 0: no quota.
    max_concurrent_tasks: int = Field(default=20, ge=0)
    max_pages_per_day: int = Field(default=100_000, ge=0)
    #: How long a new task index key may take to show in every KV listing: the pages-per-day sum is checkpointed
    #: only for keys older than this (a Worker uses at least 120 s, KV's propagation being up to ~60 s).
    quota_settle_s: float = Field(default=1.0, ge=0)

    # --- backups (the consumer Worker's daily Cron Trigger; README "Backups")
    #: Days a backup in the R2 bucket is kept: the daily run deletes the days older than this.
    backup_retention_days: int = Field(default=30, ge=1, le=3650)

    # --- operator metrics (local processes)
    #: `GET /metrics` on the API answers only with `Authorization: Bearer <this>`; empty: not served at all.
    metrics_token: SecretStr = Field(default=SecretStr(""))

    @field_validator("metrics_token")
    @classmethod
    def _long_token(cls, value: SecretStr) -> SecretStr:
        if 0 < len(value.get_secret_value()) < 16:
            raise ValueError("SCRAPEQ_METRICS_TOKEN must be at least 16 characters (or empty: no /metrics)")
        return value

    @field_validator("allow_private_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return tuple(ipaddress.ip_network(part, strict=False) for part in value)

    @field_validator("fetch_allowed_ports", mode="before")
    @classmethod
    def _parse_ports(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        ports = tuple(int(part) for part in value)
        if not all(0 < port < 65536 for port in ports):
            raise ValueError("ports are 1-65535")
        return ports

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Build settings from a mapping such as a Worker's `env` vars: `SCRAPEQ_X` keys, prefix optional."""
        fields = {}
        for name, value in values.items():
            key = name[len(PREFIX) :] if name.upper().startswith(PREFIX) else name
            if key.lower() in cls.model_fields:
                fields[key.lower()] = value
        return cls(**fields)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "scrapeq.sqlite3"
