"""Fetching a page: the guarded HTTP client, its transports (httpcore, aiohttp, JS fetch) and the fetcher."""

from __future__ import annotations
