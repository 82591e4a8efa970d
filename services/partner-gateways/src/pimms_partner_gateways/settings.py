"""Partner-gateways settings (environment variables prefixed `PIMMS_GATEWAYS_`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pimms_contracts.partners import DEFAULT_DIRECTORY_PATH, load_directory
from pimms_servicekit.settings import ServiceSettings
from pydantic import field_validator
from pydantic_settings import SettingsConfigDict


class GatewaySettings(ServiceSettings):
    """What the gateway needs: the shared settings and the partner directory file."""

    model_config = SettingsConfigDict(env_prefix="PIMMS_GATEWAYS_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "partner-gateways"

    partner_directory: Path = DEFAULT_DIRECTORY_PATH

    @field_validator("partner_directory")
    @classmethod
    def _readable_directory(cls, path: Path) -> Path:
        """Fail at start, naming the variable, rather than at the first referral."""
        load_directory(path)
        return path
