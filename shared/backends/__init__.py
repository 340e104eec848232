"""Backends behind the ports: embedded SQLite, in-memory, Cloudflare; `factory` opens the local ones."""

from __future__ import annotations
