"""Reporting settings (environment variables prefixed `PIMMS_REPORTING_`)."""

from __future__ import annotations

from typing import ClassVar

from pimms_servicekit.settings import ServiceSettings
from pydantic_settings import SettingsConfigDict


class ReportingSettings(ServiceSettings):
    """What reporting needs: the shared settings only (database, broker, HTTP port 8704)."""

    model_config = SettingsConfigDict(env_prefix="PIMMS_REPORTING_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "reporting"
