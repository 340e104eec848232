"""The KV key layout, in one place: everything a tenant owns lives under `tenant:{tenant_id}:`, and a key
several writers could race on is split so that each key has one writer.
"""

from __future__ import annotations

import hashlib

# Newest-first listing: KV lists keys in ascending byte order, so index keys embed an inverted timestamp.
_INVERT_MS = 10**13


def tenant_prefix(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:"


def tenant(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:profile"


def tenant_index(tenant_id: str) -> str:
    """Global: one key per tenant, so operators can list tenants without scanning their data."""
    return f"tenants:{tenant_id}"


TENANT_INDEX_PREFIX = "tenants:"


def api_key_lookup(key_hash: str) -> str:
    """Global: hash of an API key → its tenant and key id (the only way in before the tenant is known)."""
    return f"apikey:{key_hash}"


def api_key(tenant_id: str, key_id: str) -> str:
    return f"tenant:{tenant_id}:key:{key_id}"


def api_keys_prefix(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:key:"


#: Audit entries list newest first: their keys hold this minus the entry's time in ns. (Entries written before,
#: under the plain time, begin with a 1 and list after these, which begin with an 8 until the year 2230.)
_INVERT_NS = 10**19 - 1


def audit(tenant_id: str, at_ns: int, event_id: str) -> str:
    return f"tenant:{tenant_id}:audit:{_INVERT_NS - at_ns:019d}:{event_id}"


def audit_prefix(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:audit:"


def task(tenant_id: str, task_id: str) -> str:
    return f"tenant:{tenant_id}:task:{task_id}"


def task_cancel(tenant_id: str, task_id: str) -> str:
    return f"tenant:{tenant_id}:task:{task_id}:cancel"


def task_state(tenant_id: str, task_id: str) -> str:
    return f"tenant:{tenant_id}:task:{task_id}:state"


def task_progress(tenant_id: str, task_id: str) -> str:
    """A running task's progress between checkpoints (read by GET /tasks/{id}; gone when the task ends)."""
    return f"tenant:{tenant_id}:task:{task_id}:progress"


def task_claim(tenant_id: str, task_id: str) -> str:
    """Which delivery is running the task's current slice (collapses duplicate deliveries)."""
    return f"tenant:{tenant_id}:task:{task_id}:claim"


def page(tenant_id: str, task_id: str, seq: int) -> str:
    # Zero-padded so that listing order is crawl (BFS) order.
    return f"tenant:{tenant_id}:task:{task_id}:page:{seq:06d}"


def pages_prefix(tenant_id: str, task_id: str) -> str:
    return f"tenant:{tenant_id}:task:{task_id}:page:"


def page_seq(key: str) -> int:
    return int(key.rsplit(":", 1)[1])


def _inverted_time(created_ms: int, micros: int) -> str:
    # The microseconds within the millisecond keep tasks of one millisecond in order too. Keys written before
    # they were added (13 digits, then ':') still list in time order among these: they are all older.
    return f"{_INVERT_MS - created_ms:013d}{999 - micros:03d}"


def task_index(tenant_id: str, created_ms: int, task_id: str, *, micros: int = 0) -> str:
    """The tenant's task index, newest first; `micros` (0–999) orders the tasks of one millisecond."""
    return f"tenant:{tenant_id}:tasks:{_inverted_time(created_ms, micros)}:{task_id}"


def task_index_prefix(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:tasks:"


def kb_task_index(tenant_id: str, kb_id: str, created_ms: int, task_id: str, *, micros: int = 0) -> str:
    return f"tenant:{tenant_id}:kbtasks:{kb_id}:{_inverted_time(created_ms, micros)}:{task_id}"


def kb_task_index_prefix(tenant_id: str, kb_id: str) -> str:
    return f"tenant:{tenant_id}:kbtasks:{kb_id}:"


def document(tenant_id: str, kb_id: str, url_key: str) -> str:
    """A knowledge base's latest version of one URL (`url_key`: `urls.url_key` of the normalised URL)."""
    return f"tenant:{tenant_id}:kb:{kb_id}:doc:{url_key}"


def documents_prefix(tenant_id: str, kb_id: str) -> str:
    return f"tenant:{tenant_id}:kb:{kb_id}:doc:"


def sitemap_discovery(tenant_id: str, kb_id: str, digest: str) -> str:
    """The URLs a knowledge base's last sitemap discovery found for one kind of request (`digest`)."""
    return f"tenant:{tenant_id}:kb:{kb_id}:sitemap:{digest}"


def sitemap_discoveries_prefix(tenant_id: str, kb_id: str) -> str:
    return f"tenant:{tenant_id}:kb:{kb_id}:sitemap:"


def task_id_of_index(key: str) -> str:
    return key.rsplit(":", 1)[1]


def created_ms_of_index(key: str) -> int:
    """When the task of a `task_index` key was created (epoch ms)."""
    return _INVERT_MS - int(key.rsplit(":", 2)[1][:13])


def pages_checkpoint(tenant_id: str, day_ms: int, until_ms: int) -> str:
    """The pages reserved by the tenant's tasks created from `day_ms` (a UTC midnight) until `until_ms`; newest
    first, so the latest checkpoint of a day is the first key under `pages_checkpoints_prefix`."""
    return f"tenant:{tenant_id}:pagesday:{day_ms}:{_INVERT_MS - until_ms:013d}"


def pages_checkpoints_prefix(tenant_id: str, day_ms: int) -> str:
    return f"tenant:{tenant_id}:pagesday:{day_ms}:"


def active_task(tenant_id: str, task_id: str) -> str:
    """Present while the task is queued or running: the tenant's concurrency is one `list` of these."""
    return f"tenant:{tenant_id}:active:{task_id}"


def active_tasks_prefix(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:active:"


def idempotency(tenant_id: str, idempotency_key: str) -> str:
    # Hashed: the client's key is arbitrary text up to 255 characters, KV keys are at most 512 bytes.
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return f"tenant:{tenant_id}:idem:{digest}"


def idempotency_prefix(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:idem:"


def event(tenant_id: str, event_id: str) -> str:
    return f"tenant:{tenant_id}:event:{event_id}"


def events_prefix(tenant_id: str) -> str:
    """The tenant's event feed: `{emitted ns}:{event id}` under it, in the order events happened."""
    return f"tenant:{tenant_id}:events:"


def task_events_prefix(tenant_id: str, task_id: str) -> str:
    return f"tenant:{tenant_id}:task:{task_id}:events:"


def delivery(tenant_id: str, event_id: str) -> str:
    return f"tenant:{tenant_id}:delivery:{event_id}"
