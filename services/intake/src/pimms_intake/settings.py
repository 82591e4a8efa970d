"""Intake settings (environment variables prefixed `PIMMS_INTAKE_`)."""

from __future__ import annotations

from typing import ClassVar

from pimms_servicekit.settings import ServiceSettings
from pydantic_settings import SettingsConfigDict


class IntakeSettings(ServiceSettings):
    """What intake needs: the shared settings only, for now."""

    model_config = SettingsConfigDict(env_prefix="PIMMS_INTAKE_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "intake"
