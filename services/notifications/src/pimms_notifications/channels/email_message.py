"""E-mails as sent over SMTP: plain text and HTML alternatives, in the visitor's language.

Pure: a message in, an `EmailMessage` out. The `Message-ID` comes from the notification id, so
a re-sent e-mail is recognisably the same one, and a bounce names the notification it is for.
"""

from __future__ import annotations

import html
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from uuid import UUID

from pimms_notifications.channels import OutgoingMessage

RIGHT_TO_LEFT = frozenset({"ar", "he", "fa", "ur"})
DEFAULT_MAIL_DOMAIN = "pimms.invalid"


def mail_domain(sender: str) -> str:
    """The domain of a From address (`PIMMS <notifications@pimms.fr>` -> `pimms.fr`)."""
    return sender.rpartition("@")[2].strip("> ").lower() or DEFAULT_MAIL_DOMAIN


def message_id_for(notification_id: UUID, *, sender: str) -> str:
    """`<notification-id@sender-domain>`: the same notification always has the same Message-ID."""
    return f"<{notification_id}@{mail_domain(sender)}>"


def text_direction(language: str) -> str:
    """`rtl` for the languages written right to left, else `ltr`."""
    return "rtl" if language in RIGHT_TO_LEFT else "ltr"


def to_html(*, body: str, subject: str, language: str) -> str:
    """The plain text as a small HTML page: paragraphs, escaped, in the language's direction."""
    direction = text_direction(language)
    align = "right" if direction == "rtl" else "left"
    paragraphs = [part.strip() for part in body.replace("\r\n", "\n").split("\n\n") if part.strip()]
    inner = "\n".join(
        "<p>" + "<br>\n".join(html.escape(line) for line in part.split("\n")) + "</p>"
        for part in paragraphs
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{html.escape(language)}" dir="{direction}">\n'
        '<head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head>\n"
        f'<body dir="{direction}" style="text-align:{align};'
        ' font-family:Arial,Helvetica,sans-serif; font-size:16px; line-height:1.5">\n'
        f"{inner}\n</body>\n</html>\n"
    )


def build_email(message: OutgoingMessage, *, sender: str) -> EmailMessage:
    """The e-mail for `message`: plain text and HTML alternatives, From, To, Message-ID."""
    subject = message.subject or ""
    email = EmailMessage(policy=policy.SMTP)
    email["From"] = sender
    email["To"] = message.to
    email["Subject"] = subject
    email["Date"] = format_datetime(message.sent_at)
    email["Message-ID"] = message_id_for(message.notification_id, sender=sender)
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    email.set_content(message.body, charset="utf-8", cte="quoted-printable")
    email.add_alternative(
        to_html(body=message.body, subject=subject, language=message.language),
        subtype="html",
        charset="utf-8",
        cte="quoted-printable",
    )
    email["Content-Language"] = message.language  # after set_content, which clears Content-*
    return email
