"""Referrals settings (environment variables prefixed `PIMMS_REFERRALS_`).

The partner directory is the platform's one file, `PIMMS_PARTNER_DIRECTORY`, unless
`PIMMS_REFERRALS_PARTNER_DIRECTORY` overrides it for this service; the packaged one otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pimms_contracts.partners import DEFAULT_DIRECTORY_PATH, DIRECTORY_ENV, load_directory
from pimms_servicekit.settings import ServiceSettings
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict


class ReferralsSettings(ServiceSettings):
    """What referrals needs: the shared settings, the partner directory file, the scheduler."""

    model_config = SettingsConfigDict(env_prefix="PIMMS_REFERRALS_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "referrals"

    # A TOML file like the packaged one, reloaded when it changes (a broken version is refused).
    partner_directory: Path = Field(
        default=DEFAULT_DIRECTORY_PATH,
        validation_alias=AliasChoices(
            "PIMMS_REFERRALS_PARTNER_DIRECTORY", DIRECTORY_ENV, "partner_directory"
        ),
    )
    # How often (real seconds) the directory file is looked at.
    directory_poll_interval_s: float = Field(default=2.0, gt=0)
    # PIMMS_REFERRALS_TIMER_INTERVAL_S: how often (real seconds) the scheduler looks for due
    # SLA timers; PIMMS_REFERRALS_TIMER_BATCH_SIZE: how many due rows one pass takes at most.
    timer_interval_s: float = Field(default=5.0, gt=0)
    timer_batch_size: int = Field(default=200, gt=0)

    @field_validator("partner_directory")
    @classmethod
    def _loads(cls, path: Path) -> Path:
        load_directory(path)  # at start, a broken directory is a configuration error
        return path
