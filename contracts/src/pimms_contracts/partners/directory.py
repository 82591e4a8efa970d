"""Partner directory model and loader. The directory itself is data (directory.toml)."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from pimms_contracts.partners.mapping import MAPPED_JSON, JsonMapping
from pimms_contracts.topics import partner_referrals, partner_responses
from pimms_contracts.v1.common import DocumentCode, NeedCategory

DEFAULT_DIRECTORY_PATH = Path(__file__).with_name("directory.toml")
DIRECTORY_ENV = "PIMMS_PARTNER_DIRECTORY"

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
    """Signed HTTP POSTs both ways; the secret is read from the named environment variable.

    During a rotation the previous secret is read from the same name with `_PREVIOUS` appended.
    The partner answers on the gateway at `/partners/<partner id>/responses`.
    """

    kind: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    secret_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]{0,99}$")

    @property
    def previous_secret_env(self) -> str:
        """Where the previous secret is read during a rotation."""
        return f"{self.secret_env}_PREVIOUS"


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
    format: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,39}$")
    ack_within: Duration
    resolve_within: Duration
    transport: Transport
    required_documents: tuple[DocumentCode, ...] = ()
    """Documents a file must hold before it is sent (the prefecture's checklist)."""
    mapping: JsonMapping | None = None
    """The whole JSON format, for `format = "mapped-json"` partners (added by data alone)."""

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

    @model_validator(mode="after")
    def _mapping_iff_mapped_json(self) -> Partner:
        if self.format == MAPPED_JSON and self.mapping is None:
            raise ValueError(f'format "{MAPPED_JSON}" needs a [partner.mapping] table')
        if self.format != MAPPED_JSON and self.mapping is not None:
            raise ValueError(f'a mapping table is only read with format "{MAPPED_JSON}"')
        return self

    @property
    def all_departements(self) -> bool:
        """True when the partner serves the whole country."""
        return self.territory == "all"

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


@dataclass(frozen=True)
class DirectoryProblem:
    """One thing wrong with a directory: which partner, which field, what."""

    partner: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"partner {self.partner}: {self.field}: {self.message}"


class DirectoryError(ValueError):
    """A directory that fails validation; the message names each partner and field at fault."""

    def __init__(self, source: str, problems: tuple[DirectoryProblem, ...]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"partner directory {source}: " + "; ".join(map(str, problems)))

    @property
    def partner(self) -> str:
        """The first partner at fault."""
        return self.problems[0].partner

    @property
    def field(self) -> str:
        """The first field at fault."""
        return self.problems[0].field


def parse_directory(text: str, *, source: str = "(text)") -> PartnerDirectory:
    """Validate a directory's TOML text; DirectoryError names each partner and field at fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DirectoryError(source, (DirectoryProblem("(file)", "(toml)", str(exc)),)) from None
    entries = data.get("partner", [])
    if not isinstance(entries, list) or not entries:
        problem = DirectoryProblem("(file)", "partner", "at least one [[partner]] table is needed")
        raise DirectoryError(source, (problem,))
    problems: list[DirectoryProblem] = []
    partners: list[Partner] = []
    for index, entry in enumerate(entries, start=1):
        name = _partner_name(entry, index)
        try:
            partners.append(Partner.model_validate(entry))
        except ValidationError as exc:
            for error in exc.errors(include_input=False, include_url=False):
                problem = DirectoryProblem(name, _location(error["loc"]), error["msg"])
                if problem not in problems:
                    problems.append(problem)
    if problems:
        raise DirectoryError(source, tuple(problems))
    try:
        return PartnerDirectory(partners=tuple(partners))
    except ValidationError as exc:
        messages = "; ".join(e["msg"] for e in exc.errors(include_url=False))
        raise DirectoryError(source, (DirectoryProblem("(directory)", "id", messages),)) from None


def load_directory(path: Path | None = None) -> PartnerDirectory:
    """Read and validate a directory file; DirectoryError (a ValueError) says what is wrong."""
    source = path or DEFAULT_DIRECTORY_PATH
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = DirectoryProblem("(file)", "(file)", f"cannot be read ({exc})")
        raise DirectoryError(str(source), (problem,)) from None
    return parse_directory(text, source=str(source))


def directory_path(
    environ: Mapping[str, str] | None = None, *, override_env: str | None = None
) -> Path:
    """The directory file for a service: its own override variable, else PIMMS_PARTNER_DIRECTORY."""
    env = os.environ if environ is None else environ
    for name in (override_env, DIRECTORY_ENV):
        if name and env.get(name):
            return Path(env[name])
    return DEFAULT_DIRECTORY_PATH


def _partner_name(entry: Any, index: int) -> str:
    partner_id = entry.get("id") if isinstance(entry, dict) else None
    return repr(partner_id) if isinstance(partner_id, str) and partner_id else f"#{index}"


def _location(loc: tuple[int | str, ...]) -> str:
    """`('transport', 'webhook', 'url')` -> `transport.url` (union members are not fields)."""
    parts = [
        str(p)
        for p in loc
        if p not in ("kafka", "file_drop", "webhook") and not (isinstance(p, str) and "[" in p)
    ]
    return ".".join(parts) or "(partner)"
