"""A partner's JSON format declared as data: which field carries what, and what its words mean.

A partner whose format is plain JSON field mapping (`format = "mapped-json"`) is added to the
directory with a `[partner.mapping]` table and no code. Outbound messages are trees whose leaves
name a *source* (a fact of the referral the platform may share) or hold a constant
(`{ const = "..." }`); inbound answers name the fields to read and translate the partner's words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pimms_contracts.v1.common import (
    CompletionOutcome,
    NeedCategory,
    PartnerReportedStatus,
    RejectionReason,
    Urgency,
)

MAPPED_JSON = "mapped-json"

ReferralSource = Literal[
    "referral_id",
    "case_reference",
    "submitted_at",
    "category",
    "urgency",
    "summary",
    "documents",
    "first_name",
    "last_name",
    "last_name_upper",
    "phone",
    "email",
    "postal_code",
    "language",
    "site_id",
    "mediator_id",
]
"""What a referral message may carry; `phone` and `email` only where the visitor consented."""

CancellationSource = Literal["referral_id", "at"]
"""What a cancellation message may carry (`at`: when the referral was withdrawn)."""

REFERRAL_SOURCES: frozenset[str] = frozenset(get_args(ReferralSource))
CANCELLATION_SOURCES: frozenset[str] = frozenset(get_args(CancellationSource))
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_MAX_DEPTH = 4


class _MappingModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def check_field_tree(tree: Any, *, sources: frozenset[str], path: str = "") -> dict[str, Any]:
    """A message layout: field names to a source name, `{const = value}` or a nested layout."""
    if not isinstance(tree, Mapping) or not tree:
        raise ValueError(f"{path or 'the layout'} must be a non-empty table of fields")
    if path.count(".") >= _MAX_DEPTH:
        raise ValueError(f"{path} is nested more than {_MAX_DEPTH} levels deep")
    checked: dict[str, Any] = {}
    for name, leaf in tree.items():
        where = f"{path}.{name}" if path else str(name)
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            raise ValueError(f"{where}: a field name is letters, digits, '_' or '-'")
        if isinstance(leaf, str):
            if leaf not in sources:
                known = ", ".join(sorted(sources))
                raise ValueError(f"{where}: unknown source {leaf!r} (one of {known})")
            checked[name] = leaf
        elif isinstance(leaf, Mapping) and set(leaf) == {"const"}:
            value = leaf["const"]
            if not isinstance(value, (str, int, float, bool, type(None))):
                raise ValueError(f"{where}: a constant is a string, number or boolean")
            checked[name] = {"const": value}
        else:
            checked[name] = check_field_tree(leaf, sources=sources, path=where)
    return checked


def parse_status_word(target: str) -> tuple[PartnerReportedStatus, str | None]:
    """`"completed/resolved"` -> ("completed", "resolved"); `"received"` -> ("received", None)."""
    status, _, qualifier = target.partition("/")
    if status not in get_args(PartnerReportedStatus):
        raise ValueError(
            f"{status!r} is not a platform status ({', '.join(get_args(PartnerReportedStatus))})"
        )
    if not qualifier:
        return status, None  # type: ignore[return-value]
    allowed = {
        "completed": get_args(CompletionOutcome),
        "rejected": get_args(RejectionReason),
    }.get(status, ())
    if qualifier not in allowed:
        raise ValueError(f"{target!r}: {status} takes no qualifier {qualifier!r}")
    return status, qualifier  # type: ignore[return-value]


class ResponseMapping(_MappingModel):
    """How to read the partner's answers: top-level field names and the partner's words."""

    reference: str = Field(pattern=_FIELD_NAME.pattern)
    status: str = Field(pattern=_FIELD_NAME.pattern)
    at: str = Field(pattern=_FIELD_NAME.pattern)
    outcome: str | None = Field(default=None, pattern=_FIELD_NAME.pattern)
    reason: str | None = Field(default=None, pattern=_FIELD_NAME.pattern)
    missing_documents: str | None = Field(default=None, pattern=_FIELD_NAME.pattern)
    comment: str | None = Field(default=None, pattern=_FIELD_NAME.pattern)
    statuses: dict[str, str] = Field(min_length=1)
    outcomes: dict[str, CompletionOutcome] = Field(default_factory=dict)
    reasons: dict[str, RejectionReason] = Field(default_factory=dict)

    @field_validator("statuses")
    @classmethod
    def _known_statuses(cls, statuses: dict[str, str]) -> dict[str, str]:
        for target in statuses.values():
            parse_status_word(target)
        return statuses

    @model_validator(mode="after")
    def _outcome_readable(self) -> ResponseMapping:
        bare_completed = [w for w, t in self.statuses.items() if t == "completed"]
        if bare_completed and (self.outcome is None or not self.outcomes):
            raise ValueError(
                f"status word(s) {', '.join(bare_completed)} map to completed without an outcome:"
                " set `outcome` and `outcomes`, or map them to completed/<outcome>"
            )
        return self

    @property
    def listed_fields(self) -> frozenset[str]:
        """The fields this mapping reads; any other field in an answer is unknown (tolerated)."""
        names = (
            self.reference,
            self.status,
            self.at,
            self.outcome,
            self.reason,
            self.missing_documents,
            self.comment,
        )
        return frozenset(n for n in names if n is not None)


class JsonMapping(_MappingModel):
    """A partner's JSON messages, both directions, as data."""

    referral: dict[str, Any]
    cancellation: dict[str, Any]
    reminder_field: str = Field(default="reminder", pattern=_FIELD_NAME.pattern)
    urgency_words: dict[Urgency, str] = Field(default_factory=dict)
    category_words: dict[NeedCategory, str] = Field(default_factory=dict)
    response: ResponseMapping

    @field_validator("referral", mode="before")
    @classmethod
    def _referral_layout(cls, tree: Any) -> dict[str, Any]:
        return check_field_tree(tree, sources=REFERRAL_SOURCES)

    @field_validator("cancellation", mode="before")
    @classmethod
    def _cancellation_layout(cls, tree: Any) -> dict[str, Any]:
        return check_field_tree(tree, sources=CANCELLATION_SOURCES)

    @model_validator(mode="after")
    def _reminder_field_is_new(self) -> JsonMapping:
        if self.reminder_field in self.referral:
            raise ValueError(f"reminder_field {self.reminder_field!r} is already a referral field")
        return self
