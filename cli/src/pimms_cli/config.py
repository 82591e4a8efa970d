"""Where things are on one machine: the data directory, the broker, each service's database."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pimms_contracts.partners import PartnerDirectory, WebhookTransport, directory_path


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

    @property
    def http_port_env(self) -> str:
        """The variable that fixes the service's HTTP port (health, metrics, its endpoints)."""
        return f"{self.env_prefix}HTTP_PORT"


# The services a case goes through (trace reads their databases).
SERVICES = (
    ServiceSpec("intake", "pimms_intake", "PIMMS_INTAKE_"),
    ServiceSpec("referrals", "pimms_referrals", "PIMMS_REFERRALS_"),
    ServiceSpec("partner-gateways", "pimms_partner_gateways", "PIMMS_GATEWAYS_"),
    ServiceSpec("notifications", "pimms_notifications", "PIMMS_NOTIFICATIONS_"),
)

# Services `pimms dev` also runs when their package is installed.
OPTIONAL_SERVICES = (ServiceSpec("reporting", "pimms_reporting", "PIMMS_REPORTING_"),)

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def platform_services() -> tuple[ServiceSpec, ...]:
    """Every service `pimms dev` runs: the case services, then the optional ones installed."""
    installed = tuple(s for s in OPTIONAL_SERVICES if importlib.util.find_spec(s.module))
    return SERVICES + installed


def is_postgresql(url: str) -> bool:
    """True for a PostgreSQL SQLAlchemy URL (several instances of a service can share it)."""
    return url.split(":", 1)[0].split("+", 1)[0] in {"postgresql", "postgres"}


def data_dir() -> Path:
    """`PIMMS_DATA_DIR`, default `./.pimms`."""
    return Path(os.environ.get("PIMMS_DATA_DIR", ".pimms"))


def configured_bootstrap() -> str | None:
    """`KAFKA_BOOTSTRAP_SERVERS` when set: an existing broker, none is started."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None


GATEWAYS_DIRECTORY_ENV = "PIMMS_GATEWAYS_PARTNER_DIRECTORY"
# The development secret of a webhook partner: the value `pimms demo` signs its simulated
# partner's answers with, so a demo run beside `pimms dev` is understood by its gateway.
DEV_SECRET = "demo-{partner}-secret"  # noqa: S105 - a public development value, never a real one


def gateway_directory_path(environ: Mapping[str, str] | None = None) -> Path:
    """The partner directory the gateway reads: its override, else `PIMMS_PARTNER_DIRECTORY`."""
    return directory_path(environ, override_env=GATEWAYS_DIRECTORY_ENV)


@dataclass(frozen=True)
class DevSecret:
    """A development value given to a webhook partner's secret variable the user left unset."""

    partner_id: str
    variable: str
    value: str


def dev_webhook_secrets(
    directory: PartnerDirectory, environ: Mapping[str, str]
) -> tuple[DevSecret, ...]:
    """A development secret for each webhook partner whose variable `environ` leaves unset."""
    chosen: dict[str, DevSecret] = {}
    for partner in directory.partners:
        transport = partner.transport
        if not isinstance(transport, WebhookTransport) or environ.get(transport.secret_env):
            continue
        value = DEV_SECRET.format(partner=partner.id)
        chosen.setdefault(transport.secret_env, DevSecret(partner.id, transport.secret_env, value))
    return tuple(chosen.values())


def describe_dev_secrets(secrets: tuple[DevSecret, ...]) -> list[str]:
    """What `pimms dev` says about the webhook secrets it set (nothing when the user set all)."""
    return [
        f"webhook secret of {s.partner_id}: development value in {s.variable}={s.value} "
        "(set the variable to use your own)"
        for s in secrets
    ]
