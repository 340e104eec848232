"""Standard Webhooks signatures (pure): signing on the sending side, verification for receivers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300


class InvalidSignature(ValueError):
    """The request is not a genuine, fresh delivery signed with one of the given secrets."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one delivery.

    Signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 with the base64-decoded secret
    (`whsec_` prefix optional), sent as `v1,<base64>`; several signatures are space-separated, which is how a
    secret rotation keeps old and new receivers working during the overlap.
    """
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per active secret, space-separated."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def headers_for(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    body: bytes, headers: Mapping[str, str], secrets: Iterable[str], *, now: float, tolerance_s: int = TOLERANCE_S
) -> None:
    """Raise `InvalidSignature` unless the headers carry a valid, fresh signature by one of `secrets`.

    Every malformed input (missing headers, a non-numeric timestamp, a signature that is not `v1,<base64>`)
    is an `InvalidSignature`, never another exception, so a receiver can always answer 401.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_ts = lowered.get("webhook-timestamp")
    header = lowered.get("webhook-signature")
    if not msg_id or not raw_ts or not header:
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    timestamp = _timestamp(raw_ts)
    if abs(now - timestamp) > tolerance_s:
        raise InvalidSignature("timestamp outside the tolerance (stale or from the future)")
    # Bytes, not str: compare_digest refuses non-ASCII str, and a hostile header may contain anything.
    offered = [sig[3:].encode("utf-8", "replace") for sig in header.split() if sig.startswith("v1,")]
    for secret in secrets:
        expected = sign(secret, msg_id, timestamp, body)[3:].encode()
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise InvalidSignature("no signature matches")


def _timestamp(raw: str) -> int:
    try:
        value = float(raw)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not a number") from None
    if not math.isfinite(value) or not raw.strip().isdigit():
        raise InvalidSignature("webhook-timestamp must be integer seconds")
    return int(value)
