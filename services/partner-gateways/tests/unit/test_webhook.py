"""The signed webhook (specs/partners.md, `sncf`): signature, rotation, window, ids, retries."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, datetime, timedelta

import pytest
from pimms_partner_gateways.adapters.webhook_signature import (
    delivery_id,
    secrets_from_env,
    sign,
    signed_headers,
    verify,
)
from pimms_partner_gateways.domain.backoff import (
    GIVE_UP_AFTER,
    MAX_GAP,
    classify,
    next_try_at,
    retry_delay,
    schedule,
)

NOW = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
BODY = b'{"referral_id": "r1", "status": "received", "at": "2026-11-27T09:30:00+01:00"}'
CURRENT, PREVIOUS = b"s3cret-2026", b"s3cret-2025"


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    timestamp = int(NOW.timestamp())
    expected = hmac.new(CURRENT, f"{timestamp}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(secret=CURRENT, timestamp=timestamp, body=BODY) == f"sha256={expected}"
    headers = signed_headers(secret=CURRENT, body=BODY, at=NOW, delivery_id="d-1")
    assert headers == {
        "Content-Type": "application/json",
        "X-PIMMS-Delivery": "d-1",
        "X-PIMMS-Timestamp": str(timestamp),
        "X-PIMMS-Signature": f"sha256={expected}",
    }


def test_a_request_signed_with_the_current_or_previous_secret_is_accepted() -> None:
    for secret, index in ((CURRENT, 0), (PREVIOUS, 1)):
        headers = signed_headers(secret=secret, body=BODY, at=NOW, delivery_id="d")
        lower = {name.lower(): value for name, value in headers.items()}  # HTTP names: any case
        result = verify(headers=lower, body=BODY, secrets=(CURRENT, PREVIOUS), now=NOW)
        assert result.ok
        assert result.secret_index == index


def _signed(**changes: str) -> dict[str, str]:
    headers = signed_headers(secret=CURRENT, body=BODY, at=NOW, delivery_id="d")
    headers.update(changes)
    return {name: value for name, value in headers.items() if value != "-"}


@pytest.mark.parametrize(
    ("headers", "body", "secrets", "now", "refusal"),
    [
        (_signed(), BODY + b" ", (CURRENT,), NOW, "bad_signature"),
        (_signed(), BODY, (PREVIOUS,), NOW, "bad_signature"),
        (_signed(), BODY, (), NOW, "bad_signature"),
        (_signed(), BODY, (b"",), NOW, "bad_signature"),
        (_signed(**{"X-PIMMS-Signature": "-"}), BODY, (CURRENT,), NOW, "missing_signature"),
        (_signed(**{"X-PIMMS-Timestamp": "-"}), BODY, (CURRENT,), NOW, "missing_timestamp"),
        (_signed(**{"X-PIMMS-Timestamp": "soon"}), BODY, (CURRENT,), NOW, "bad_timestamp"),
        (_signed(**{"X-PIMMS-Signature": "sha1=abc"}), BODY, (CURRENT,), NOW, "bad_signature"),
        (_signed(**{"X-PIMMS-Signature": "sha256=é"}), BODY, (CURRENT,), NOW, "bad_signature"),
        (_signed(), BODY, (CURRENT,), NOW + timedelta(minutes=5, seconds=1), "stale_timestamp"),
        (_signed(), BODY, (CURRENT,), NOW - timedelta(minutes=5, seconds=1), "stale_timestamp"),
    ],
)
def test_a_bad_signature_or_a_timestamp_out_of_the_window_is_refused(
    headers: dict[str, str], body: bytes, secrets: tuple[bytes, ...], now: datetime, refusal: str
) -> None:
    result = verify(headers=headers, body=body, secrets=secrets, now=now)
    assert not result.ok
    assert result.refusal == refusal


def test_the_window_is_five_minutes_either_way() -> None:
    for drift in (timedelta(minutes=5), -timedelta(minutes=5)):
        assert verify(headers=_signed(), body=BODY, secrets=(CURRENT,), now=NOW + drift).ok


def test_secrets_come_from_the_named_variable_and_its_previous() -> None:
    env = {"PIMMS_SNCF_WEBHOOK_SECRET": "a", "PIMMS_SNCF_WEBHOOK_SECRET_PREVIOUS": "b"}
    assert secrets_from_env(env, secret_env="PIMMS_SNCF_WEBHOOK_SECRET") == (b"a", b"b")
    assert secrets_from_env({"X": "a"}, secret_env="X") == (b"a",)
    assert secrets_from_env({}, secret_env="X") == ()


def test_a_delivery_id_is_stable_across_retries_and_new_for_each_message() -> None:
    first = delivery_id(partner_id="sncf", referral_id="r1", kind="referral")
    assert first == delivery_id(partner_id="sncf", referral_id="r1", kind="referral")
    others = {
        delivery_id(partner_id="sncf", referral_id="r2", kind="referral"),
        delivery_id(partner_id="banque-postale", referral_id="r1", kind="referral"),
        delivery_id(partner_id="sncf", referral_id="r1", kind="cancellation"),
        delivery_id(partner_id="sncf", referral_id="r1", kind="reminder", number=1),
        delivery_id(partner_id="sncf", referral_id="r1", kind="reminder", number=2),
    }
    assert first not in others
    assert len(others) == 5
    assert len(first) == 36


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "delivered"),
        (202, "delivered"),
        (204, "delivered"),
        (None, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (400, "failed"),
        (401, "failed"),
        (404, "failed"),
        (410, "failed"),
        (301, "failed"),
    ],
)
def test_what_an_http_answer_means(status: int | None, outcome: str) -> None:
    assert classify(status) == outcome


def test_retries_start_at_one_second_and_double_without_jitter() -> None:
    middle = lambda: 0.5  # noqa: E731
    delays = [retry_delay(attempt=n, random=middle).total_seconds() for n in range(1, 15)]
    assert delays[:6] == [1, 2, 4, 8, 16, 32]
    assert max(delays) == 3600


def test_jitter_stays_within_twenty_percent_and_the_gap_within_an_hour() -> None:
    assert retry_delay(attempt=1, random=lambda: 0.0) == timedelta(seconds=0.8)
    assert retry_delay(attempt=1, random=lambda: 0.999999) <= timedelta(seconds=1.2)
    source = random.Random(7)
    for attempt in range(1, 40):
        delay = retry_delay(attempt=attempt, random=source.random)
        assert delay <= MAX_GAP
        assert delay >= timedelta(seconds=0.8)


def test_the_schedule_is_deterministic_with_a_seeded_source_and_stops_after_24_hours() -> None:
    first = schedule(first_tried_at=NOW, random=random.Random(42).random)
    assert first == schedule(first_tried_at=NOW, random=random.Random(42).random)
    assert first != schedule(first_tried_at=NOW, random=random.Random(43).random)
    assert all(later > earlier for earlier, later in zip([NOW, *first], first, strict=False))
    assert first[-1] <= NOW + GIVE_UP_AFTER
    assert first[-1] > NOW + GIVE_UP_AFTER - MAX_GAP
    assert 30 < len(first) < 45


def test_after_24_hours_the_delivery_has_failed() -> None:
    late = NOW + GIVE_UP_AFTER - timedelta(seconds=10)
    assert next_try_at(first_tried_at=NOW, failed_at=late, attempt=30, random=lambda: 0.5) is None
    resumed = next_try_at(
        first_tried_at=NOW, failed_at=NOW + timedelta(hours=3), attempt=20, random=lambda: 0.5
    )
    assert resumed == NOW + timedelta(hours=4)  # a restart continues the schedule from its data
    with pytest.raises(ValueError, match="from 1"):
        retry_delay(attempt=0, random=lambda: 0.5)
