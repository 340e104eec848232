"""Crawling: the at-least-once job rules, slices of a crawl, scope, robots.txt and per-host politeness."""

from __future__ import annotations
