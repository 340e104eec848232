"""Log line formats: `text` (a line with key=value fields) or `json` (one object per line, for log search), with
the request id, tenant and task of the current trace; stdlib only, so the Workers print the same lines."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from shared import tracing

#: What a text line appends as key=value (today's fields, then the request id).
TEXT_FIELDS = ("tenant_id", "task_id", "pages_done", "pages_failed", "pages_skipped", "request_id")
#: A `LogRecord`'s own attributes (and uvicorn's colour copy of its message): the rest came from `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}
#: Field names whose values are never printed, whoever passes them.
_SECRET_NAME = re.compile(r"secret|password|token|authorization|api_key|cookie", re.IGNORECASE)
#: Values that look like an API key or a webhook secret are masked wherever they appear in a line.
_SECRET_VALUE = re.compile(r"\b(sq_[a-z0-9]+_)[a-z0-9]{8,}|\bwhsec_[A-Za-z0-9+/=]{8,}")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` with anything shaped like an API key or webhook secret masked (the key id of a key stays)."""
    if "sq_" not in text and "whsec_" not in text:
        return text
    return _SECRET_VALUE.sub(lambda m: (m.group(1) or "") + REDACTED, text)


#: What every line names, from the record's own fields (`extra=`) first, else from the current trace.
_CONTEXT = ("request_id", "tenant_id", "task_id")


def _context(record: logging.LogRecord) -> dict[str, Any]:
    """request_id, tenant_id and task_id: the record's own (from `extra=`) first, else the current trace's."""
    trace = tracing.current()
    fields: dict[str, Any] = {}
    for name in _CONTEXT:
        value = record.__dict__.get(name)
        if value is None and trace is not None:
            value = getattr(trace, name)
        fields[name] = value
    return fields


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...` (the development default)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _context(record)
        values = {name: record.__dict__.get(name, context.get(name)) for name in TEXT_FIELDS}
        fields = " ".join(f"{name}={value}" for name, value in values.items() if value is not None)
        return redact(f"{line} {fields}" if fields else line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 UTC, ms), level, logger, message, request_id, tenant_id, task_id,
    the fields the call passed with `extra=`, and `exc_info` as text when there is one."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        # A line per request: the date part is formatted once a second, not once a line.
        second, fraction = divmod(created, 1.0)
        if int(second) != self._second:
            self._second = int(second)
            self._second_text = datetime.fromtimestamp(self._second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{self._second_text}{min(999, int(fraction * 1000)):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        trace = tracing.current()
        for name in _CONTEXT:
            value = fields.get(name)
            entry[name] = getattr(trace, name) if value is None and trace is not None else value
        # The fields of `extra=`, in the order the call gave them (a line per request: no sorting, no set algebra).
        for name, value in fields.items():
            if name not in _RECORD_ATTRS and name not in entry and not name.startswith("_"):
                entry[name] = REDACTED if _secret_name(name) else masked(value)
        if record.exc_info:
            entry["exc_info"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc_info"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return _ENCODER.encode(entry)


_PLAIN = (int, float, bool, type(None))
#: Whether a field name is secret-like, by name (field names come from code: a small, bounded set).
_SECRET_NAMES: dict[str, bool] = {}


def _secret_name(name: str) -> bool:
    found = _SECRET_NAMES.get(name)
    if found is None:
        found = _SECRET_NAME.search(name) is not None
        if len(_SECRET_NAMES) < 4096:
            _SECRET_NAMES[name] = found
    return found


def masked(value: object) -> object:
    """`value` (text, or a JSON-like tree) with secret-shaped strings and secret-named fields masked."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: REDACTED if _secret_name(str(k)) else masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    return value


def masked_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: REDACTED if _secret_name(name) else masked(value) for name, value in fields.items()}


def _jsonable(value: object) -> object:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return redact(str(value))


_ENCODER = json.JSONEncoder(default=_jsonable, ensure_ascii=False, separators=(",", ":"))


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {fmt!r} (expected json or text)")


def install(level: str = "INFO", fmt: str = "text") -> None:
    """One stderr handler on the root logger in format `fmt` (entry points only; library modules never do this)."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO: far too chatty for a crawler.
    logging.getLogger("httpx").setLevel(logging.WARNING)
