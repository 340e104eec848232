"""Signed webhooks and the event feed, end to end: API → queue → consumer → a receiver on loopback.

Deliveries are verified with the `standardwebhooks` reference library, not with our own code.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from consumer.fetch.client import build_client
from consumer.handler import JobHandler, make_handler
from producer.app import create_app
from shared.backends.base import Backends
from shared.backends.factory import open_memory_backends
from shared.models import utcnow
from shared.settings import Settings
from shared.signing import headers_for
from shared.stores.accounts import Accounts, new_webhook_secret
from shared.stores.events import EventLog
from tests.conftest import Caller, make_settings, new_caller
from tests.fixtures.receiver import Receiver, serve_receiver
from tests.fixtures.sitegen import generate
from tests.fixtures.static import serve_directory

ALL_EVENTS = ["task.started", "task.page", "task.completed", "task.failed", "task.cancelled"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("site")
    generate(root, pages=60, seed=4)
    with serve_directory(root) as base:
        yield base


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path, webhook_backoff_s=0.05, webhook_max_attempts=4, webhook_timeout_s=1.0, slice_max_pages=4
    )


@pytest.fixture
async def backends(settings: Settings) -> AsyncIterator[Backends[Any]]:
    opened = open_memory_backends(visibility_timeout_s=30, max_retries=3)
    yield opened
    await opened.aclose()


@pytest.fixture
async def api(settings: Settings, backends: Backends[Any]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings, backends=backends))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


@pytest.fixture
async def handler(settings: Settings, backends: Backends[Any]) -> AsyncIterator[JobHandler]:
    async with build_client(settings) as client:
        yield make_handler(settings, backends, client=client)


@pytest.fixture
async def caller(backends: Backends[Any]) -> Caller:
    return await new_caller(backends, "hooks", ["kb"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver(Receiver()) as running:
        yield running


async def drain(backends: Backends[Any], handler: JobHandler, *, timeout_s: float = 30) -> None:
    """Run every message, delayed retries included, until the queue is empty."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for message in await backends.jobs.receive(max_messages=10, wait_s=0.2):
            decision = await handler.handle(message.body, message_id=message.id, attempts=message.attempts)
            if decision.ack:
                await backends.jobs.ack(message)
            else:
                await backends.jobs.retry(message, delay_s=0)
        stats = await backends.jobs.stats()
        if stats.visible == stats.leased == stats.delayed == 0:
            return
    raise AssertionError("the queue did not drain")


async def submit(api: httpx.AsyncClient, caller: Caller, url: str, **fields: Any) -> str:
    body = {"url": url, "knowledge_base_id": "kb", **fields}
    response = await api.post("/scrape", json=body, headers=caller.headers)
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def secret_of(caller: Caller) -> str:
    return caller.tenant.webhook_secrets[0].secret


async def test_deliveries_verify_with_the_reference_library_and_forgeries_do_not(
    api: httpx.AsyncClient, backends: Backends[Any], handler: JobHandler, caller: Caller, receiver: Receiver, site: str
) -> None:
    task_id = await submit(api, caller, f"{site}/index.html", limit=3, webhook={"url": receiver.url()})
    await drain(backends, handler)
    [delivery] = receiver.received  # default subscription: completed and failed only
    webhook = Webhook(secret_of(caller))
    event = webhook.verify(delivery.body, delivery.headers)
    assert event["type"] == "task.completed"
    assert event["data"]["task_id"] == task_id and event["data"]["status"] == "completed"
    assert event["data"]["progress"]["pages_done"] == 3

    with pytest.raises(WebhookVerificationError):
        webhook.verify(delivery.body.replace(b"completed", b"failed!!!"), delivery.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(delivery.body, delivery.headers)
    stale = headers_for([secret_of(caller)], delivery.headers["webhook-id"], int(time.time()) - 600, delivery.body)
    with pytest.raises(WebhookVerificationError):
        webhook.verify(delivery.body, stale)


async def test_a_receiver_failing_twice_gets_one_verified_delivery_with_one_id_and_attempts_recorded(
    api: httpx.AsyncClient, backends: Backends[Any], handler: JobHandler, caller: Caller, site: str
) -> None:
    with serve_receiver(Receiver([500, 500])) as receiver:
        task_id = await submit(api, caller, f"{site}/index.html", webhook={"url": receiver.url()})
        await drain(backends, handler)
    assert [r.headers["webhook-id"] for r in receiver.received] == [receiver.received[0].headers["webhook-id"]] * 3
    webhook = Webhook(secret_of(caller))
    for attempt in receiver.received:  # each attempt is signed afresh and verifies on its own
        webhook.verify(attempt.body, attempt.headers)
    assert len({r.body for r in receiver.received}) == 1  # byte-identical payload on every attempt
    task = (await api.get(f"/tasks/{task_id}", headers=caller.headers)).json()
    [delivery] = task["webhook"]["deliveries"]
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 3
    assert delivery["last_status"] == 200
    assert delivery["delivered_at"] is not None and delivery["next_attempt_at"] is None


async def test_cancelling_a_running_task_emits_exactly_one_cancelled_event_and_the_feed_has_the_webhook_ids(
    api: httpx.AsyncClient, backends: Backends[Any], handler: JobHandler, caller: Caller, receiver: Receiver, site: str
) -> None:
    task_id = await submit(
        api, caller, f"{site}/index.html", limit=50, webhook={"url": receiver.url(), "events": ALL_EVENTS}
    )
    [first] = await backends.jobs.receive(max_messages=1)
    await handler.handle(first.body, message_id=first.id, attempts=1)  # slice 0: the task is running
    await backends.jobs.ack(first)
    assert (await api.get(f"/tasks/{task_id}", headers=caller.headers)).json()["status"] == "running"
    assert (await api.delete(f"/tasks/{task_id}", headers=caller.headers)).status_code == 202
    await drain(backends, handler)
    # A late redelivery of the first slice's message changes nothing.
    await handler.handle(first.body, message_id=first.id, attempts=2)
    await drain(backends, handler)

    types = [json.loads(r.body)["type"] for r in receiver.received]
    assert types.count("task.cancelled") == 1
    assert "task.completed" not in types and "task.failed" not in types
    assert types.count("task.started") == 1
    assert types.count("task.page") == 4  # the one slice that ran before the cancel
    feed = (await api.get(f"/tasks/{task_id}/events", headers=caller.headers)).json()["events"]
    assert sorted(e["id"] for e in feed) == sorted(r.headers["webhook-id"] for r in receiver.received)
    assert feed[0]["type"] == "task.started" and feed[-1]["type"] == "task.cancelled"
    task = (await api.get(f"/tasks/{task_id}", headers=caller.headers)).json()
    assert task["status"] == "cancelled"


async def test_during_a_secret_rotation_both_signatures_are_sent_and_each_verifies(
    api: httpx.AsyncClient, backends: Backends[Any], handler: JobHandler, caller: Caller, receiver: Receiver, site: str
) -> None:
    old = secret_of(caller)
    accounts = Accounts(backends.kv)
    _, new = await accounts.rotate_webhook_secret(caller.tenant.tenant_id, overlap_s=3600)
    await submit(api, caller, f"{site}/index.html", webhook={"url": receiver.url()})
    await drain(backends, handler)
    [delivery] = receiver.received
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(delivery.body, delivery.headers)
    Webhook(new).verify(delivery.body, delivery.headers)

    await accounts.rotate_webhook_secret(caller.tenant.tenant_id, overlap_s=0)  # the overlap is over at once
    await submit(api, caller, f"{site}/index.html", webhook={"url": receiver.url()})
    await drain(backends, handler)
    latest = receiver.received[-1]
    assert len(latest.headers["webhook-signature"].split(" ")) == 1
    for retired in (old, new):
        with pytest.raises(WebhookVerificationError):
            Webhook(retired).verify(latest.body, latest.headers)


async def test_redirects_are_failures_and_never_followed(
    api: httpx.AsyncClient, backends: Backends[Any], handler: JobHandler, caller: Caller, site: str
) -> None:
    with serve_receiver(Receiver([302, 302, 302, 302])) as receiver:
        task_id = await submit(api, caller, f"{site}/index.html", webhook={"url": receiver.url()})
        await drain(backends, handler)
    assert len(receiver.received) == 4  # webhook_max_attempts, all at the same URL
    assert {r.path for r in receiver.received} == {"/hook"}
    [delivery] = (await api.get(f"/tasks/{task_id}", headers=caller.headers)).json()["webhook"]["deliveries"]
    assert delivery["status"] == "failed" and delivery["last_status"] == 302


async def test_a_receiver_that_never_answers_times_out_and_is_retried(
    api: httpx.AsyncClient, backends: Backends[Any], handler: JobHandler, caller: Caller, site: str
) -> None:
    with serve_receiver(Receiver(delay_s=1.5)) as receiver:
        task_id = await submit(api, caller, f"{site}/index.html", webhook={"url": receiver.url()})
        started = time.monotonic()
        await drain(backends, handler, timeout_s=60)
        elapsed = time.monotonic() - started
    [delivery] = (await api.get(f"/tasks/{task_id}", headers=caller.headers)).json()["webhook"]["deliveries"]
    assert delivery["status"] == "failed" and delivery["attempts"] == 4
    assert "no answer within 1 s" in delivery["last_error"]
    assert elapsed < 4 * 1.5 + 5  # each attempt ends at its deadline, not when the receiver answers


async def test_410_gone_stops_the_retries(
    api: httpx.AsyncClient, backends: Backends[Any], handler: JobHandler, caller: Caller, site: str
) -> None:
    with serve_receiver(Receiver([410])) as receiver:
        await submit(api, caller, f"{site}/index.html", webhook={"url": receiver.url()})
        await drain(backends, handler)
    assert len(receiver.received) == 1


async def test_a_webhook_url_on_a_private_address_is_refused_at_submit_and_at_send_time(
    tmp_path: Path, api: httpx.AsyncClient, backends: Backends[Any], caller: Caller, site: str
) -> None:
    refused = await api.post(
        "/scrape",
        json={"url": f"{site}/index.html", "knowledge_base_id": "kb", "webhook": {"url": "http://169.254.169.254/x"}},
        headers=caller.headers,
    )
    assert refused.status_code == 422 and refused.json()["code"] == "url_not_allowed"
    # At send time the guard checks again, since DNS can change: here `localhost` with no exemption.
    strict = make_settings(tmp_path, allow_private_networks="", webhook_max_attempts=1)
    with serve_receiver(Receiver()) as receiver:
        events = EventLog(backends.kv, backends.jobs, retention_s=3600)
        event = await events.record_test(caller.tenant.tenant_id, f"http://localhost:{receiver.port}/hook")
        async with build_client(strict) as client:
            await drain(backends, make_handler(strict, backends, client=client))
    assert receiver.received == []
    delivery = await events.delivery(caller.tenant.tenant_id, event.id)
    assert delivery is not None and delivery.status == "failed"
    assert "not a public address" in (delivery.last_error or "")


async def test_a_failed_delivery_can_be_redelivered(
    api: httpx.AsyncClient, backends: Backends[Any], handler: JobHandler, caller: Caller, site: str
) -> None:
    with serve_receiver(Receiver([500, 500, 500, 500])) as receiver:
        task_id = await submit(api, caller, f"{site}/index.html", webhook={"url": receiver.url()})
        await drain(backends, handler)
        [failed] = (await api.get(f"/tasks/{task_id}", headers=caller.headers)).json()["webhook"]["deliveries"]
        assert failed["status"] == "failed"
        again = await api.post(f"/tasks/{task_id}/webhook/redeliver", headers=caller.headers)
        assert again.status_code == 202 and again.json()["redelivered"] == [failed["event_id"]]
        await drain(backends, handler)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1  # still the same event id
    [delivered] = (await api.get(f"/tasks/{task_id}", headers=caller.headers)).json()["webhook"]["deliveries"]
    assert delivered["status"] == "delivered"


async def test_a_tenant_can_send_a_signed_test_event(
    api: httpx.AsyncClient, backends: Backends[Any], handler: JobHandler, caller: Caller, receiver: Receiver
) -> None:
    sent = await api.post("/webhooks/test", json={"url": receiver.url()}, headers=caller.headers)
    assert sent.status_code == 202
    await drain(backends, handler)
    [delivery] = receiver.received
    assert Webhook(secret_of(caller)).verify(delivery.body, delivery.headers)["type"] == "webhook.test"
    state = (await api.get(sent.json()["delivery_url"], headers=caller.headers)).json()
    assert state["status"] == "delivered" and state["attempts"] == 1
    other = await new_caller(backends, "other", ["kb"])
    assert (await api.get(sent.json()["delivery_url"], headers=other.headers)).status_code == 404


async def test_the_tenant_feed_pages_with_after(
    api: httpx.AsyncClient, backends: Backends[Any], handler: JobHandler, caller: Caller, site: str
) -> None:
    for _ in range(3):
        await submit(api, caller, f"{site}/index.html")
    await drain(backends, handler)
    everything = (await api.get("/events", headers=caller.headers)).json()["events"]
    assert [e["type"] for e in everything] == ["task.started", "task.completed"] * 3
    page = (await api.get("/events?limit=2", headers=caller.headers)).json()
    rest = (await api.get(f"/events?after={page['next_after']}", headers=caller.headers)).json()
    assert [e["id"] for e in page["events"] + rest["events"]] == [e["id"] for e in everything]
    assert rest["next_after"] is None
    other = await new_caller(backends, "other", ["kb"])
    assert (await api.get("/events", headers=other.headers)).json()["events"] == []


async def test_a_task_event_is_recorded_once_however_often_it_is_emitted(
    backends: Backends[Any], caller: Caller, site: str, api: httpx.AsyncClient
) -> None:
    from shared.models import EventType
    from shared.stores.tasks import TaskStore

    task_id = await submit(api, caller, f"{site}/index.html")
    task = await TaskStore(backends.kv).get(caller.tenant.tenant_id, task_id)
    assert task is not None
    events = EventLog(backends.kv, backends.jobs, retention_s=3600)
    first = await events.emit(task, EventType.COMPLETED, kind="terminal")
    task.finished_at = utcnow() + timedelta(seconds=5)
    again = await asyncio.gather(*(events.emit(task, EventType.CANCELLED, kind="terminal") for _ in range(3)))
    assert {e.id for e in again} == {first.id} and {e.type for e in again} == {"task.completed"}
    feed, _ = await events.feed(caller.tenant.tenant_id, task_id=task_id, after=None, limit=100)
    assert [e["type"] for e in feed] == ["task.completed"]


async def test_cancelling_a_queued_task_ends_it_without_starting_it(
    api: httpx.AsyncClient, backends: Backends[Any], handler: JobHandler, caller: Caller, receiver: Receiver, site: str
) -> None:
    task_id = await submit(api, caller, f"{site}/index.html", webhook={"url": receiver.url(), "events": ALL_EVENTS})
    cancelled = await api.delete(f"/tasks/{task_id}", headers=caller.headers)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "queued"
    await drain(backends, handler)
    task = (await api.get(f"/tasks/{task_id}", headers=caller.headers)).json()
    assert task["status"] == "cancelled" and task["started_at"] is None and task["finished_at"] is not None
    assert [json.loads(r.body)["type"] for r in receiver.received] == ["task.cancelled"]
    assert (await api.delete(f"/tasks/{task_id}", headers=caller.headers)).status_code == 200
