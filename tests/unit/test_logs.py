"""The log formats: JSON lines with the trace's ids and the event's fields, text lines as before plus the request
id, secrets masked in both, and the request id rule."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

import pytest

from shared import logformat, tracing
from shared.stores.accounts import new_api_key, new_webhook_secret


def record(message: str, *args: object, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.LogRecord("scrapeq.test", logging.WARNING, __file__, 1, message, args, exc_info)
    made.__dict__.update(extra)
    return made


def as_json(made: logging.LogRecord) -> dict[str, Any]:
    line = logformat.JsonFormatter().format(made)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_a_json_line_has_the_fixed_fields_the_trace_and_the_events_own() -> None:
    with tracing.traced(tracing.Trace(request_id="r-1", tenant_id="tn_a")):
        entry = as_json(record("task %s", "completed", task_id="t1", pages_done=3, at={"n": 1}))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry.pop("time"))
    assert entry == {
        "level": "WARNING",
        "logger": "scrapeq.test",
        "message": "task completed",
        "request_id": "r-1",
        "tenant_id": "tn_a",
        "task_id": "t1",
        "pages_done": 3,
        "at": {"n": 1},
    }


def test_a_records_own_ids_win_over_the_trace_and_outside_a_trace_they_are_null() -> None:
    with tracing.traced(tracing.Trace(request_id="r-1", tenant_id="tn_a", task_id="t0")):
        assert as_json(record("x", tenant_id="tn_b"))["tenant_id"] == "tn_b"
        assert as_json(record("x"))["task_id"] == "t0"
    entry = as_json(record("x"))
    assert entry["request_id"] is None and entry["tenant_id"] is None and entry["task_id"] is None


def test_an_exception_is_one_string_field_and_odd_values_are_text() -> None:
    entry = as_json(record("failed", exc=True, where=object()))
    assert isinstance(entry["exc_info"], str) and "ValueError: boom" in entry["exc_info"]
    assert entry["where"].startswith("<object object")


def test_secrets_never_reach_a_line() -> None:
    key_id, api_key = new_api_key()
    secret = new_webhook_secret()
    made = record(
        "got %s and %s",
        api_key,
        secret,
        webhook_secret=secret,
        authorization=f"Bearer {api_key}",
        note=f"key {api_key}",
        exc=True,
    )
    for line in (logformat.JsonFormatter().format(made), logformat.TextFormatter().format(made)):
        assert api_key not in line and secret not in line and api_key[-20:] not in line
        assert f"sq_{key_id}_" in line  # the key id stays: it names the key without giving it away
    entry = as_json(made)
    assert entry["webhook_secret"] == entry["authorization"] == logformat.REDACTED


def test_a_text_line_keeps_its_format_and_appends_the_request_id() -> None:
    formatter = logformat.TextFormatter()
    with tracing.traced(tracing.Trace(request_id="r-9", tenant_id="tn_ctx")):
        line = formatter.format(record("task %s", "completed", task_id="t1", pages_done=2))
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING scrapeq\.test: task completed "
        r"tenant_id=tn_ctx task_id=t1 pages_done=2 request_id=r-9",
        line,
    ), line
    assert formatter.format(record("plain")).endswith("scrapeq.test: plain")


def test_install_puts_one_handler_of_the_format_on_the_root_logger() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        logformat.install("debug", "json")
        assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, logformat.JsonFormatter)
        assert root.level == logging.DEBUG
        with pytest.raises(ValueError):
            logformat.install("info", "yaml")
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


@pytest.mark.parametrize("value", ["a", "my-trace-123", "A.b:c_d-9", "x" * 128])
def test_a_sane_request_id_is_kept(value: str) -> None:
    assert tracing.sane_request_id(value) == value


@pytest.mark.parametrize("value", [None, "", "x" * 129, "has space", "semi;colon", "new\nline", "ünï", "a/b"])
def test_an_insane_request_id_is_refused(value: str | None) -> None:
    assert tracing.sane_request_id(value) is None


def test_a_new_request_id_is_fresh_and_sane() -> None:
    ids = {tracing.new_request_id() for _ in range(100)}
    assert len(ids) == 100 and all(re.fullmatch(r"req_[0-9a-f]{24}", i) and tracing.sane_request_id(i) for i in ids)
