"""Notifications settings (environment variables prefixed `PIMMS_NOTIFICATIONS_`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pimms_contracts.partners.directory import DEFAULT_DIRECTORY_PATH
from pimms_servicekit.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class NotificationsSettings(ServiceSettings):
    """What notifications needs besides the shared settings."""

    model_config = SettingsConfigDict(
        env_prefix="PIMMS_NOTIFICATIONS_", extra="ignore", frozen=True
    )
    service_name: ClassVar[str] = "notifications"

    partner_directory: Path = DEFAULT_DIRECTORY_PATH
    """The partner directory (TOML), for operator names in messages."""
    email_from: str = Field(default="PIMMS <notifications@pimms.invalid>", min_length=3)
    """The From of e-mails to visitors."""

    @property
    def outbox_dir(self) -> Path:
        """Where the embedded channels write one file per message."""
        return self.data_dir / "notifications"
