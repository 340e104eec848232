"""Extraction, a pure pipeline: HTML in, markdown, text, links and metadata out. `extract()` is the front door."""

from __future__ import annotations

from consumer.extract.page import Extracted, extract

__all__ = ["Extracted", "extract"]
