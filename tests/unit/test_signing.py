"""Standard Webhooks signing and verification, the receiver helper, and the delivery schedule."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from fastapi import Depends, FastAPI
from standardwebhooks import Webhook

from scrapeq.webhooks import WebhookReceiver
from shared.retry import MAX_QUEUE_DELAY_S, webhook_delay_s
from shared.signing import InvalidSignature, headers_for, sign, verify
from shared.stores.accounts import new_webhook_secret

KAT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOW = 1_800_000_000


def test_signature_matches_the_reference_known_answer() -> None:
    # From the standard-webhooks reference tests (test_sign_function).
    signature = sign(KAT_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_reference_library_verifies_our_headers() -> None:
    secret = new_webhook_secret()
    body = b'{"type":"task.completed"}'
    headers = headers_for([secret], "msg_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"type": "task.completed"}


def test_our_verify_accepts_any_of_several_secrets() -> None:
    old, new = new_webhook_secret(), new_webhook_secret()
    body = b"{}"
    headers = headers_for([new, old], "msg_1", NOW, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    verify(body, headers, [old], now=NOW)
    verify(body, headers, [new], now=NOW)
    with pytest.raises(InvalidSignature):
        verify(body, headers, [new_webhook_secret()], now=NOW)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"webhook-signature": "v1"}, id="v1-alone"),
        pytest.param({"webhook-signature": "garbage"}, id="garbage"),
        pytest.param({"webhook-signature": "v1,!!!"}, id="not-base64"),
        pytest.param({"webhook-signature": "v1,a,b"}, id="too-many-commas"),
        pytest.param({"webhook-signature": "v1,ünïcödé"}, id="non-ascii"),
        pytest.param({"webhook-signature": ""}, id="empty"),
        pytest.param({"webhook-timestamp": "nan"}, id="ts-nan"),
        pytest.param({"webhook-timestamp": "1e20"}, id="ts-huge"),
        pytest.param({"webhook-timestamp": "-5"}, id="ts-negative"),
        pytest.param({"webhook-timestamp": str(NOW - 301)}, id="ts-stale"),
        pytest.param({"webhook-timestamp": str(NOW + 301)}, id="ts-future"),
        pytest.param({"webhook-id": "msg_other"}, id="other-id"),
        pytest.param({"webhook-id": None}, id="no-id"),
        pytest.param({"webhook-signature": None}, id="no-signature"),
    ],
)
def test_malformed_or_forged_headers_are_an_invalid_signature_never_another_error(
    change: dict[str, str | None],
) -> None:
    secret = new_webhook_secret()
    headers: dict[str, str] = headers_for([secret], "msg_1", NOW, b"{}")
    for name, value in change.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    with pytest.raises(InvalidSignature):
        verify(b"{}", headers, [secret], now=NOW)


def receiver_app(secret: str) -> FastAPI:
    app = FastAPI()
    receiver = WebhookReceiver(secret, clock=lambda: NOW)

    @app.post("/hook")
    async def hook(event: dict[str, object] = Depends(receiver)) -> dict[str, object]:  # noqa: B008
        return {"got": event["id"]}

    return app


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        pytest.param(b'{"a":1}', None, id="tampered-body"),
        pytest.param(b"{}", {"webhook-signature": "v1"}, id="v1-alone"),
        pytest.param(b"{}", {"webhook-signature": "v1,!!!"}, id="not-base64"),
        pytest.param(b"{}", {"webhook-timestamp": "soon"}, id="bad-timestamp"),
        pytest.param(b"{}", {"webhook-id": ""}, id="empty-id"),
    ],
)
async def test_the_receiver_helper_answers_401_for_bad_deliveries_never_500(
    body: bytes, headers: dict[str, str] | None
) -> None:
    secret = new_webhook_secret()
    signed = headers_for([secret], "msg_1", NOW, b"{}")
    signed.update(headers or {})
    transport = httpx.ASGITransport(app=receiver_app(secret))
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
        assert (
            await client.post("/hook", content=b"{}", headers=headers_for([secret], "msg_1", NOW, b"{}"))
        ).json() == {"got": "msg_1"}
        response = await client.post("/hook", content=body, headers=signed)
    assert response.status_code == 401


def test_the_receiver_helper_refuses_a_malformed_secret_at_start_up() -> None:
    with pytest.raises(ValueError):
        WebhookReceiver("whsec_not base64!")


def test_a_verified_event_carries_its_id() -> None:
    secret = new_webhook_secret()
    body = json.dumps({"type": "task.page", "timestamp": "t", "data": {}}).encode()
    event = WebhookReceiver(secret, clock=lambda: NOW).verify(body, headers_for([secret], "msg_9", NOW, body))
    assert event["id"] == "msg_9" and event["type"] == "task.page"


def test_the_default_schedule_makes_at_least_five_attempts_over_at_least_an_hour() -> None:
    delays = [webhook_delay_s(n, base_s=30, jitter=False) for n in range(1, 8)]
    assert delays[:4] == [30, 120, 480, 1920]
    assert sum(delays[:4]) < 3600 < sum(delays[:5])  # attempt 6 comes after more than an hour
    assert all(d <= MAX_QUEUE_DELAY_S for d in delays)
    assert delays[-1] == MAX_QUEUE_DELAY_S


def test_jitter_stays_within_20_percent_and_retry_after_is_honoured() -> None:
    for _ in range(100):
        assert 24 <= webhook_delay_s(1, base_s=30) <= 36
    assert webhook_delay_s(1, base_s=30, retry_after_s=600, jitter=False) == 600
    assert webhook_delay_s(1, base_s=30, retry_after_s=10**9, jitter=False) == MAX_QUEUE_DELAY_S


def test_the_module_level_verify_returns_the_event_of_a_fresh_delivery_and_refuses_others() -> None:
    from scrapeq import webhooks

    secret, old = new_webhook_secret(), new_webhook_secret()
    body = b'{"type":"task.completed","data":{}}'
    now = int(time.time())
    headers = headers_for([secret], "evt_1", now, body)
    assert webhooks.verify(body, headers, old, secret) == {"id": "evt_1", "type": "task.completed", "data": {}}
    with pytest.raises(InvalidSignature):
        webhooks.verify(body, headers, old)  # not signed with this secret
    with pytest.raises(InvalidSignature):
        webhooks.verify(body, headers_for([secret], "evt_1", now - 3600, body), secret)  # stale
