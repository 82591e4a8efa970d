"""Notifications settings (environment variables prefixed `PIMMS_NOTIFICATIONS_`).

Unset, the SMS provider and SMTP settings leave the embedded default: one file per message.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from pathlib import Path
from typing import ClassVar, Self

from pimms_contracts.partners.directory import DEFAULT_DIRECTORY_PATH, DIRECTORY_ENV
from pimms_servicekit.settings import ServiceSettings
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

PREFIX = "PIMMS_NOTIFICATIONS_"
# Brevo: an alphanumeric sender of at most 11 characters, or a number of at most 15 digits.
SMS_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$|^\+?[0-9]{3,15}$")


class NotificationsSettings(ServiceSettings):
    """What notifications needs besides the shared settings."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)
    service_name: ClassVar[str] = "notifications"

    partner_directory: Path = Field(
        default=DEFAULT_DIRECTORY_PATH,
        validation_alias=AliasChoices(
            f"{PREFIX}PARTNER_DIRECTORY", DIRECTORY_ENV, "partner_directory"
        ),
    )
    """The partner directory (TOML), for operator names in messages: the platform's one file
    `PIMMS_PARTNER_DIRECTORY`, unless `PIMMS_NOTIFICATIONS_PARTNER_DIRECTORY` overrides it.
    Reloaded when it changes (a broken version is refused, the last good one stays)."""
    directory_poll_interval_s: float = Field(default=2.0, gt=0)
    """How often (real seconds) the directory file is looked at."""
    mail_from: str = Field(
        default="PIMMS <notifications@pimms.invalid>",
        min_length=3,
        validation_alias=AliasChoices(f"{PREFIX}MAIL_FROM", f"{PREFIX}EMAIL_FROM", "mail_from"),
    )
    """The From of e-mails to visitors (`PIMMS_NOTIFICATIONS_EMAIL_FROM` is its former name)."""

    # The HTTP server (delivery reports, health) is the kit's: `PIMMS_NOTIFICATIONS_HTTP_PORT`,
    # default 8703 (servicekit's HTTP_PORTS).
    public_url: str | None = None
    """How the SMS provider reaches the service (`https://notifications.pimms.example`)."""

    sms_api_url: str | None = None
    """The SMS provider's base URL (`https://api.brevo.com`); unset: SMS are files."""
    sms_api_key: SecretStr | None = None
    sms_sender: str | None = None
    """The sender shown on the phone: at most 11 letters and digits, or a number."""
    sms_report_token: SecretStr | None = Field(default=None, min_length=16)
    """The shared token in our delivery-report URL; reports without it are refused."""
    sms_timeout_s: float = Field(default=10.0, gt=0)

    smtp_host: str | None = None
    """The SMTP server; unset: e-mails are `.eml` files."""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    mail_bounce_dir: Path | None = None
    """A folder where the mail system drops bounces as `.eml` files; unset: no bounce reading."""

    moment_window: timedelta = Field(default=timedelta(seconds=2), ge=timedelta(0))
    """Notices of one case for one person within this (platform time) make one message."""
    moment_window_real_min_s: float = Field(default=2.0, ge=0)
    """On a clock steered faster than real time (`pimms dev --time-scale N`), the window lasts
    at least this many real seconds (N times as much platform time); 0: the setting alone."""
    quiet_hours: str | None = None
    """`HH:MM-HH:MM` (Paris time) when no SMS leaves, or `off`. Unset: `21:00-08:00` when SMS go
    to the provider, off when they are files (a file wakes nobody: `pimms dev` at night)."""
    job_interval_s: float = Field(default=1.0, gt=0)
    """How often (real seconds) the moments, reminders and bounce folder are looked at."""
    visitor_reminder_delay: timedelta = Field(default=timedelta(days=3), gt=timedelta(0))
    """After a hold for missing documents, the visitor is reminded after this, at most twice."""

    @field_validator("sms_sender")
    @classmethod
    def _sender_shape(cls, value: str | None) -> str | None:
        if value is not None and not SMS_SENDER.match(value):
            raise ValueError("at most 11 letters and digits (with a letter), or 3 to 15 digits")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours_shape(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() == "off":
            return value
        match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)", value.strip())
        if match is None or match.group(1, 2) == match.group(3, 4):
            raise ValueError("must be HH:MM-HH:MM (Paris time), e.g. 21:00-08:00, or off")
        return value.strip()

    @field_validator("public_url", "sms_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _sms_provider_complete(self) -> Self:
        if self.sms_api_url is None:
            return self
        needed = {
            "SMS_API_KEY": self.sms_api_key,
            "SMS_SENDER": self.sms_sender,
            "PUBLIC_URL": self.public_url,
            "SMS_REPORT_TOKEN": self.sms_report_token,
        }
        missing = [f"{PREFIX}{name}" for name, value in needed.items() if value is None]
        if missing:
            raise ValueError(f"{PREFIX}SMS_API_URL is set, so {', '.join(missing)} must be too")
        return self

    @property
    def email_from(self) -> str:
        """The From of e-mails (former name of `mail_from`)."""
        return self.mail_from

    @property
    def sms_provider_configured(self) -> bool:
        """Whether SMS go to the provider rather than to files."""
        return self.sms_api_url is not None

    @property
    def sms_quiet_hours(self) -> tuple[time, time] | None:
        """(from, until) Paris time when SMS wait, or None when they never wait."""
        value = self.quiet_hours
        if value is None:
            return (time(21, 0), time(8, 0)) if self.sms_provider_configured else None
        if value.lower() == "off":
            return None
        start, end = value.split("-")
        return time.fromisoformat(start), time.fromisoformat(end)

    @property
    def smtp_configured(self) -> bool:
        """Whether e-mails go to the SMTP server rather than to files."""
        return self.smtp_host is not None

    @property
    def outbox_dir(self) -> Path:
        """Where the embedded channels write one file per message."""
        return self.data_dir / "notifications"
