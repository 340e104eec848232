"""Logging set-up for entry points: one line per event, with task and tenant ids as `key=value` fields."""

from __future__ import annotations

import logging

_FIELDS = ("tenant_id", "task_id", "pages_done", "pages_failed", "pages_skipped")


class _FieldsFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{name}={getattr(record, name)}" for name in _FIELDS if hasattr(record, name))
        return f"{line} {fields}" if fields else line


def configure(level: str = "INFO") -> None:
    """Install one stderr handler on the root logger (entry points only; library modules never do this)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_FieldsFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO: far too chatty for a crawler.
    logging.getLogger("httpx").setLevel(logging.WARNING)
