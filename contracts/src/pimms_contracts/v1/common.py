"""Vocabulary shared by several contracts."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

NeedCategory = Literal[
    "energy_bill",
    "water_bill",
    "postal_service",
    "rail_travel",
    "telecom",
    "naturalisation",
    "housing_rights",
    "health_insurance",
    "family_benefits",
    "banking",
    "micro_credit",
    "other",
]
Urgency = Literal["low", "normal", "high"]
Channel = Literal["front_desk", "outreach", "phone", "online"]
WithdrawalReason = Literal["visitor_request", "resolved_at_desk", "duplicate", "entered_in_error"]

ReferralStatus = Literal[
    "requested",
    "transmitted",
    "received",
    "accepted",
    "in_progress",
    "on_hold",
    "completed",
    "rejected",
    "expired",
    "cancelled",
    "delivery_failed",
]
PartnerReportedStatus = Literal[
    "received", "accepted", "in_progress", "on_hold", "completed", "rejected"
]
CompletionOutcome = Literal["resolved", "not_resolved", "visitor_unreachable"]
RejectionReason = Literal["out_of_scope", "duplicate", "incomplete", "other"]
AssessmentTag = Literal[
    "fast",
    "slow",
    "clear_answer",
    "unclear_answer",
    "unreachable_partner",
    "wrong_partner",
    "visitor_satisfied",
    "visitor_unsatisfied",
]
FINAL_STATUSES: frozenset[str] = frozenset(
    {"completed", "rejected", "expired", "cancelled", "delivery_failed"}
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE_TAB = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise PydanticCustomError("control_characters", "contains control characters")
    return value


def _no_control_but_newline_tab(value: str) -> str:
    if _CONTROL_BUT_NEWLINE_TAB.search(value):
        raise PydanticCustomError("control_characters", "contains control characters")
    return value


def _no_repeats(values: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(values)) != len(values):
        raise PydanticCustomError("repeated_value", "a value is given twice")
    return values


PersonName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_no_control)]
Summary = Annotated[
    str, Field(min_length=1, max_length=2000), AfterValidator(_no_control_but_newline_tab)
]
SiteId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,39}$")]
MediatorId = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_no_control)]
Phone = Annotated[str, Field(pattern=r"^\+[0-9]{8,15}$")]
Email = Annotated[
    str,
    Field(max_length=254, pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f.]+(\.[^@\s\x00-\x1f.]+)+$"),
]
PostalCode = Annotated[str, Field(pattern=r"^[0-9]{5}$")]
LanguageTag = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")]
DocumentCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
DocumentList = Annotated[tuple[DocumentCode, ...], Field(max_length=30)]
CaseReference = Annotated[str, Field(pattern=r"^[A-Z0-9-]{1,20}$")]
PartnerId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,39}$")]
AssessmentTags = Annotated[
    tuple[AssessmentTag, ...], Field(max_length=8), AfterValidator(_no_repeats)
]
AssessmentComment = Annotated[
    str, Field(max_length=1000), AfterValidator(_no_control_but_newline_tab)
]
Rating = Annotated[int, Field(ge=1, le=5)]
