"""Receiving scrapeq's webhooks: verify a delivery with your tenant's webhook secret(s) (`WebhookReceiver`)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from shared import signing
from shared.ports import Clock
from shared.signing import TOLERANCE_S, InvalidSignature, secret_key

__all__ = ["InvalidSignature", "WebhookReceiver", "verify"]


def verify(body: bytes, headers: Mapping[str, str], *secrets: str, tolerance_s: int = TOLERANCE_S) -> dict[str, Any]:
    """One delivery checked against the tenant's secret(s): its event, or `InvalidSignature` (forged, stale,
    malformed). The same as `WebhookReceiver(*secrets).verify(body, headers)`."""
    return WebhookReceiver(*secrets, tolerance_s=tolerance_s).verify(body, headers)


class WebhookReceiver:
    """Verifies Standard Webhooks signatures against one or more `whsec_` secrets.

    from scrapeq.webhooks import WebhookReceiver

        receiver = WebhookReceiver("whsec_...")            # during a rotation: WebhookReceiver(new, old)

        @app.post("/hooks/scrapeq")                           # FastAPI / Starlette
        async def hook(event: dict = Depends(receiver)):      # 401 for anything not genuine and fresh
            ...                                               # event["id"] is the webhook-id: dedupe on it

    Without a framework: `receiver.verify(raw_body, headers)` returns the event or raises `InvalidSignature`.
    Malformed headers are an `InvalidSignature` too (never a ValueError or binascii.Error), so they end as 401.
    """

    def __init__(self, *secrets: str, tolerance_s: int = TOLERANCE_S, clock: Clock = time.time) -> None:
        if not secrets:
            raise ValueError("give at least one webhook secret")
        for secret in secrets:
            secret_key(secret)  # a malformed secret is the integrator's bug: fail at start-up, not per request
        self.secrets = secrets
        self.tolerance_s = tolerance_s
        self.clock = clock

    def verify(self, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """The event (`id`, `type`, `timestamp`, `data`) of a genuine, fresh delivery, or `InvalidSignature`."""
        signing.verify(body, headers, self.secrets, now=self.clock(), tolerance_s=self.tolerance_s)
        try:
            event = json.loads(body)
        except ValueError:
            raise InvalidSignature("the signed body is not JSON") from None
        if not isinstance(event, dict):
            raise InvalidSignature("the signed body is not a JSON object")
        lowered = {k.lower(): v for k, v in headers.items()}
        return {"id": lowered["webhook-id"], **event}

    async def __call__(self, request: Request) -> dict[str, Any]:
        """A FastAPI/Starlette dependency: the verified event, or a 401."""
        body = await request.body()
        try:
            return self.verify(body, request.headers)
        except InvalidSignature as exc:
            raise HTTPException(status_code=401, detail=str(exc)) from None
