"""Where things are on one machine: the data directory, the broker, each service's database."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServiceSpec:
    """One service process of the platform."""

    name: str
    module: str
    env_prefix: str

    def database_url(self, data_dir: Path) -> str:
        """The URL from `<PREFIX>DATABASE_URL`, else the SQLite file under the data directory."""
        configured = os.environ.get(f"{self.env_prefix}DATABASE_URL")
        if configured:
            return configured
        return f"sqlite+aiosqlite:///{(data_dir / f'{self.name}.db').resolve()}"


SERVICES = (
    ServiceSpec("intake", "pimms_intake", "PIMMS_INTAKE_"),
    ServiceSpec("referrals", "pimms_referrals", "PIMMS_REFERRALS_"),
    ServiceSpec("partner-gateways", "pimms_partner_gateways", "PIMMS_GATEWAYS_"),
    ServiceSpec("notifications", "pimms_notifications", "PIMMS_NOTIFICATIONS_"),
)

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def data_dir() -> Path:
    """`PIMMS_DATA_DIR`, default `./.pimms`."""
    return Path(os.environ.get("PIMMS_DATA_DIR", ".pimms"))


def configured_bootstrap() -> str | None:
    """`KAFKA_BOOTSTRAP_SERVERS` when set: an existing broker, none is started."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
