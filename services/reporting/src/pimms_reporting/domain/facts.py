"""The activity facts the review is computed from: codes, ids and times only, no personal data.

A referral's facts are folded from its lifecycle events (one case's events arrive in order, on
one partition): when it was asked for, held for missing documents and released, transmitted,
first answered by the partner, and how it ended. The figures are computed from these facts when
a report is asked for, so that events of different topics may arrive in any order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

FINAL = frozenset({"completed", "rejected", "expired", "cancelled", "delivery_failed"})
# What a partner reports (any of them is its acknowledgement, as for the SLA ladder).
PARTNER_REPORTS = frozenset(
    {"received", "accepted", "in_progress", "on_hold", "completed", "rejected"}
)
# The partner's final answer: the time to resolve ends there.
ANSWERS = frozenset({"completed", "rejected"})


@dataclass(frozen=True)
class CaseFacts:
    """A case as opened: where, for what, through which channel (when the event says)."""

    case_id: str
    site_id: str
    category: str
    channel: str | None
    opened_at: datetime


@dataclass(frozen=True)
class ReferralFacts:
    """What the review needs of one referral."""

    referral_id: str
    case_id: str
    site_id: str
    partner_id: str
    status: str
    created_at: datetime
    requested_at: datetime | None = None
    held: bool = False
    held_at: datetime | None = None
    released_at: datetime | None = None
    transmitted_at: datetime | None = None
    acknowledged_at: datetime | None = None
    complement_requested: bool = False
    final_status: str | None = None
    final_at: datetime | None = None
    final_code: str | None = None

    def _start(self, end: datetime) -> datetime:
        """When the partner's clock started: the transmission, or the request when the partner
        answered before the transmission was confirmed."""
        if self.transmitted_at is not None and self.transmitted_at <= end:
            return self.transmitted_at
        return self.requested_at or self.created_at

    @property
    def seconds_to_acknowledge(self) -> float | None:
        """From transmission to the partner's first report."""
        if self.acknowledged_at is None:
            return None
        return (self.acknowledged_at - self._start(self.acknowledged_at)).total_seconds()

    @property
    def seconds_to_resolve(self) -> float | None:
        """From transmission to the partner's final answer (completed or rejected)."""
        if self.final_status not in ANSWERS or self.final_at is None:
            return None
        return (self.final_at - self._start(self.final_at)).total_seconds()


@dataclass(frozen=True)
class ReferralChange:
    """One lifecycle event of a referral, reduced to what the review keeps."""

    referral_id: str
    case_id: str
    site_id: str
    partner_id: str
    status: str
    at: datetime
    reason: str | None = None
    outcome: str | None = None


def apply_change(referral: ReferralFacts | None, change: ReferralChange) -> ReferralFacts:
    """The referral's facts after `change` (a final referral no longer changes)."""
    if referral is None:
        referral = ReferralFacts(
            referral_id=change.referral_id,
            case_id=change.case_id,
            site_id=change.site_id,
            partner_id=change.partner_id,
            status="new",
            created_at=change.at,
        )
        platform_hold = change.status == "on_hold"
    else:
        platform_hold = change.status == "on_hold" and referral.held
    if referral.final_status is not None:
        return referral
    at, status = change.at, change.status
    updates: dict[str, object] = {"status": status}
    if platform_hold:
        # The platform held the file before transmission: documents of the checklist missing.
        updates.update(held=True, held_at=referral.held_at or at)
    elif status == "requested":
        updates.update(requested_at=at, held=False)
        if referral.held and referral.released_at is None:
            updates["released_at"] = at
    elif status == "transmitted":
        updates.update(transmitted_at=referral.transmitted_at or at, held=False)
    if status in PARTNER_REPORTS and not platform_hold:
        updates["acknowledged_at"] = referral.acknowledged_at or at
        if status == "on_hold" and change.reason == "missing_documents":
            updates["complement_requested"] = True  # the partner asked for more documents
    if status in FINAL:
        updates.update(final_status=status, final_at=at, final_code=change.outcome or change.reason)
    return dataclasses.replace(referral, **updates)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SlaSignal:
    """A reminder sent to a silent partner, or an escalation to the mediator."""

    signal_id: str
    referral_id: str
    case_id: str
    site_id: str
    partner_id: str
    kind: str  # "reminder" | "escalation"
    at: datetime


@dataclass(frozen=True)
class NotificationFact:
    """A message sent (or not) to a visitor or a mediator: channel and outcome only."""

    notification_id: str
    case_id: str
    referral_id: str | None
    audience: str
    channel: str | None
    delivered: bool
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class AssessmentFact:
    """The mediator's assessment of a referral (the latest one), its comment already scrubbed."""

    referral_id: str
    case_id: str
    site_id: str
    partner_id: str
    rating: int
    tags: tuple[str, ...]
    comment: str | None
    assessed_at: datetime


@dataclass(frozen=True)
class Facts:
    """Everything the projection holds."""

    cases: tuple[CaseFacts, ...] = ()
    referrals: tuple[ReferralFacts, ...] = ()
    signals: tuple[SlaSignal, ...] = ()
    notifications: tuple[NotificationFact, ...] = ()
    assessments: tuple[AssessmentFact, ...] = ()
