"""The stores over the KV port: tasks, accounts and keys, events, quotas, and listing."""

from __future__ import annotations
