"""The e-mail channel against a real local SMTP server (aiosmtpd), started by the test."""

from __future__ import annotations

import email
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pimms_notifications.channels import (
    Delivered,
    OutgoingMessage,
    PermanentFailure,
    TransientFailure,
)
from pimms_notifications.channels.smtp import SmtpEmailChannel

pytestmark = pytest.mark.integration

SENDER = "PIMMS <notifications@pimms.example>"
AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
NOTIFICATION = uuid.UUID("00000000-0000-5000-8000-0000000000e1")


@dataclass
class Mailbox:
    """Accepts mail, except for addresses the test makes refuse (code and text)."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Server:
    mailbox: Mailbox
    port: int


@pytest.fixture
def smtp_server() -> Iterator[Server]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Server(mailbox, port)
    finally:
        controller.stop()


def channel(port: int) -> SmtpEmailChannel:
    return SmtpEmailChannel(host="127.0.0.1", port=port, sender=SENDER, starttls=False, timeout_s=5)


def message(**changes: Any) -> OutgoingMessage:
    base: dict[str, Any] = {
        "notification_id": NOTIFICATION,
        "to": "john.smith@example.org",
        "site_id": "lyon-8",
        "subject": "Case LYON8-2026-000123: your request is being handled",
        "body": "Hello John,\n\nGood news: La Poste is handling your request.\n\nThe PIMMS team\n",
        "sent_at": AT,
        "language": "en",
    }
    return OutgoingMessage(**{**base, **changes})


def received_email(server: Server) -> EmailMessage:
    [(_, _, raw)] = server.mailbox.received
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def part(parsed: EmailMessage, kind: str) -> str:
    [found] = [p for p in parsed.walk() if p.get_content_type() == kind]
    content = found.get_content()  # type: ignore[attr-defined]
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


async def test_an_english_email_arrives_with_text_html_and_our_message_id(
    smtp_server: Server,
) -> None:
    result = await channel(smtp_server.port).deliver(message())
    assert result == Delivered(provider_message_id=f"<{NOTIFICATION}@pimms.example>")
    [(mail_from, rcpt_tos, _)] = smtp_server.mailbox.received
    assert (mail_from, rcpt_tos) == ("notifications@pimms.example", ["john.smith@example.org"])
    parsed = received_email(smtp_server)
    assert parsed["Message-ID"] == f"<{NOTIFICATION}@pimms.example>"
    assert parsed["Subject"] == "Case LYON8-2026-000123: your request is being handled"
    assert parsed["From"] == SENDER
    assert parsed.get_content_type() == "multipart/alternative"
    assert "Good news: La Poste is handling your request." in part(parsed, "text/plain")
    html = part(parsed, "text/html")
    assert '<html lang="en" dir="ltr">' in html
    assert "<p>Good news: La Poste is handling your request.</p>" in html


async def test_an_arabic_email_arrives_right_to_left(smtp_server: Server) -> None:
    await channel(smtp_server.port).deliver(
        message(
            to="amina@example.org",
            subject="الملف LYON8-2026-000123: تم إغلاق ملفك",
            body="مرحبًا أمينة،\n\nتم إغلاق ملفك LYON8-2026-000123: تمت معالجة طلبك.\n",
            language="ar",
        )
    )
    parsed = received_email(smtp_server)
    assert parsed["Subject"] == "الملف LYON8-2026-000123: تم إغلاق ملفك"
    assert parsed["Content-Language"] == "ar"
    assert "تم إغلاق ملفك LYON8-2026-000123: تمت معالجة طلبك." in part(parsed, "text/plain")
    html = part(parsed, "text/html")
    assert '<html lang="ar" dir="rtl">' in html
    assert '<body dir="rtl" style="text-align:right;' in html
    assert "<p>مرحبًا أمينة،</p>" in html


async def test_a_redelivery_has_the_same_message_id(smtp_server: Server) -> None:
    sender = channel(smtp_server.port)
    await sender.deliver(message())
    await sender.deliver(message())
    ids = {
        email.message_from_bytes(raw, policy=policy.default)["Message-ID"]
        for _, _, raw in smtp_server.mailbox.received
    }
    assert ids == {f"<{NOTIFICATION}@pimms.example>"}


async def test_an_address_the_server_refuses_is_a_permanent_failure(smtp_server: Server) -> None:
    smtp_server.mailbox.refuse["nobody@example.org"] = "550 5.1.1 No such user"
    result = await channel(smtp_server.port).deliver(message(to="nobody@example.org"))
    assert result == PermanentFailure(reason="smtp_recipient_refused_550")
    assert smtp_server.mailbox.received == []


async def test_a_greylisted_address_is_retried_later(smtp_server: Server) -> None:
    smtp_server.mailbox.refuse["later@example.org"] = "451 4.7.1 Try again later"
    result = await channel(smtp_server.port).deliver(message(to="later@example.org"))
    assert result == TransientFailure(reason="smtp_recipient_deferred_451")


async def test_a_server_not_listening_is_transient() -> None:
    result = await channel(free_port()).deliver(message())
    assert isinstance(result, TransientFailure)
    assert result.reason == "smtp_unreachable"
