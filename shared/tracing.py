"""Request correlation: the request id (X-Request-ID), tenant and task of the work under way, in a context variable
that log lines, job messages and audit entries read; stdlib only (the Workers load it)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

HEADER = "X-Request-ID"
#: A client's id is kept when it is 1–128 of these characters; anything else is replaced by a new one.
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass
class Trace:
    """What is known of the work under way. Mutable: a request learns its tenant (authentication) and its task
    (submit) as it goes, and the access line written at its end sees both."""

    request_id: str | None = None
    tenant_id: str | None = None
    task_id: str | None = None


_CURRENT: ContextVar[Trace | None] = ContextVar("scrapeq_trace", default=None)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def sane_request_id(value: str | None) -> str | None:
    """`value` when it is a usable request id, else None."""
    return value if value is not None and SANE_ID.fullmatch(value) else None


def current() -> Trace | None:
    return _CURRENT.get()


def request_id() -> str | None:
    trace = _CURRENT.get()
    return trace.request_id if trace is not None else None


def note(*, tenant_id: str | None = None, task_id: str | None = None) -> None:
    """Add the tenant or task to the current trace (no-op outside one)."""
    trace = _CURRENT.get()
    if trace is None:
        return
    if tenant_id is not None:
        trace.tenant_id = tenant_id
    if task_id is not None:
        trace.task_id = task_id


@contextmanager
def traced(trace: Trace) -> Iterator[Trace]:
    """Make `trace` the current one for the block (and the tasks it starts)."""
    token = _CURRENT.set(trace)
    try:
        yield trace
    finally:
        _CURRENT.reset(token)
