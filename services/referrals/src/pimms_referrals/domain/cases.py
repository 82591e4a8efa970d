"""A case as referrals knows it: routing facts, no personal data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pimms_contracts.v1.common import NeedCategory, Urgency, WithdrawalReason
from pimms_contracts.v1.lifecycle import CaseOutcome


@dataclass(frozen=True)
class Case:
    """What referrals keeps of a case: enough to route, to tell, and to close it."""

    case_id: str
    case_reference: str
    site_id: str
    mediator_id: str
    category: NeedCategory
    urgency: Urgency
    departement: str
    documents: tuple[str, ...]
    submitted_at: datetime
    opened_at: datetime
    closed_at: datetime | None = None
    outcome: CaseOutcome | None = None
    close_reason: WithdrawalReason | None = None
    # The case journey's correlation id (set at intake): events its timers cause carry it.
    correlation_id: str | None = None

    @property
    def closed(self) -> bool:
        """True once CaseClosed was emitted: it never is again."""
        return self.closed_at is not None
