"""The embedded backend: KV, queues and the quota ledger in one SQLite file."""

from __future__ import annotations
