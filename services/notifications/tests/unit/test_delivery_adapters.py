"""Channels as the dispatcher sees them: delivered, retry later, or refused for good."""

from __future__ import annotations

import email
import json
import uuid
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from pimms_notifications.channels import (
    Delivered,
    OutgoingMessage,
    PermanentFailure,
    TransientFailure,
)
from pimms_notifications.channels.bounces import archive_bounce, parse_bounce, scan_bounce_folder
from pimms_notifications.channels.brevo import (
    BrevoSmsChannel,
    DeliveryReportError,
    delivery_report_url,
    parse_delivery_report,
    report_token_valid,
    result_of_response,
    sms_payload,
)
from pimms_notifications.channels.email_message import build_email
from pimms_notifications.channels.factory import delivery_channels
from pimms_notifications.channels.files import FileEmailChannel, FileSmsChannel
from pimms_notifications.channels.smtp import SmtpEmailChannel
from pimms_notifications.settings import NotificationsSettings
from pimms_servicekit.settings import SettingsError

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
NOTIFICATION = uuid.UUID("00000000-0000-5000-8000-000000000001")
SENDER = "PIMMS <notifications@pimms.example>"
REPORT_URL = "https://notifications.pimms.example/sms/delivery-reports?token=s3cret-s3cret-s3cret"


def message(**changes: Any) -> OutgoingMessage:
    base: dict[str, Any] = {
        "notification_id": NOTIFICATION,
        "to": "+33612345678",
        "site_id": "lyon-8",
        "subject": None,
        "body": "PIMMS : Bonjour Marie, votre dossier LYON8-2026-000123 est clos.\n",
        "sent_at": AT,
        "language": "fr",
    }
    return OutgoingMessage(**{**base, **changes})


async def test_a_file_sms_is_delivered_and_a_second_delivery_rewrites_it(tmp_path: Path) -> None:
    channel = FileSmsChannel(tmp_path)
    assert await channel.deliver(message(body="first\n")) == Delivered()
    assert await channel.deliver(message(body="second\n")) == Delivered()
    [written] = list(tmp_path.iterdir())
    assert written.read_text(encoding="utf-8") == "To: +33612345678\n\nsecond\n"


async def test_a_file_that_cannot_be_written_is_a_transient_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    result = await FileSmsChannel(blocker).deliver(message())
    assert isinstance(result, TransientFailure)
    assert result.reason.startswith("file_")


async def test_the_old_send_still_writes_the_file(tmp_path: Path) -> None:
    await FileEmailChannel(tmp_path, sender=SENDER).send(message(subject="S", to="a@b.example"))
    [written] = list(tmp_path.iterdir())
    parsed = email.message_from_bytes(written.read_bytes(), policy=policy.default)
    assert parsed["Message-ID"] == f"<{NOTIFICATION}@pimms.example>"


def test_the_provider_request_says_who_what_and_where_to_report() -> None:
    payload = sms_payload(message(), sender="PIMMS", report_url=REPORT_URL)
    assert payload == {
        "sender": "PIMMS",
        "recipient": "33612345678",
        "content": "PIMMS : Bonjour Marie, votre dossier LYON8-2026-000123 est clos.",
        "type": "transactional",
        "tag": str(NOTIFICATION),
        "webUrl": REPORT_URL,
    }


def test_arabic_is_sent_with_unicode_enabled() -> None:
    payload = sms_payload(
        message(body="PIMMS: مرحبًا، تم إغلاق ملفك.\n", language="ar"),
        sender="PIMMS",
        report_url=REPORT_URL,
    )
    assert payload["unicodeEnabled"] is True
    assert payload["content"] == "PIMMS: مرحبًا، تم إغلاق ملفك."


def test_the_report_url_carries_the_token() -> None:
    assert delivery_report_url("https://n.pimms.example/", token="a b&c") == (
        "https://n.pimms.example/sms/delivery-reports?token=a+b%26c"
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (201, b'{"messageId": 1511882900176220}', Delivered("1511882900176220")),
        (200, b"", Delivered(None)),
        (500, b"oops", TransientFailure("sms_http_500")),
        (503, b"", TransientFailure("sms_http_503")),
        (429, b"", TransientFailure("sms_http_429")),
        (401, b'{"code": "unauthorized"}', TransientFailure("sms_http_401")),
        (
            400,
            b'{"code": "invalid_parameter", "message": "bad number +33612345678"}',
            PermanentFailure("sms_http_400_invalid_parameter"),
        ),
        (404, b"not json", PermanentFailure("sms_http_404")),
    ],
)
def test_the_providers_answer_is_classified(status: int, body: bytes, expected: object) -> None:
    assert result_of_response(status, body) == expected


def test_a_rate_limit_says_when_to_come_back() -> None:
    result = result_of_response(429, b"", httpx.Headers({"Retry-After": "30"}))
    assert result == TransientFailure("sms_http_429", retry_after=timedelta(seconds=30))


async def test_an_unreachable_provider_is_transient_and_a_bad_number_permanent() -> None:
    channel = BrevoSmsChannel(
        api_url="http://127.0.0.1:9", api_key="xkeysib-123", sender="PIMMS", report_url=REPORT_URL
    )
    try:
        assert await channel.deliver(message()) == TransientFailure("sms_unreachable")
        assert await channel.deliver(message(to="+33")) == PermanentFailure("sms_invalid_recipient")
    finally:
        await channel.aclose()
    assert "xkeysib" not in repr(channel)


@pytest.mark.parametrize(
    ("body", "outcome", "reason"),
    [
        ({"messageId": 1511882900176220, "msg_status": "delivered"}, "delivered", None),
        ({"messageId": "abc", "event": "hardBounce"}, "failed", "sms_hard_bounce"),
        ({"messageId": "abc", "status": "softBounce"}, "failed", "sms_soft_bounce"),
        ({"messageId": "abc", "msg_status": "error"}, "failed", "sms_error"),
        ({"messageId": "abc", "msg_status": "hard_bounce"}, "failed", "sms_hard_bounce"),
        ({"messageId": "abc", "msg_status": "sent"}, "pending", None),
        ({"messageId": "abc", "msg_status": "something new"}, "pending", None),
    ],
)
def test_a_delivery_report_gives_the_message_and_its_outcome(
    body: dict[str, Any], outcome: str, reason: str | None
) -> None:
    report = parse_delivery_report(json.dumps(body).encode())
    assert report.message_id == str(body["messageId"])
    assert (report.outcome, report.reason) == (outcome, reason)


def test_a_report_may_be_matched_by_our_tag() -> None:
    report = parse_delivery_report(
        json.dumps({"tag": str(NOTIFICATION), "event": "delivered"}).encode()
    )
    assert (report.message_id, report.tag, report.outcome) == (None, str(NOTIFICATION), "delivered")


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"msg_status": "delivered"}', b'{"messageId": 1}']
)
def test_what_is_not_a_report_is_refused(body: bytes) -> None:
    with pytest.raises(DeliveryReportError):
        parse_delivery_report(body)


def test_the_report_token_must_match() -> None:
    assert report_token_valid(given="s3cret-s3cret-s3cret", expected="s3cret-s3cret-s3cret")
    assert not report_token_valid(given="s3cret-s3cret-s3creT", expected="s3cret-s3cret-s3cret")
    assert not report_token_valid(given=None, expected="s3cret-s3cret-s3cret")
    assert not report_token_valid(given="", expected="")
    assert not report_token_valid(given="é", expected="s3cret")


def parts(built: EmailMessage) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_content()  # type: ignore[attr-defined]
        for part in built.iter_parts()
    }


def test_an_email_has_text_and_html_and_its_message_id() -> None:
    built = build_email(
        message(to="marie@example.org", subject="Dossier X", body="Bonjour <Marie>,\n\nLigne.\n"),
        sender=SENDER,
    )
    parsed = email.message_from_bytes(built.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["Message-ID"] == f"<{NOTIFICATION}@pimms.example>"
    assert parsed["Content-Language"] == "fr"
    assert parsed["Auto-Submitted"] == "auto-generated"
    content = parts(parsed)  # type: ignore[arg-type]
    assert content["text/plain"].replace("\r\n", "\n") == "Bonjour <Marie>,\n\nLigne.\n"
    html = content["text/html"]
    assert '<html lang="fr" dir="ltr">' in html
    assert "<p>Bonjour &lt;Marie&gt;,</p>" in html


def test_an_arabic_email_reads_right_to_left() -> None:
    built = build_email(
        message(to="a@example.org", subject="الملف", body="مرحبًا أمينة،\n", language="ar"),
        sender=SENDER,
    )
    html = parts(built)["text/html"]
    assert '<html lang="ar" dir="rtl">' in html
    assert '<body dir="rtl" style="text-align:right;' in html
    assert "مرحبًا أمينة،" in html


def dsn(*, message_id: str, action: str = "failed", status: str = "5.1.1") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.pimms.example\r\n"
        "To: notifications@pimms.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.pimms.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.pimms.example\r\n\r\n"
        "Final-Recipient: rfc822; marie@example.org\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {SENDER}\r\nTo: marie@example.org\r\nMessage-ID: {message_id}\r\n\r\n"
        "--B--\r\n"
    ).encode()


def test_a_bounce_names_our_notification() -> None:
    bounce = parse_bounce(
        dsn(message_id=f"<{NOTIFICATION}@pimms.example>"), mail_domain="pimms.example"
    )
    assert bounce is not None
    assert (bounce.notification_id, bounce.status, bounce.reason) == (
        NOTIFICATION,
        "5.1.1",
        "email_bounced",
    )


def test_a_delay_warning_or_someone_elses_mail_is_no_bounce() -> None:
    ours = f"<{NOTIFICATION}@pimms.example>"
    assert (
        parse_bounce(
            dsn(message_id=ours, action="delayed", status="4.4.1"), mail_domain="pimms.example"
        )
        is None
    )
    assert (
        parse_bounce(dsn(message_id="<x@elsewhere.example>"), mail_domain="pimms.example") is None
    )
    other_domain = f"<{NOTIFICATION}@other.example>"
    assert parse_bounce(dsn(message_id=other_domain), mail_domain="pimms.example") is None


def test_a_bounce_with_the_whole_message_returned_is_read_too() -> None:
    original = build_email(message(to="marie@example.org", subject="S"), sender=SENDER)
    report = EmailMessage()
    report["Subject"] = "failure notice"
    report.set_content("Sorry, I could not deliver your message.")
    report.add_attachment(original)
    bounce = parse_bounce(report.as_bytes(), mail_domain="pimms.example")
    assert bounce is not None
    assert bounce.notification_id == NOTIFICATION
    assert bounce.status is None


async def test_the_bounce_folder_is_scanned_and_handled_files_set_aside(tmp_path: Path) -> None:
    ours = f"<{NOTIFICATION}@pimms.example>"
    (tmp_path / "1.eml").write_bytes(dsn(message_id=ours))
    (tmp_path / "2.eml").write_bytes(dsn(message_id="<spam@else.example>"))
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    scanned = await scan_bounce_folder(tmp_path, mail_domain="pimms.example")
    assert [(s.path.name, s.bounce.notification_id if s.bounce else None) for s in scanned] == [
        ("1.eml", NOTIFICATION),
        ("2.eml", None),
    ]
    for item in scanned:
        await archive_bounce(item.path)
    assert await scan_bounce_folder(tmp_path, mail_domain="pimms.example") == []
    assert sorted(p.name for p in (tmp_path / "handled").iterdir()) == ["1.eml", "2.eml"]
    assert await scan_bounce_folder(tmp_path / "absent", mail_domain="pimms.example") == []


PROVIDER_ENV = {
    "PIMMS_NOTIFICATIONS_SMS_API_URL": "https://api.brevo.example/",
    "PIMMS_NOTIFICATIONS_SMS_API_KEY": "xkeysib-secret",
    "PIMMS_NOTIFICATIONS_SMS_SENDER": "PIMMS",
    "PIMMS_NOTIFICATIONS_PUBLIC_URL": "https://notifications.pimms.example",
    "PIMMS_NOTIFICATIONS_SMS_REPORT_TOKEN": "s3cret-s3cret-s3cret",
    "PIMMS_NOTIFICATIONS_SMTP_HOST": "smtp.pimms.example",
    "PIMMS_NOTIFICATIONS_SMTP_PORT": "2525",
    "PIMMS_NOTIFICATIONS_SMTP_USERNAME": "pimms",
    "PIMMS_NOTIFICATIONS_SMTP_PASSWORD": "pw",
    "PIMMS_NOTIFICATIONS_SMTP_STARTTLS": "false",
    "PIMMS_NOTIFICATIONS_MAIL_FROM": SENDER,
}


def test_unset_the_channels_are_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIMMS_DATA_DIR", str(tmp_path))
    settings = NotificationsSettings.load()
    channels = delivery_channels(settings)
    assert type(channels["sms"]).__name__ == "FileSmsChannel"
    assert type(channels["email"]).__name__ == "FileEmailChannel"
    assert type(channels["mediator_inbox"]).__name__ == "FileMediatorInbox"
    assert settings.resolved_http_port() == (8703, False)
    assert settings.moment_window == timedelta(seconds=2)


async def test_the_provider_and_smtp_settings_choose_the_real_channels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in PROVIDER_ENV.items():
        monkeypatch.setenv(name, value)
    settings = NotificationsSettings.load()
    channels = delivery_channels(settings)
    sms, mail = channels["sms"], channels["email"]
    assert isinstance(sms, BrevoSmsChannel)
    assert sms.send_url == "https://api.brevo.example/v3/transactionalSMS/send"
    assert sms.report_url == (
        "https://notifications.pimms.example/sms/delivery-reports?token=s3cret-s3cret-s3cret"
    )
    assert isinstance(mail, SmtpEmailChannel)
    assert (mail.host, mail.port, mail.starttls, mail.sender) == (
        "smtp.pimms.example",
        2525,
        False,
        SENDER,
    )
    assert "xkeysib" not in repr(settings)
    assert "pw" not in repr(mail)
    await sms.aclose()


def test_an_incomplete_provider_setting_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIMMS_NOTIFICATIONS_SMS_API_URL", "https://api.brevo.example")
    monkeypatch.setenv("PIMMS_NOTIFICATIONS_SMS_SENDER", "PIMMS")
    with pytest.raises(SettingsError) as error:
        NotificationsSettings.load()
    message_text = str(error.value)
    assert "PIMMS_NOTIFICATIONS_SMS_API_KEY" in message_text
    assert "PIMMS_NOTIFICATIONS_PUBLIC_URL" in message_text
    assert "PIMMS_NOTIFICATIONS_SMS_REPORT_TOKEN" in message_text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PIMMS_NOTIFICATIONS_SMS_SENDER", "A sender far too long"),
        ("PIMMS_NOTIFICATIONS_SMS_REPORT_TOKEN", "short"),
        ("PIMMS_NOTIFICATIONS_PUBLIC_URL", "notifications.pimms.example"),
    ],
)
def test_a_wrong_value_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        NotificationsSettings.load()


def test_the_former_email_from_variable_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIMMS_NOTIFICATIONS_EMAIL_FROM", SENDER)
    settings = NotificationsSettings.load()
    assert settings.email_from == settings.mail_from == SENDER


def test_the_moment_window_keeps_a_real_length_on_a_steered_clock(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from pimms_notifications.app import window_on
    from pimms_servicekit.clock import SteeredClock, SystemClock

    monkeypatch.setenv("PIMMS_DATA_DIR", str(tmp_path))
    demo = SteeredClock(datetime(2026, 11, 27, 8, 0, tzinfo=UTC), anchor=0.0, scale=43_200)
    settings = NotificationsSettings.load()
    assert window_on(SystemClock(), settings) == timedelta(seconds=2)
    assert window_on(demo, settings) == timedelta(days=1)  # 2 real seconds at x43,200
    monkeypatch.setenv("PIMMS_NOTIFICATIONS_MOMENT_WINDOW_REAL_MIN_S", "0")
    assert window_on(demo, NotificationsSettings.load()) == timedelta(seconds=2)
