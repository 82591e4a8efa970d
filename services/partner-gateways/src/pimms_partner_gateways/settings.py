"""Partner-gateways settings (environment variables prefixed `PIMMS_GATEWAYS_`).

The partner directory is the platform's one file, `PIMMS_PARTNER_DIRECTORY`, unless
`PIMMS_GATEWAYS_PARTNER_DIRECTORY` overrides it for this service; the packaged one otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pimms_contracts.partners import DEFAULT_DIRECTORY_PATH, DIRECTORY_ENV, load_directory
from pimms_servicekit.settings import ServiceSettings
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict


class GatewaySettings(ServiceSettings):
    """What the gateway needs: the shared settings, the partner directory, its watchers' pace."""

    model_config = SettingsConfigDict(env_prefix="PIMMS_GATEWAYS_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "partner-gateways"

    partner_directory: Path = Field(
        default=DEFAULT_DIRECTORY_PATH,
        validation_alias=AliasChoices(
            "PIMMS_GATEWAYS_PARTNER_DIRECTORY", DIRECTORY_ENV, "partner_directory"
        ),
    )
    # How often the directory file and the partners' inbound folders are looked at.
    directory_poll_interval_s: float = Field(default=2.0, gt=0)
    inbound_poll_interval_s: float = Field(default=1.0, gt=0)
    # Lines of an inbound file applied (and recorded as applied) per transaction.
    inbound_lines_per_transaction: int = Field(default=200, ge=1, le=10_000)
    # The largest webhook body the gateway reads (a partner's answer is a few hundred bytes).
    webhook_body_limit: int = Field(default=64 * 1024, ge=1024)
    webhook_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("partner_directory")
    @classmethod
    def _readable_directory(cls, path: Path) -> Path:
        """Fail at start, naming the variable, rather than at the first referral."""
        load_directory(path)
        return path
