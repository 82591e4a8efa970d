"""SMS through a Brevo-compatible transactional SMS API, and its delivery reports.

`POST <base>/v3/transactionalSMS/send`, header `api-key`, JSON body: `sender`, `recipient`
(E.164 digits without `+`), `content`, `type: "transactional"`, `tag` (our notification id, the
same on every re-delivery), `webUrl` (where the provider reports delivery, with our shared
token), `unicodeEnabled` (when the text needs UCS-2). It answers `{"messageId": ...}`.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import httpx

from pimms_notifications.channels import (
    Delivered,
    DeliveryResult,
    OutgoingMessage,
    PermanentFailure,
    TransientFailure,
)
from pimms_notifications.domain.sms import sms_encoding, sms_text

SEND_PATH = "/v3/transactionalSMS/send"
REPORT_PATH = "/sms/delivery-reports"
DEFAULT_TIMEOUT_S = 10.0
# 401/403 say our key is wrong, 408 that the provider gave up waiting: none is the visitor's
# fault, so they are retried (an operator fixes the key) instead of falling back to e-mail.
TRANSIENT_STATUSES = frozenset({401, 403, 408, 425, 429})


def delivery_report_url(public_url: str, *, token: str) -> str:
    """`<public_url>/sms/delivery-reports?token=<token>`: where the provider reports to us."""
    return f"{public_url.rstrip('/')}{REPORT_PATH}?{urlencode({'token': token})}"


def recipient_digits(phone: str) -> str:
    """An E.164 number as the provider wants it: digits only (`+33612345678` -> `33612345678`)."""
    digits = re.sub(r"[^0-9]", "", phone)
    if not 8 <= len(digits) <= 15:
        raise ValueError("not an E.164 phone number")
    return digits


def sms_payload(message: OutgoingMessage, *, sender: str, report_url: str) -> dict[str, Any]:
    """The JSON body of the send request for `message`."""
    content = sms_text(message.body)
    payload: dict[str, Any] = {
        "sender": sender,
        "recipient": recipient_digits(message.to),
        "content": content,
        "type": "transactional",
        "tag": str(message.notification_id),
        "webUrl": report_url,
    }
    if sms_encoding(content) == "ucs2":
        payload["unicodeEnabled"] = True
    return payload


def _retry_after(headers: httpx.Headers) -> timedelta | None:
    value = headers.get("retry-after", "").strip()
    return timedelta(seconds=int(value)) if value.isdigit() else None


def _provider_code(body: bytes) -> str | None:
    """The provider's error code (`invalid_parameter`), never its message (it may quote a phone)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    if not isinstance(code, str):
        return None
    cleaned = re.sub(r"[^a-z0-9_]", "_", code.lower())[:40]
    return cleaned or None


def result_of_response(
    status: int, body: bytes, headers: httpx.Headers | None = None
) -> DeliveryResult:
    """What the provider's answer means: delivered with its id, retry later, or refused."""
    headers = headers or httpx.Headers()
    if 200 <= status < 300:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        message_id = data.get("messageId") if isinstance(data, dict) else None
        return Delivered(provider_message_id=None if message_id is None else str(message_id))
    if status >= 500 or status in TRANSIENT_STATUSES:
        return TransientFailure(reason=f"sms_http_{status}", retry_after=_retry_after(headers))
    code = _provider_code(body)
    return PermanentFailure(reason=f"sms_http_{status}" + (f"_{code}" if code else ""))


class BrevoSmsChannel:
    """Sends SMS through the provider; a re-delivery carries the same `tag`."""

    def __init__(
        self,
        *,
        api_url: str,
        api_key: str,
        sender: str,
        report_url: str,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.send_url = api_url.rstrip("/") + SEND_PATH
        self.sender = sender
        self.report_url = report_url
        self._headers = {"api-key": api_key, "accept": "application/json"}
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    def __repr__(self) -> str:
        return f"BrevoSmsChannel(send_url={self.send_url!r})"  # never the key

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        """Post the SMS; classify the answer (never raises for a delivery problem)."""
        try:
            payload = sms_payload(message, sender=self.sender, report_url=self.report_url)
        except ValueError:
            return PermanentFailure(reason="sms_invalid_recipient")
        try:
            response = await self._client.post(self.send_url, json=payload, headers=self._headers)
        except httpx.TimeoutException:
            return TransientFailure(reason="sms_timeout")
        except httpx.TransportError:
            return TransientFailure(reason="sms_unreachable")
        return result_of_response(response.status_code, response.content, response.headers)

    async def aclose(self) -> None:
        """Close the HTTP client when the channel made it."""
        if self._own_client:
            await self._client.aclose()


# --- delivery reports (POST /sms/delivery-reports?token=...) ---

ReportOutcome = Literal["delivered", "failed", "pending"]

_FAILED_STATUSES = {
    "hardbounce": "sms_hard_bounce",
    "softbounce": "sms_soft_bounce",
    "error": "sms_error",
    "rejected": "sms_rejected",
    "blacklisted": "sms_blacklisted",
    "blocked": "sms_blocked",
    "skip": "sms_skipped",
    "skipped": "sms_skipped",
    "failed": "sms_failed",
    "undelivered": "sms_undelivered",
    "expired": "sms_expired",
}
_PENDING_STATUSES = frozenset({"sent", "accepted", "queued", "submitted", "buffered"})


class DeliveryReportError(ValueError):
    """The body is not a delivery report (answer 400; the provider will not fix it by retrying)."""


@dataclass(frozen=True)
class SmsDeliveryReport:
    """What the provider says became of one SMS."""

    message_id: str | None
    """The provider's id, as it answered our send."""
    tag: str | None
    """Our notification id, when the provider echoes the tag."""
    outcome: ReportOutcome
    reason: str | None
    """For a failure, the `notification.failed` reason (`sms_hard_bounce`, ...)."""
    status: str
    """The provider's status word, for the logs."""


def _status_key(value: str) -> str:
    return re.sub(r"[^a-z]", "", value.lower())


def parse_delivery_report(body: bytes) -> SmsDeliveryReport:
    """A report body -> (message id, outcome); DeliveryReportError when it is not one.

    The status is read from `msg_status`, `event` or `status` (Brevo has used each); an unknown
    status is `pending` (ignored), never guessed as a failure.
    """
    try:
        data = json.loads(body)
    except ValueError:
        raise DeliveryReportError("not JSON") from None
    if not isinstance(data, dict):
        raise DeliveryReportError("not a JSON object")
    raw_id = data.get("messageId", data.get("message_id"))
    message_id = None if raw_id is None or isinstance(raw_id, bool) else str(raw_id)
    raw_tag = data.get("tag")
    tag = raw_tag if isinstance(raw_tag, str) and raw_tag else None
    if message_id is None and tag is None:
        raise DeliveryReportError("no messageId")
    status = next(
        (
            value
            for key in ("msg_status", "event", "status")
            if isinstance(value := data.get(key), str) and value
        ),
        None,
    )
    if status is None:
        raise DeliveryReportError("no status")
    key = _status_key(status)
    if key == "delivered":
        return SmsDeliveryReport(message_id, tag, "delivered", None, status)
    if key in _FAILED_STATUSES:
        return SmsDeliveryReport(message_id, tag, "failed", _FAILED_STATUSES[key], status)
    if key not in _PENDING_STATUSES:
        status = "unknown"
    return SmsDeliveryReport(message_id, tag, "pending", None, status)


def report_token_valid(*, given: str | None, expected: str) -> bool:
    """Whether the request carries our shared token (compared in constant time)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
