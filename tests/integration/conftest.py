"""Fixtures for integration tests: a loopback HTTP server per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.httpserver import LoopbackServer


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server
