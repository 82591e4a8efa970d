"""When a case closes, and with which summary outcome."""

from __future__ import annotations

from collections.abc import Sequence

from pimms_contracts.v1.lifecycle import CaseOutcome

from pimms_referrals.domain.lifecycle import Referral


def closing_outcome(referrals: Sequence[Referral]) -> CaseOutcome | None:
    """The outcome to close the case with once every referral is final; None while one is not.

    `resolved` when every referral was completed with outcome resolved, `partially_resolved` when
    at least one was, else `not_resolved`. A case without referrals (unroutable) never closes
    here: only a withdrawal closes it.
    """
    if not referrals or not all(r.final for r in referrals):
        return None
    resolved = [r.status == "completed" and r.outcome == "resolved" for r in referrals]
    if all(resolved):
        return "resolved"
    return "partially_resolved" if any(resolved) else "not_resolved"
