"""Partner directory model and loader. The directory itself is data (directory.toml)."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from pimms_contracts.topics import partner_referrals, partner_responses
from pimms_contracts.v1.common import NeedCategory

DEFAULT_DIRECTORY_PATH = Path(__file__).with_name("directory.toml")

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _duration(value: Any) -> Any:
    """'48h', '15d', '90m', '30s' -> timedelta."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"duration {value!r}: expected a number and s, m, h or d")
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class _DirectoryModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaTransport(_DirectoryModel):
    """The partner reads a feed topic and answers on a responses topic."""

    kind: Literal["kafka"] = "kafka"
    referrals_topic: str = ""
    responses_topic: str = ""


class FileDropTransport(_DirectoryModel):
    """CSV files in folders shared with the partner."""

    kind: Literal["file_drop"] = "file_drop"
    outbound_dir: str
    inbound_dir: str
    export_every: Duration = timedelta(minutes=5)


class WebhookTransport(_DirectoryModel):
    """Signed HTTP POSTs both ways; the secret is read from the named environment variable."""

    kind: Literal["webhook"] = "webhook"
    url: str
    secret_env: str


Transport = Annotated[
    KafkaTransport | FileDropTransport | WebhookTransport, Field(discriminator="kind")
]


class Partner(_DirectoryModel):
    """One partner operator and what it agreed to."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,39}$")
    operator: str
    categories: tuple[NeedCategory, ...] = Field(min_length=1)
    territory: (
        Literal["all"] | tuple[Annotated[str, Field(pattern=r"^(\d{2}|2A|2B|9[78]\d)$")], ...]
    )
    format: str
    ack_within: Duration
    resolve_within: Duration
    transport: Transport

    @model_validator(mode="after")
    def _default_topics(self) -> Partner:
        if isinstance(self.transport, KafkaTransport):
            topics = self.transport.model_copy(
                update={
                    "referrals_topic": self.transport.referrals_topic or partner_referrals(self.id),
                    "responses_topic": self.transport.responses_topic or partner_responses(self.id),
                }
            )
            object.__setattr__(self, "transport", topics)
        return self

    def serves(self, *, category: str, departement: str) -> bool:
        """True when this partner handles `category` for a visitor living in `departement`."""
        in_territory = self.territory == "all" or departement in self.territory
        return category in self.categories and in_territory


class PartnerDirectory(_DirectoryModel):
    """Every partner of the network."""

    partners: tuple[Partner, ...]

    @model_validator(mode="after")
    def _unique_ids(self) -> PartnerDirectory:
        ids = [p.id for p in self.partners]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"partner id(s) listed twice: {', '.join(duplicates)}")
        return self

    def get(self, partner_id: str) -> Partner | None:
        """The partner with this id, if any."""
        return next((p for p in self.partners if p.id == partner_id), None)

    def serving(self, *, category: str, departement: str) -> list[Partner]:
        """Every partner that serves this category in this département, in directory order."""
        return [p for p in self.partners if p.serves(category=category, departement=departement)]

    def kafka_partner_ids(self) -> tuple[str, ...]:
        """Partners reached over a Kafka feed."""
        return tuple(p.id for p in self.partners if isinstance(p.transport, KafkaTransport))


def load_directory(path: Path | None = None) -> PartnerDirectory:
    """Read and validate a directory file (TOML); raise ValueError naming the problem."""
    source = path or DEFAULT_DIRECTORY_PATH
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"partner directory {source}: {exc}") from exc
    try:
        return PartnerDirectory.model_validate({"partners": data.get("partner", [])})
    except ValueError as exc:
        raise ValueError(f"partner directory {source}: {exc}") from exc
