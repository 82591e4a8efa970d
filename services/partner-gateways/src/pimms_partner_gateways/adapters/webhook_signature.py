"""The signed-webhook scheme of specs/partners.md (`sncf`, and mapped-json partners on webhooks).

`X-PIMMS-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>` with
`X-PIMMS-Timestamp: <unix seconds>` and `X-PIMMS-Delivery: <uuid, the same on every retry>`.
Pure functions: the caller passes the time (the platform clock) and the secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

CONTENT_TYPE = "Content-Type"
DELIVERY_HEADER = "X-PIMMS-Delivery"
TIMESTAMP_HEADER = "X-PIMMS-Timestamp"
SIGNATURE_HEADER = "X-PIMMS-Signature"
SIGNATURE_PREFIX = "sha256="
WINDOW = timedelta(minutes=5)
PREVIOUS_SUFFIX = "_PREVIOUS"
DELIVERY_NAMESPACE = uuid.UUID("6a4e3870-4a75-5986-bd63-f5495c7ee66b")  # uuid5(URL, pimms.fr/...)

DeliveryKind = Literal["referral", "reminder", "cancellation"]
Refusal = Literal[
    "missing_signature", "missing_timestamp", "bad_timestamp", "stale_timestamp", "bad_signature"
]
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^sha256=[0-9a-f]{64}$")


def sign(*, secret: bytes, timestamp: int, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def signed_headers(*, secret: bytes, body: bytes, at: datetime, delivery_id: str) -> dict[str, str]:
    """The headers of an outbound POST, signed with the current secret at the platform time `at`."""
    timestamp = int(at.timestamp())
    return {
        CONTENT_TYPE: "application/json",
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret=secret, timestamp=timestamp, body=body),
    }


def delivery_id(*, partner_id: str, referral_id: str, kind: DeliveryKind, number: int = 0) -> str:
    """A UUID for one message, the same on every retry; a reminder `n` has its own."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{partner_id}/{referral_id}/{kind}/{number}"))


@dataclass(frozen=True, slots=True)
class Verification:
    """Whether an inbound request is signed by the partner; `refusal` says why not (-> 401)."""

    refusal: Refusal | None = None
    secret_index: int | None = None  # 0 the current secret, 1 the previous one

    @property
    def ok(self) -> bool:
        """True when the signature and timestamp are good."""
        return self.refusal is None


def verify(
    *,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[bytes],
    now: datetime,
    window: timedelta = WINDOW,
) -> Verification:
    """Check timestamp window and signature (constant time, against every secret given)."""
    found = {name.lower(): value for name, value in headers.items()}
    signature = found.get(SIGNATURE_HEADER.lower())
    timestamp_text = found.get(TIMESTAMP_HEADER.lower())
    if not signature:
        return Verification(refusal="missing_signature")
    if not timestamp_text:
        return Verification(refusal="missing_timestamp")
    if not _TIMESTAMP.match(timestamp_text):
        return Verification(refusal="bad_timestamp")
    timestamp = int(timestamp_text)
    if abs(now.timestamp() - timestamp) > window.total_seconds():
        return Verification(refusal="stale_timestamp")
    given = signature.strip().lower().encode("ascii", errors="replace")
    matched: int | None = None
    for index, secret in enumerate(secrets):
        if not secret:
            continue
        expected = sign(secret=secret, timestamp=timestamp, body=body).encode()
        # every secret is compared, so the time taken does not tell which one matched
        if hmac.compare_digest(expected, given) and matched is None:
            matched = index
    if matched is None or not _SIGNATURE.match(given.decode()):
        return Verification(refusal="bad_signature")
    return Verification(secret_index=matched)


def secrets_from_env(environ: Mapping[str, str], *, secret_env: str) -> tuple[bytes, ...]:
    """The current secret and, during a rotation, the previous one (`<secret_env>_PREVIOUS`)."""
    names = (secret_env, secret_env + PREVIOUS_SUFFIX)
    return tuple(environ[name].encode() for name in names if environ.get(name))
