"""The Cloudflare adapters on CPython over fakes shaped as the SDK-wrapped bindings (Python values in and out):
what they send to a binding, how they read its answers, and which calls they refuse before making them.
The same adapters run in Pyodide over Miniflare's real bindings in tests/contract."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from shared.backends import cloudflare
from shared.backends.cloudflare import (
    CloudflareKV,
    CloudflareQueue,
    CloudflareRateLimiter,
    cloudflare_backends,
    cloudflare_rate_limiters,
    dispatch_batch,
    list_result,
    retry_delay_s,
    settings_from_env,
)
from shared.backends.jsvalues import is_js_error, to_js_object, to_py
from shared.backends.kvlimits import MAX_DELAY_S
from shared.errors import StorageError
from shared.ports import KeyInfo, ListResult, Message
from shared.ratelimit import RatePolicy
from tests.fixtures.jsfakes import JsException


class FakeBinding:
    """Records every call; answers with `answers[method]` (a value, or an exception to raise)."""

    def __init__(self, **answers: Any) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.answers = answers

    def __getattr__(self, method: str) -> Any:
        async def call(*args: Any) -> Any:
            self.calls.append((method, args))
            answer = self.answers.get(method)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return call


def test_conversions_are_the_identity_outside_pyodide() -> None:
    value = {"a": [1, None, {"b": None}]}
    assert to_py(value) is value
    assert to_js_object(value) is value


def test_js_errors_are_told_apart_from_python_ones() -> None:
    assert is_js_error(JsException("TypeError: fetch failed"))
    assert not is_js_error(ValueError("ours"))


# --- list answers


def test_last_page_without_cursor_is_complete() -> None:
    page = list_result({"keys": [{"name": "a", "expiration": 1_800_000_060}, {"name": "b"}], "list_complete": True})
    assert page == ListResult([KeyInfo("a", 1_800_000_060.0), KeyInfo("b")], list_complete=True)
    assert isinstance(page.keys[0].expiration, float)


def test_empty_page_that_is_not_complete_keeps_its_cursor() -> None:
    page = list_result({"keys": [], "list_complete": False, "cursor": "c2", "cacheStatus": None})
    assert page == ListResult([], list_complete=False, cursor="c2")


def test_cursor_on_a_complete_page_is_dropped() -> None:
    assert list_result({"keys": [], "list_complete": True, "cursor": ""}).cursor is None


def test_incomplete_page_without_cursor_is_an_error_not_a_silent_end() -> None:
    with pytest.raises(StorageError):
        list_result({"keys": [{"name": "a"}], "list_complete": False})


def test_metadata_comes_back_as_stored() -> None:
    page = list_result({"keys": [{"name": "a", "metadata": {"n": 1, "x": None}}], "list_complete": True})
    assert page.keys == [KeyInfo("a", None, {"n": 1, "x": None})]


# --- KV


async def test_put_sends_whole_second_ttl_and_json_metadata_as_one_options_object() -> None:
    binding = FakeBinding()
    await CloudflareKV(binding).put("k", "v", ttl_s=60.5, metadata={"tags": ("a", "b"), "none": None})
    assert binding.calls == [("put", ("k", "v", {"expirationTtl": 61, "metadata": {"tags": ["a", "b"], "none": None}}))]


async def test_put_without_options_passes_none() -> None:
    binding = FakeBinding()
    await CloudflareKV(binding).put("k", "v")
    assert binding.calls == [("put", ("k", "v"))]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda kv: kv.put("k", "v", ttl_s=59), ValueError),
        (lambda kv: kv.put("k", "v", ttl_s=math.inf), ValueError),
        (lambda kv: kv.put("k" * 513, "v"), ValueError),
        (lambda kv: kv.put("k", "v", metadata={"x": "y" * 1024}), ValueError),
        (lambda kv: kv.put("k", b"v"), TypeError),
        (lambda kv: kv.get(".."), ValueError),
        (lambda kv: kv.delete(""), ValueError),
        (lambda kv: kv.list(limit=1001), ValueError),
    ],
)
async def test_refused_calls_never_reach_the_binding(call: Any, error: type[Exception]) -> None:
    binding = FakeBinding()
    with pytest.raises(error):
        await call(CloudflareKV(binding))
    assert binding.calls == []


async def test_list_sends_only_the_options_given() -> None:
    binding = FakeBinding(list={"keys": [], "list_complete": True})
    kv = CloudflareKV(binding)
    await kv.list()
    await kv.list(prefix="task:", limit=10, cursor="c1")
    assert [args for _, args in binding.calls] == [
        ({"limit": 1000},),
        ({"limit": 10, "prefix": "task:", "cursor": "c1"},),
    ]


async def test_get_of_a_missing_key_is_none() -> None:
    assert await CloudflareKV(FakeBinding(get=None)).get("k") is None


async def test_get_that_is_not_text_is_a_storage_error() -> None:
    with pytest.raises(StorageError):
        await CloudflareKV(FakeBinding(get={"json": True})).get("k")


async def test_binding_failure_is_a_storage_error() -> None:
    binding = FakeBinding(put=JsException("Error: KV PUT failed: 503 Service Unavailable"))
    with pytest.raises(StorageError, match="503"):
        await CloudflareKV(binding).put("k", "v")
    assert len(binding.calls) == 1  # only rate limiting is worth an immediate second try


class FlakyPut:
    """A namespace that refuses the first `refusals` writes with KV's one-write-per-second 429."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.calls = 0

    async def put(self, *args: Any) -> None:
        self.calls += 1
        if self.calls <= self.refusals:
            raise JsException("Error: KV PUT failed: 429 Too Many Requests")


async def test_a_rate_limited_write_is_tried_again_after_a_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloudflare, "RATE_LIMITED_RETRIES_S", (0.01, 0.01, 0.01))
    binding = FlakyPut(refusals=2)
    await CloudflareKV(binding).put("k", "v")
    assert binding.calls == 3


async def test_a_write_still_rate_limited_after_the_pauses_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloudflare, "RATE_LIMITED_RETRIES_S", (0.01, 0.01))
    binding = FlakyPut(refusals=10)
    with pytest.raises(StorageError, match="429"):
        await CloudflareKV(binding).put("k", "v")
    assert binding.calls == 3


# --- queue producer


@pytest.mark.parametrize(
    ("delay_s", "options"),
    [
        (0, {"contentType": "json"}),
        (0.2, {"contentType": "json", "delaySeconds": 1}),
        (30, {"contentType": "json", "delaySeconds": 30}),
        (MAX_DELAY_S, {"contentType": "json", "delaySeconds": MAX_DELAY_S}),
    ],
)
async def test_send_passes_json_and_a_whole_second_delay(delay_s: float, options: dict[str, Any]) -> None:
    binding = FakeBinding()
    await CloudflareQueue(binding).send({"t": ("a",), "n": None}, delay_s=delay_s)
    assert binding.calls == [("send", ({"t": ["a"], "n": None}, options))]


@pytest.mark.parametrize("body", [{"x": "a" * 128_000}, {"x": {1}}, {"x": math.nan}], ids=["big", "set", "nan"])
async def test_unsendable_body_never_reaches_the_binding(body: dict[str, Any]) -> None:
    binding = FakeBinding()
    with pytest.raises(ValueError):
        await CloudflareQueue(binding).send(body)
    assert binding.calls == []


# --- wiring


async def test_backends_come_from_the_env_bindings() -> None:
    env = SimpleNamespace(KV=FakeBinding(get=None), JOBS=FakeBinding())
    backends = cloudflare_backends(env)
    assert (backends.name, backends.dead_letters) == ("cloudflare", None)
    assert isinstance(backends.kv, CloudflareKV) and isinstance(backends.jobs, CloudflareQueue)
    await backends.ping()
    await backends.aclose()
    assert [method for method, _ in env.KV.calls] == ["get"]


def test_settings_read_the_scrapeq_vars_and_skip_absent_ones() -> None:
    env = SimpleNamespace(
        SCRAPEQ_USER_AGENT="bot/1",
        SCRAPEQ_FETCH_MAX_REDIRECTS="3",
        SCRAPEQ_ALLOW_PRIVATE_NETWORKS="10.0.0.0/8, 192.168.0.0/16",
        SCRAPEQ_SLICE_MAX_S=None,  # what a JS null var reads as
        OTHER="ignored",
    )
    settings = settings_from_env(env)
    assert (settings.user_agent, settings.fetch_max_redirects, len(settings.allow_private_networks)) == ("bot/1", 3, 2)
    assert settings.slice_max_s == 60.0


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(-1, 0), (0, 0), (math.nan, 0), (0.2, 1), (30, 30), (30.5, 31), (MAX_DELAY_S, MAX_DELAY_S), (1e9, MAX_DELAY_S)],
)
def test_retry_delay_is_whole_seconds_within_cloudflares_range(seconds: float, expected: int) -> None:
    assert retry_delay_s(seconds) == expected


async def test_a_message_whose_ack_throws_does_not_stop_the_others() -> None:
    settled: list[str] = []

    class Message_:
        def __init__(self, message_id: str) -> None:
            self.id, self.body, self.attempts = message_id, {"n": message_id}, 1

        def ack(self) -> None:
            if self.id == "bad":
                raise JsException("Error: ack failed")
            settled.append(self.id)

    async def handle(queue: str, message: Message) -> float | None:
        return None

    batch = SimpleNamespace(queue="q", messages=[Message_("a"), Message_("bad"), Message_("b")])
    await dispatch_batch(batch, handle)
    assert sorted(settled) == ["a", "b"]


# --- the Rate Limiting binding

POLICY = RatePolicy("key", rate_per_s=10, burst=50)


async def test_a_rate_limit_binding_is_asked_with_the_subject_as_key() -> None:
    binding = FakeBinding(limit={"success": True})
    decision = await CloudflareRateLimiter(binding).take("k1", POLICY)
    assert binding.calls == [("limit", ({"key": "k1"},))]
    assert decision.allowed and decision.remaining is None  # the binding does not say what is left


async def test_a_rate_limit_refusal_asks_for_a_retry_after_one_period() -> None:
    decision = await CloudflareRateLimiter(FakeBinding(limit={"success": False}), period_s=60).take("k1", POLICY)
    assert not decision.allowed
    assert decision.retry_after_s == 60
    assert decision.policy == POLICY


async def test_an_unreachable_rate_limit_binding_lets_the_request_through() -> None:
    binding = FakeBinding(limit=JsException("Error: internal error"))
    assert (await CloudflareRateLimiter(binding).take("k1", POLICY)).allowed


def test_only_the_rate_limit_bindings_the_worker_has_are_used() -> None:
    env = SimpleNamespace(RATE_LIMIT_IP=FakeBinding(), RATE_LIMIT_TENANT=FakeBinding())
    assert sorted(cloudflare_rate_limiters(env)) == ["ip", "tenant"]
    assert cloudflare_rate_limiters(SimpleNamespace()) == {}
