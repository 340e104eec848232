"""Logging set-up for entry points: one line per event, text with `key=value` fields or JSON (`shared.logformat`)."""

from __future__ import annotations

from shared import logformat


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Install one stderr handler on the root logger, `text` (key=value fields) or `json` (one object per line)
    (entry points only; library modules never do this)."""
    logformat.install(level, fmt)
