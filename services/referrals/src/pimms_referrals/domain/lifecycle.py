"""The referral state machine (specs/partners.md, "Status vocabulary"), as pure functions.

requested < transmitted < received < accepted < {in_progress, on_hold} < final, where the final
statuses are completed (with an outcome), rejected (with a reason), expired, cancelled and
delivery_failed. A move may jump forward over any step; in_progress and on_hold alternate freely;
the same status again changes nothing; a move back, or out of a final status, is impossible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pimms_contracts.v1.common import FINAL_STATUSES

RANK: dict[str, int] = {
    "requested": 0,
    "transmitted": 1,
    "received": 2,
    "accepted": 3,
    "in_progress": 4,
    "on_hold": 4,
    "completed": 5,
    "rejected": 5,
    "expired": 5,
    "cancelled": 5,
    "delivery_failed": 5,
}
# Statuses after which the partner has the referral: the SLA clock starts at the first of them.
_NOT_AT_PARTNER = frozenset({"requested", "cancelled", "delivery_failed", "expired"})

Move = Literal["forward", "same", "backward", "out_of_final"]


def is_final(status: str) -> bool:
    """True for completed, rejected, expired, cancelled and delivery_failed."""
    return status in FINAL_STATUSES


def judge_move(current: str, target: str) -> Move:
    """What going from `current` to `target` is, by the rules of the lifecycle."""
    if target == current:
        return "same"
    if is_final(current):
        return "out_of_final"
    return "forward" if RANK[target] >= RANK[current] else "backward"


def on_hold_reason(missing_documents: tuple[str, ...]) -> str:
    """Why a referral waits: for documents when the partner listed some, else for the visitor."""
    return "missing_documents" if missing_documents else "waiting_for_visitor"


class IncompleteReport(ValueError):
    """A status report lacking what its status needs (an outcome, a reason)."""


@dataclass(frozen=True)
class StatusChange:
    """A status to move a referral to, with its outcome or reason code where it has one."""

    status: str
    outcome: str | None = None
    reason: str | None = None
    missing_documents: tuple[str, ...] = ()


def reported_change(
    *,
    status: str,
    outcome: str | None = None,
    reason: str | None = None,
    missing_documents: tuple[str, ...] = (),
) -> StatusChange:
    """The change a partner's report asks for; IncompleteReport when it lacks a required code."""
    if status == "completed" and outcome is None:
        raise IncompleteReport("a completed report needs an outcome")
    if status == "rejected" and reason is None:
        raise IncompleteReport("a rejected report needs a reason")
    if status == "on_hold":
        return StatusChange(
            status=status,
            reason=on_hold_reason(missing_documents),
            missing_documents=missing_documents,
        )
    return StatusChange(
        status=status,
        outcome=outcome if status == "completed" else None,
        reason=reason if status == "rejected" else None,
    )


@dataclass(frozen=True)
class Referral:
    """One need sent to one partner, and where it stands."""

    referral_id: str
    case_id: str
    partner_id: str
    position: int
    status: str
    ack_within: timedelta
    resolve_within: timedelta
    requested_at: datetime
    updated_at: datetime
    outcome: str | None = None
    reason: str | None = None
    missing_documents: tuple[str, ...] = ()
    transmitted_at: datetime | None = None
    acknowledged_at: datetime | None = None
    # Deadlines of the SLA ladder, counted from transmission. The timers that act on them
    # (reminder, escalation, expiry) come in a later issue: they will scan these columns.
    ack_due_at: datetime | None = None
    resolve_due_at: datetime | None = None

    @property
    def final(self) -> bool:
        """True once nothing can change the referral any more."""
        return is_final(self.status)


def new_referral(
    *,
    referral_id: str,
    case_id: str,
    partner_id: str,
    position: int,
    ack_within: timedelta,
    resolve_within: timedelta,
    at: datetime,
) -> Referral:
    """A referral just routed to its partner."""
    return Referral(
        referral_id=referral_id,
        case_id=case_id,
        partner_id=partner_id,
        position=position,
        status="requested",
        ack_within=ack_within,
        resolve_within=resolve_within,
        requested_at=at,
        updated_at=at,
    )


@dataclass(frozen=True)
class Applied:
    """The referral moved; `referral` is its new state, `change` what the public event says."""

    referral: Referral
    change: StatusChange


@dataclass(frozen=True)
class Unchanged:
    """The referral already has this status: nothing happens, no event."""

    referral: Referral


@dataclass(frozen=True)
class Impossible:
    """The move is forbidden (back, or out of a final status): nothing changes."""

    referral: Referral
    reported: str

    @property
    def explanation(self) -> str:
        """A sentence for dead letters and support staff (codes only, no personal data)."""
        return (
            f"{self.referral.partner_id} reported {self.reported} but referral "
            f"{self.referral.referral_id} is {self.referral.status}"
        )


Result = Applied | Unchanged | Impossible


def apply_status(referral: Referral, change: StatusChange, *, at: datetime) -> Result:
    """Move a referral to `change.status` if the lifecycle allows it."""
    move = judge_move(referral.status, change.status)
    if move == "same":
        return Unchanged(referral)
    if move != "forward":
        return Impossible(referral, change.status)
    updated = dataclasses.replace(
        referral,
        status=change.status,
        # outcome, reason and missing documents describe the current status only; the history
        # of earlier ones is in the referral's events.
        outcome=change.outcome,
        reason=change.reason,
        missing_documents=change.missing_documents,
        updated_at=at,
    )
    if updated.transmitted_at is None and change.status not in _NOT_AT_PARTNER:
        updated = dataclasses.replace(
            updated,
            transmitted_at=at,
            ack_due_at=at + referral.ack_within,
            resolve_due_at=at + referral.resolve_within,
        )
    return Applied(updated, change)


def apply_partner_status(referral: Referral, change: StatusChange, *, at: datetime) -> Result:
    """A partner's report: as `apply_status`, and the partner has now acknowledged the referral."""
    result = apply_status(referral, change, at=at)
    if isinstance(result, Applied) and result.referral.acknowledged_at is None:
        return Applied(dataclasses.replace(result.referral, acknowledged_at=at), result.change)
    return result
