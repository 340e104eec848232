"""The consumer Worker's side of Cloudflare Queues: `dispatch_batch` acks or retries each message by itself.

Run on both shapes a batch can have: raw JS objects in Pyodide (the harness builds a JS batch whose messages
record their `ack()` / `retry(options)` calls, as the runtime's own frozen SDK hands it over), and the SDK
wrapper's Python objects (plain fakes here, on CPython).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from shared.backends.cloudflare import ERROR_RETRY_BASE_S, dispatch_batch
from shared.backends.kvlimits import MAX_DELAY_S
from shared.ports import Message
from tests.cloudflare.client import Harness

QUEUE = "scrapeq-jobs"
NESTED = {"task": "t1", "none": None, "nested": {"list": [1, None, {"deep": None}], "ü": "☃"}}
#: What the handler does with each message: ack, retry after N seconds, or raise.
MESSAGES: list[dict[str, Any]] = [
    {"id": "m-ack", "body": NESTED, "attempts": 1, "decision": "ack"},
    {"id": "m-retry", "body": {"n": 2}, "attempts": 2, "decision": 30},
    {"id": "m-fraction", "body": {"n": 3}, "attempts": 1, "decision": 0.2},
    {"id": "m-clamped", "body": {"n": 4}, "attempts": 1, "decision": 100_000},
    {"id": "m-raises", "body": {"n": 5}, "attempts": 3, "decision": "raise"},
    {"id": "m-ack-too", "body": {"n": 6}, "attempts": 1, "decision": "ack"},
    {"id": "m-text", "body": "not an object", "attempts": 1, "decision": "ack"},
]


class FakeMessage:
    """A message as the SDK wrapper presents it: Python values, methods forwarding to JS (recorded here)."""

    def __init__(self, spec: dict[str, Any], calls: list[dict[str, Any]]) -> None:
        self.id, self.body, self.attempts = spec["id"], spec["body"], spec["attempts"]
        self._calls = calls

    def ack(self, *args: Any) -> None:
        self._calls.append({"id": self.id, "method": "ack", "args": len(args)})

    def retry(self, *args: Any, **kwargs: Any) -> None:
        options = args[0] if args else kwargs
        self._calls.append({"id": self.id, "method": "retry", "args": len(args), "options": dict(options)})


async def run_wrapped(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The same scenario as the harness's `batch`, over Python fakes on CPython."""
    calls: list[dict[str, Any]] = []
    batch = type("Batch", (), {"queue": QUEUE, "messages": [FakeMessage(spec, calls) for spec in messages]})()
    decisions = {spec["id"]: spec["decision"] for spec in messages}
    seen: list[dict[str, Any]] = []
    active = [0, 0]

    async def handle(queue: str, message: Message) -> float | None:
        seen.append({"queue": queue, "id": message.id, "attempts": message.attempts, "body": message.body})
        active[0] += 1
        active[1] = max(active)
        await asyncio.sleep(0.05)
        active[0] -= 1
        decision = decisions[message.id]
        if decision == "raise":
            raise RuntimeError(f"scripted failure of {message.id}")
        return None if decision == "ack" else float(decision)

    await dispatch_batch(batch, handle)
    return {"seen": seen, "calls": calls, "max_in_flight": active[1]}


@pytest.fixture(params=["raw-js-in-pyodide", "sdk-wrapped"])
def shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def dispatched(shape: str, request: pytest.FixtureRequest, messages: list[dict[str, Any]]) -> dict[str, Any]:
    if shape == "sdk-wrapped":
        return await run_wrapped(messages)
    harness: Harness = request.getfixturevalue("cloudflare_harness")
    result: dict[str, Any] = await harness.call(
        "run", {"scenario": "batch", "args": {"queue": QUEUE, "messages": messages}}
    )
    return result


@pytest.fixture
async def outcome(shape: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    return await dispatched(shape, request, MESSAGES)


def calls_of(outcome: dict[str, Any], message_id: str) -> list[tuple[str, Any]]:
    return [(call["method"], call.get("options")) for call in outcome["calls"] if call.get("id") == message_id]


def test_each_message_is_settled_exactly_once_and_never_the_whole_batch(outcome: dict[str, Any]) -> None:
    assert sorted(call["id"] for call in outcome["calls"]) == sorted(spec["id"] for spec in MESSAGES)
    assert not [call for call in outcome["calls"] if call["method"] in ("ackAll", "retryAll")]


def test_none_acks_and_a_number_retries_after_that_many_whole_seconds(outcome: dict[str, Any]) -> None:
    assert calls_of(outcome, "m-ack") == [("ack", None)]
    assert calls_of(outcome, "m-retry") == [("retry", {"delaySeconds": 30})]
    assert calls_of(outcome, "m-fraction") == [("retry", {"delaySeconds": 1})]  # rounded up, never sooner


def test_retry_delay_is_clamped_to_cloudflares_maximum(outcome: dict[str, Any]) -> None:
    assert calls_of(outcome, "m-clamped") == [("retry", {"delaySeconds": MAX_DELAY_S})]


def test_a_raising_handler_retries_its_message_with_backoff_and_spares_the_others(outcome: dict[str, Any]) -> None:
    [(method, options)] = calls_of(outcome, "m-raises")
    nominal = ERROR_RETRY_BASE_S * 2 ** (3 - 1)  # third attempt
    assert method == "retry" and math.floor(nominal / 2) <= options["delaySeconds"] <= math.ceil(nominal)
    assert calls_of(outcome, "m-ack-too") == [("ack", None)]


async def test_retry_passes_js_one_plain_options_object(request: pytest.FixtureRequest) -> None:
    outcome = await dispatched("raw-js-in-pyodide", request, MESSAGES)  # only JS can tell an Object from a Map
    kinds = {call["kind"] for call in outcome["calls"] if call["method"] == "retry"}
    assert kinds == {"[object Object]"}
    assert {(call["method"], call["args"]) for call in outcome["calls"]} == {("ack", 0), ("retry", 1)}


def test_handler_gets_python_values_with_nulls_as_none(shape: str, outcome: dict[str, Any]) -> None:
    [seen] = [entry for entry in outcome["seen"] if entry["id"] == "m-ack"]
    assert (seen["queue"], seen["attempts"], seen["body"]) == (QUEUE, 1, NESTED)
    if shape == "raw-js-in-pyodide":  # the types as Pyodide saw them: no JsProxy, no jsnull
        assert seen["types"] == {
            "attempts": "int",
            "body": {
                "task": "str",
                "none": "NoneType",
                "nested": {"list": ["int", "NoneType", {"deep": "NoneType"}], "ü": "str"},
            },
        }


def test_a_body_that_is_not_an_object_is_acked_without_reaching_the_handler(outcome: dict[str, Any]) -> None:
    assert "m-text" not in {entry["id"] for entry in outcome["seen"]}
    assert calls_of(outcome, "m-text") == [("ack", None)]


def test_messages_of_a_batch_are_handled_concurrently(outcome: dict[str, Any]) -> None:
    assert outcome["max_in_flight"] == len(MESSAGES) - 1  # all but the text body, which never reaches it
