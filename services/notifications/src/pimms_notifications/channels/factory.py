"""The delivery channels the settings ask for: the provider and SMTP when set, else files."""

from __future__ import annotations

from pimms_contracts.v1.notifications import NotificationChannel
from pimms_servicekit.settings import SettingsError

from pimms_notifications.channels import DeliveryChannel
from pimms_notifications.channels.brevo import BrevoSmsChannel, delivery_report_url
from pimms_notifications.channels.files import FileEmailChannel, FileMediatorInbox, FileSmsChannel
from pimms_notifications.channels.smtp import SmtpEmailChannel
from pimms_notifications.settings import NotificationsSettings


def sms_channel(settings: NotificationsSettings) -> DeliveryChannel:
    """The provider when `PIMMS_NOTIFICATIONS_SMS_API_URL` is set, else one file per SMS."""
    if not settings.sms_provider_configured:
        return FileSmsChannel(settings.outbox_dir / "sms")
    url, key, sender = settings.sms_api_url, settings.sms_api_key, settings.sms_sender
    public_url, token = settings.public_url, settings.sms_report_token
    if url is None or key is None or sender is None or public_url is None or token is None:
        raise SettingsError("the SMS provider settings are incomplete")  # the validator forbids it
    return BrevoSmsChannel(
        api_url=url,
        api_key=key.get_secret_value(),
        sender=sender,
        report_url=delivery_report_url(public_url, token=token.get_secret_value()),
        timeout_s=settings.sms_timeout_s,
    )


def email_channel(settings: NotificationsSettings) -> DeliveryChannel:
    """The SMTP server when `PIMMS_NOTIFICATIONS_SMTP_HOST` is set, else one `.eml` per e-mail."""
    if settings.smtp_host is None:
        return FileEmailChannel(settings.outbox_dir / "email", sender=settings.mail_from)
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpEmailChannel(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.mail_from,
        username=settings.smtp_username,
        password=password,
        starttls=settings.smtp_starttls,
        timeout_s=settings.smtp_timeout_s,
    )


def delivery_channels(
    settings: NotificationsSettings,
) -> dict[NotificationChannel, DeliveryChannel]:
    """One channel per destination, for the dispatchers (close the SMS one with `aclose`)."""
    return {
        "sms": sms_channel(settings),
        "email": email_channel(settings),
        "mediator_inbox": FileMediatorInbox(settings.outbox_dir / "mediator_inbox"),
    }
