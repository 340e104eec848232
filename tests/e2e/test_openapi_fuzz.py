"""Schemathesis over `/openapi.json` of a real `scrapeq dev`, with a valid key: no server error, every answer's
status and content type declared for its route, every body valid against its declared schema."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import GENEROUS_LIMITS, Cli

pytestmark = [pytest.mark.e2e]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: Examples per operation: the whole run stays well under two minutes.
EXAMPLES = int(os.environ.get("SCRAPEQ_FUZZ_EXAMPLES", "40"))


VALID_BODIES = {
    "POST /scrape": {"url": "http://127.0.0.1:9/", "knowledge_base_id": "kb_fuzz", "limit": 2},
    "POST /webhooks/test": {"url": "http://127.0.0.1:9/hook"},
}
#: Required query parameters that generated text nearly never satisfies.
VALID_QUERIES = {"DELETE /knowledge-bases/{kb}/documents": {"url": "http://127.0.0.1:9/"}}


@pytest.fixture(scope="module")
def dev() -> Iterator[tuple[str, str]]:
    """(base URL, API key) of a `scrapeq dev` with generous rate limits (the fuzzer is one fast client)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Quick retries: the seed task's refused start page ends it in a second, not after minutes of backoff.
        # Long polls answer within 0.3 s: a fuzzer sending `wait=30` to an empty feed would otherwise wait it out.
        cli = Cli(root / "data", SCRAPEQ_QUEUE_RETRY_BASE_S="0.1", SCRAPEQ_FEED_MAX_WAIT_S="0.3", **GENEROUS_LIMITS)
        try:
            key = cli.new_key("fuzz", "kb_fuzz")
            yield cli.start_http("dev", root / "dev.log"), key
        finally:
            cli.stop_all()


def ended_task(base: str, headers: dict[str, str]) -> tuple[str, str]:
    """A task of the tenant that has ended (its URL refuses connections), and the id of its terminal event."""
    body = {"url": "http://127.0.0.1:9/", "knowledge_base_id": "kb_fuzz", "webhook": {"url": "http://127.0.0.1:9/"}}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        task_id = client.post("/scrape", json=body).json()["task_id"]
        deadline = time.monotonic() + 60
        while client.get(f"/tasks/{task_id}").json()["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, "the seed task did not end"
            time.sleep(0.2)
        events = client.get(f"/tasks/{task_id}/events").json()["events"]
    return task_id, events[-1]["id"]


def test_every_operation_answers_as_its_openapi_document_says(dev: tuple[str, str]) -> None:
    base, key = dev
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    headers = {"Authorization": f"Bearer {key}"}
    task_id, event_id = ended_task(base, headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    failures: list[str] = []
    seen: Counter[tuple[str, int]] = Counter()
    for operation in operations:
        strategy = operation.as_strategy() | operation.as_strategy(GenerationMode.NEGATIVE)
        # Random ids only meet 404s: also aim at the real task and its terminal event.
        names = {p.name for p in operation.path_parameters}
        real = {"task_id": task_id, "event_id": event_id, "kb": "kb_fuzz"}
        if names:
            strategy |= operation.as_strategy(path_parameters={name: real[name] for name in names})
        if operation.label in VALID_BODIES:  # generated bodies are nearly all refused: also send accepted ones
            strategy |= operation.as_strategy(body=VALID_BODIES[operation.label])
        if operation.label in VALID_QUERIES:
            query = VALID_QUERIES[operation.label]
            strategy |= operation.as_strategy(query=query, path_parameters={"kb": "kb_fuzz"})

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(base_url=base, headers=headers, checks=CHECKS, timeout=15)
            seen[(case.operation.label, response.status_code)] += 1

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, reported together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    succeeded = {label for label, status in seen if 200 <= status < 300}
    assert succeeded == {operation.label for operation in operations}, "an operation was never answered with 2xx"
