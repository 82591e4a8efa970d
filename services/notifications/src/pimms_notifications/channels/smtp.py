"""E-mail through an SMTP server (aiosmtplib): one connection per message, STARTTLS by default."""

from __future__ import annotations

import aiosmtplib

from pimms_notifications.channels import (
    Delivered,
    DeliveryResult,
    OutgoingMessage,
    PermanentFailure,
    TransientFailure,
)
from pimms_notifications.channels.email_message import build_email, message_id_for

DEFAULT_TIMEOUT_S = 30.0


def result_of_smtp_error(error: aiosmtplib.SMTPException) -> DeliveryResult:
    """What an SMTP error means: a 5xx on the recipient or the content is final, the rest is not.

    A refused sender, a failed login or a missing STARTTLS is our configuration, not the
    visitor's address: retried (an operator fixes it) rather than falling back.
    """
    match error:
        case aiosmtplib.SMTPRecipientsRefused():
            codes = [refused.code for refused in error.recipients]
            if codes and all(code >= 500 for code in codes):
                return PermanentFailure(reason=f"smtp_recipient_refused_{codes[0]}")
            return TransientFailure(reason=f"smtp_recipient_deferred_{codes[0] if codes else 0}")
        case aiosmtplib.SMTPRecipientRefused() | aiosmtplib.SMTPDataError() if error.code >= 500:
            kind = "recipient" if isinstance(error, aiosmtplib.SMTPRecipientRefused) else "data"
            return PermanentFailure(reason=f"smtp_{kind}_refused_{error.code}")
        case aiosmtplib.SMTPAuthenticationError():
            return TransientFailure(reason="smtp_authentication_failed")
        case aiosmtplib.SMTPResponseException():
            return TransientFailure(reason=f"smtp_{error.code}")
        case aiosmtplib.SMTPTimeoutError():
            return TransientFailure(reason="smtp_timeout")
        case aiosmtplib.SMTPNotSupported():
            return TransientFailure(reason="smtp_not_supported")
        case _:
            return TransientFailure(reason="smtp_unreachable")


class SmtpEmailChannel:
    """Sends e-mails (text and HTML) to an SMTP server; a re-delivery has the same Message-ID."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self._username = username
        self._password = password
        self.starttls = starttls
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"SmtpEmailChannel(host={self.host!r}, port={self.port})"  # never the password

    async def deliver(self, message: OutgoingMessage) -> DeliveryResult:
        """Send the e-mail; classify what the server answered (never raises for that)."""
        email = build_email(message, sender=self.sender)
        try:
            await aiosmtplib.send(
                email,
                hostname=self.host,
                port=self.port,
                username=self._username,
                password=self._password,
                start_tls=self.starttls,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPException as exc:
            return result_of_smtp_error(exc)
        except OSError:
            return TransientFailure(reason="smtp_unreachable")
        return Delivered(
            provider_message_id=message_id_for(message.notification_id, sender=self.sender)
        )
