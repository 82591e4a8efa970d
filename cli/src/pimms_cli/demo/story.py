"""The words of a demo story: what the desk sends, how partners and people react, what to expect.

A story is data. Adding a situation to the morning is adding a `Story` to `scenario.py`; adding a
kind of reaction or expectation is a dataclass here and a branch in `observer.py` or `checks.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class CaseOutcome(StrEnum):
    """How a case closes (`case.closed` outcome)."""

    RESOLVED = "resolved"
    NOT_RESOLVED = "not_resolved"
    WITHDRAWN = "withdrawn"


class ReferralStatus(StrEnum):
    """A referral's status on `pimms.cases.v1` (the platform's words, specs/partners.md)."""

    RECEIVED = "received"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    COMPLETED = "completed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DELIVERY_FAILED = "delivery_failed"


class WithdrawReason(StrEnum):
    """Why a front-office tool withdraws a need (specs/front-office.md)."""

    VISITOR_REQUEST = "visitor_request"
    RESOLVED_AT_DESK = "resolved_at_desk"
    DUPLICATE = "duplicate"
    ENTERED_IN_ERROR = "entered_in_error"


# --- what the desk sends ---


@dataclass(frozen=True)
class Need:
    """A `need.submitted` as a front-office tool sends it."""

    body: Mapping[str, Any]


@dataclass(frozen=True)
class SameNeedAs:
    """The need of an earlier story, sent again (a tool retrying)."""

    story: int


@dataclass(frozen=True)
class Garbage:
    """Bytes that are no need at all."""

    value: bytes


Submission = Need | SameNeedAs | Garbage


# --- how partners and people react ---


@dataclass(frozen=True)
class Answer:
    """A partner's answer in its own status words, with its extra fields (`resultat`, `issue`)."""

    status: str
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Withdraw:
    """The desk withdraws the need."""

    reason: WithdrawReason


@dataclass(frozen=True)
class PartnerSays:
    """A partner sends one more answer about this case's referral (late or wrong ones included)."""

    partner_id: str
    answer: Answer


@dataclass(frozen=True)
class AddDocuments:
    """The visitor came back with documents (`need.documents_added`)."""

    documents: tuple[str, ...]


Action = Withdraw | PartnerSays | AddDocuments


@dataclass(frozen=True)
class On:
    """Do `action` once, when the case reaches `status` on `pimms.cases.v1` (`closed` included)."""

    status: str
    action: Action


# --- what the platform must make of it ---


@dataclass(frozen=True)
class Closes:
    """The case closes with `outcome`; each partner's referral ends in its status.

    A partner expected `expired` must have been chased on the way (the SLA ladder): sent its
    reminder on its own feed, the mediator told of it and of the escalation. `held_for`: the
    referral was first held for these missing documents (visitor and mediator told), then
    released when the visitor brought them.
    """

    outcome: CaseOutcome
    partners: Mapping[str, ReferralStatus] = field(default_factory=dict)
    visitor_unreachable: bool = False
    partner_dead_letters: tuple[str, ...] = ()
    held_for: tuple[str, ...] = ()

    @property
    def chased(self) -> tuple[str, ...]:
        """The partners that must be chased to expiry."""
        return tuple(p for p, s in self.partners.items() if s is ReferralStatus.EXPIRED)


@dataclass(frozen=True)
class StaysUnroutable:
    """No partner matched: the case stays open and the mediator is told."""


@dataclass(frozen=True)
class Rejected:
    """The desk gets `need.rejected` with exactly these error codes."""

    codes: tuple[str, ...]


@dataclass(frozen=True)
class SameAnswer:
    """The desk gets the same `need.accepted` again."""


@dataclass(frozen=True)
class DeadLettered:
    """The message lands in `pimms.intake.needs.v1.dlt`."""


Expectation = Closes | StaysUnroutable | Rejected | SameAnswer | DeadLettered


@dataclass(frozen=True)
class Story:
    """One situation at the desk, how everybody reacts, and what the platform must make of it."""

    label: str
    submission: Submission
    expect: Expectation
    answers: Mapping[str, tuple[Answer, ...]] = field(default_factory=dict)
    reactions: tuple[On, ...] = ()

    @property
    def runs_the_ladder(self) -> bool:
        """True when the story waits for a partner's SLA ladder to end (platform time)."""
        return isinstance(self.expect, Closes) and bool(self.expect.chased)

    @property
    def desk_answers(self) -> int:
        """How many feedback messages the desk gets for this story (one per message it sends)."""
        return 1 + sum(1 for r in self.reactions if isinstance(r.action, Withdraw | AddDocuments))
